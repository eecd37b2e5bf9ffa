"""``studio db upgrade|downgrade|current|dump|restore``."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from backend.cli.output import JSON_OPTION, cli_actor, emit, fail
from backend.services import system

app = typer.Typer(help="Database schema and backups.", no_args_is_help=True)


@app.command()
def upgrade(revision: str = typer.Argument("head"), as_json: bool = JSON_OPTION) -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    rev = system.upgrade_schema(revision)
    emit({"revision": rev}, as_json, lambda d: typer.echo(f"Schema at {d['revision']}"))


@app.command()
def downgrade(revision: str = typer.Argument("-1", help="Target revision, or 'base'."),
              as_json: bool = JSON_OPTION) -> None:
    """Undo migrations down to REVISION."""
    rev = system.downgrade_schema(revision)
    emit({"revision": rev}, as_json, lambda d: typer.echo(f"Schema at {d['revision'] or 'base'}"))


@app.command()
def current(as_json: bool = JSON_OPTION) -> None:
    """Show the schema revision of the database and of the code."""
    from backend import migrate
    from backend.db import database_url

    data = {"revision": migrate.current_revision(database_url()), "head": migrate.head_revision()}
    emit(data, as_json, lambda d: typer.echo(f"database: {d['revision']}  code: {d['head']}"))


@app.command()
def dump() -> None:
    """Write a plain-SQL backup to stdout: `studio db dump > backup.sql`."""
    try:
        system.dump_database(actor=cli_actor(), out=sys.stdout.buffer)
    except RuntimeError as err:
        fail(str(err))


@app.command()
def restore(path: Path, as_json: bool = JSON_OPTION) -> None:
    """Load a backup made by `studio db dump` (all or nothing)."""
    try:
        system.restore_database(actor=cli_actor(), path=path)
    except (RuntimeError, FileNotFoundError) as err:
        fail(str(err), as_json=as_json)
    emit({"restored": str(path)}, as_json, lambda d: typer.echo(f"Restored {d['restored']}"))
