"""The ``studio`` command. Each command group lives in its own module and is added here."""

from __future__ import annotations

import logging
import sys

import typer

from backend.cli import audit as audit_cmd
from backend.cli import chat as chat_cmd
from backend.cli import db as db_cmd
from backend.cli import jobs as jobs_cmd
from backend.cli import keys as keys_cmd
from backend.cli import models as models_cmd
from backend.cli import secrets as secrets_cmd
from backend.cli import system as system_cmd
from backend.cli import users as users_cmd
from backend.cli import workspaces as workspaces_cmd
from backend.cli.output import global_options
from backend.config import SettingsError, get_settings

app = typer.Typer(
    name="studio",
    help="LLM Studio: prompts, knowledge bases, agents, fine-tuning and pre-training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
system_cmd.register(app)
app.add_typer(db_cmd.app, name="db")
app.add_typer(jobs_cmd.app, name="jobs")
app.add_typer(models_cmd.app, name="models")
app.command("chat")(chat_cmd.chat)
app.callback()(global_options)
app.add_typer(users_cmd.app, name="users")
app.add_typer(workspaces_cmd.app, name="workspaces")
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(secrets_cmd.app, name="secrets")


# Commands that manage the schema themselves, or only report on it
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


def main() -> None:
    try:
        settings = get_settings()
    except SettingsError as err:
        print(str(err), file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = _command_name(sys.argv[1:])
    try:
        if command is not None and command not in _NO_SCHEMA_CHECK:
            from backend.services.system import ensure_schema

            ensure_schema()
        app()
    except Exception as exc:  # noqa: BLE001 - people get one line; the traceback goes to the log
        from backend.services.system import SchemaOutdated

        if isinstance(exc, SchemaOutdated):
            print(str(exc), file=sys.stderr)
            raise SystemExit(1) from None
        settings.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = settings.logs_dir / "cli.log"
        handler = logging.FileHandler(log_path)
        logging.getLogger().addHandler(handler)
        logging.getLogger("studio.cli").exception("studio %s failed", " ".join(sys.argv[1:]))
        print(f"Error: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(f"The details are in {log_path}.", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
