"""The ``studio`` command. Each command group lives in its own module and is added here.

Start-up stays fast (``studio --help`` under half a second): a group's module is imported only
when that group runs. Register a new group in ``COMMANDS`` (module, attribute, one-line help), not
with a top-level import. Modules in ``backend/cli/`` import services, SQLAlchemy, torch,
transformers, LangChain and the like inside the command functions, or at the top of a group
module that only ``COMMANDS`` loads; ``tests/test_cli_startup.py`` checks it.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
from typing import Any

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError
from typer.core import TyperGroup
from typer.exceptions import Abort

from backend.cli import system as system_cmd
from backend.cli.output import global_options

# name -> (module, attribute, help shown by `studio --help`). The attribute is a Typer app
# (a command group) or a function (a single command). Add yours here; keep the help in step
# with the group's own (tests/test_cli_startup.py compares them).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "db": ("backend.cli.db", "app", "Database schema and backups."),
    "jobs": ("backend.cli.jobs", "app", "Long-running jobs: list, inspect, cancel, retry."),
    "models": ("backend.cli.models", "app",
               "The model registry: local models, endpoints, tiny demo models."),
    "chat": ("backend.cli.chat", "chat",
             "Stream a chat answer. Ctrl-C stops generation (on the worker too)."),
    "users": ("backend.cli.users", "app", "User accounts and their roles."),
    "workspaces": ("backend.cli.workspaces", "app",
                   "Workspaces, their members, and moving things between them."),
    "keys": ("backend.cli.keys", "app", "API keys (shown once; only their digest is stored)."),
    "audit": ("backend.cli.audit", "app", "The audit log."),
    "secrets": ("backend.cli.secrets", "app",
                "Workspace secrets (encrypted at rest) and the studio's secret key."),
    "agents": ("backend.cli.agents", "app",
               "Agents: tools, knowledge, memory; publish them as bots."),
    "prompts": ("backend.cli.prompts", "app",
                "Prompts: save versions, compare, run against models, evaluate in batch."),
    "corpora": ("backend.cli.corpora", "app",
                "Corpora for pre-training: text in, cleaned and split versions out."),
    "pretrain": ("backend.cli.pretrain", "app",
                 "Pre-train a causal or masked model from scratch on a corpus."),
    "kb": ("backend.cli.kb", "app", "Knowledge bases: ingest documents, search them."),
    "datasets": ("backend.cli.datasets", "app",
                 "Fine-tuning datasets: add (with versions), list, show, validate."),
    "finetune": ("backend.cli.finetune", "app",
                 "Fine-tune a model on a dataset (LoRA, QLoRA, full, DPO)."),
}


def load_command(name: str) -> Any:
    """The click command of a registered group or command (imports its module), built as
    ``add_typer`` / ``command`` would have built it under the ``studio`` group."""
    module_name, attr, _help = COMMANDS[name]
    target = getattr(importlib.import_module(module_name), attr)
    parent = typer.Typer(add_completion=False)
    parent.callback()(_no_op)  # a callback keeps the parent a group, even with one child
    if isinstance(target, typer.Typer):
        parent.add_typer(target, name=name)
    else:
        parent.command(name)(target)
    return typer.main.get_command(parent).commands[name]  # type: ignore[attr-defined]


def _no_op() -> None:
    """LLM Studio."""


class _LazyCommand(typer.core.TyperCommand):
    """Stands in for a group in ``studio --help``; loads the real one when it runs."""

    def __init__(self, name: str, help_text: str) -> None:
        super().__init__(name=name, help=help_text, callback=None)

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None,
                     **extra: Any) -> Any:
        return load_command(self.name or "").make_context(info_name, args, parent=parent, **extra)


class _StudioGroup(TyperGroup):
    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for name, (_module, _attr, help_text) in COMMANDS.items():
            self.commands.setdefault(name, _LazyCommand(name, help_text))


app = typer.Typer(
    name="studio",
    help="LLM Studio: prompts, knowledge bases, agents, fine-tuning and pre-training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_StudioGroup,
)
system_cmd.register(app)
app.callback()(global_options)


# Commands that manage the schema themselves, or only report on it (doctor brings an embedded
# or empty database to the schema itself)
_NO_SCHEMA_CHECK = {"db", "up", "doctor", "--help", "-h"}


def _command_name(argv: list[str]) -> str | None:
    args = iter(argv)
    for arg in args:
        if arg == "--api-key":
            next(args, None)
        elif arg.startswith("--api-key="):
            continue
        elif arg in ("--help", "-h") or not arg.startswith("-"):
            return arg
    return None


# Long-running commands log in full to their own output (the launcher keeps it in logs/)
_SERVICE_COMMANDS = {"up", "worker", "api"}


class _OneLineFormatter(logging.Formatter):
    """Warnings on the terminal in one line; their tracebacks go to the log file only."""

    def format(self, record: logging.LogRecord) -> str:
        return _one_line(f"{record.levelname} {record.name}: {record.getMessage()}")[:300]


def _log_tracebacks_to_file(path: Any) -> None:
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    terminal = logging.StreamHandler()
    terminal.setFormatter(_OneLineFormatter())
    path.parent.mkdir(parents=True, exist_ok=True)
    full = logging.FileHandler(path, delay=True)
    full.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers = [terminal, full]


def _one_line(text: str) -> str:
    return " ".join(text.split())


_NEGATIVE_NUMBER = re.compile(r"^-\d+(\.\d*)?$")
_NOT_NUMBERS = {"nan", "inf", "infinity"}


def _is_number(param: Any) -> bool:
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    return annotation in (int, float)


def _usage_message(exc: ClickException, argv: list[str]) -> str:
    """Bad usage in words that say what to change: a negative number where an id goes is not
    "No such option"; nan or inf for a number is not "should be <= 3600"."""
    from typer._click.exceptions import BadParameter, NoSuchOption

    if isinstance(exc, NoSuchOption) and _NEGATIVE_NUMBER.match(exc.option_name or ""):
        ctx = getattr(exc, "ctx", None)
        params = getattr(getattr(ctx, "command", None), "params", None) or []
        numeric = [p for p in params
                   if getattr(p, "param_type_name", "") == "argument" and _is_number(p)]
        if numeric:
            name = str(numeric[0].name or "the value").upper()
            return f"{name} must be a positive whole number, not {exc.option_name}"
        return (f"{exc.option_name} is not an option; to pass a value that starts with '-', "
                "put -- before it")
    param = getattr(exc, "param", None)
    if isinstance(exc, BadParameter) and param is not None and _is_number(param):
        opts = list(getattr(param, "opts", None) or [])
        for i, token in enumerate(argv):
            value = None
            if token in opts and i + 1 < len(argv):
                value, opt = argv[i + 1], token
            elif "=" in token and token.split("=", 1)[0] in opts:
                opt, value = token.split("=", 1)
            if value is not None and value.strip().lower().lstrip("+-") in _NOT_NUMBERS:
                return f"{opt} must be a number, not {value!r}"
    return exc.format_message()


def main() -> None:
    argv = sys.argv[1:]
    command = _command_name(argv)
    wants_help = command is None or "--help" in argv or "-h" in argv
    settings = None
    if not wants_help:
        from backend.config import SettingsError, get_settings

        try:
            settings = get_settings()
        except SettingsError as err:
            print(str(err), file=sys.stderr)
            raise SystemExit(2) from None
    if settings is not None and command not in _SERVICE_COMMANDS:
        _log_tracebacks_to_file(settings.logs_dir / "cli.log")
    else:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if not wants_help and command not in _NO_SCHEMA_CHECK:
            from backend.services.system import ensure_schema

            ensure_schema()
        code = typer.main.get_command(app).main(args=argv, prog_name="studio",
                                                standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
    except NoArgsIsHelpError as exc:
        exc.show()
        code = 0
    except ClickException as exc:
        # bad usage: one line saying what to fix, and where the help is
        where = ""
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            where = f" (see `{ctx.command_path} --help`)"
        print(f"Error: {_one_line(_usage_message(exc, argv))}{where}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except Abort:
        print("Aborted.", file=sys.stderr)
        raise SystemExit(1) from None
    except Exception as exc:  # noqa: BLE001 - people get one line; the traceback goes to the log
        from backend.services.system import SchemaOutdated

        if isinstance(exc, SchemaOutdated):
            print(str(exc), file=sys.stderr)
            raise SystemExit(1) from None
        if settings is None:
            from backend.config import get_settings

            settings = get_settings()
        settings.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = settings.logs_dir / "cli.log"
        handler = logging.FileHandler(log_path)
        logging.getLogger().handlers = [handler]  # the traceback to the file, not the terminal
        logging.getLogger("studio.cli").exception("studio %s failed", " ".join(argv))
        print(f"Error: {type(exc).__name__}: {_one_line(str(exc))[:500]} "
              f"(the details are in {log_path})", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
