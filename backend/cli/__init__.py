"""The ``studio`` command. Each command group lives in its own module and is added here."""

from __future__ import annotations

import logging
import sys

import typer

from backend.cli import db as db_cmd
from backend.cli import jobs as jobs_cmd
from backend.cli import system as system_cmd
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


def main() -> None:
    try:
        get_settings()
    except SettingsError as err:
        print(str(err), file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
