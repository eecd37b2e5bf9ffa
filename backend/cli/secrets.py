"""``studio secrets set|list|delete|rotate``."""

from __future__ import annotations

import secrets as pysecrets
import sys

import typer

from backend.cli.output import JSON_OPTION, cli_actor, echo_lines, emit, fail, service_errors
from backend.services import secrets as secrets_service
from backend.services import workspaces as ws_service

app = typer.Typer(help="Workspace secrets (encrypted at rest) and the studio's secret key.",
                  no_args_is_help=True)
WORKSPACE = typer.Option(None, "--workspace", "-w", help="Workspace (default: yours).")


def _ws_id(workspace: str | None, as_json: bool) -> int | None:
    if not workspace:
        return None
    with service_errors(as_json):
        return ws_service.find_workspace(actor=cli_actor(), name_or_id=workspace).id


@app.command("set")
def set_(name: str, workspace: str = WORKSPACE,
         value_stdin: bool = typer.Option(False, "--value-stdin",
                                          help="Read the value from standard input."),
         as_json: bool = JSON_OPTION) -> None:
    """Store a secret (asked for without echo, or read from stdin)."""
    ws_id = _ws_id(workspace, as_json)
    value = sys.stdin.readline().rstrip("\r\n") if value_stdin else str(
        typer.prompt("Value", hide_input=True))
    with service_errors(as_json):
        view = secrets_service.set_secret(actor=cli_actor(), name=name, value=value,
                                          workspace_id=ws_id)
    emit(view, as_json, lambda v: typer.echo(f"Saved {v.name} = {v.masked}"))


@app.command("list")
def list_(workspace: str = WORKSPACE, as_json: bool = JSON_OPTION) -> None:
    """A workspace's secrets, masked."""
    ws_id = _ws_id(workspace, as_json)
    with service_errors(as_json):
        rows = secrets_service.list_secrets(actor=cli_actor(), workspace_id=ws_id)
    emit(rows, as_json, lambda vs: echo_lines((f"{v.name:<30} {v.masked}" for v in vs),
                                             "No secrets."))


@app.command("delete")
def delete(name: str, workspace: str = WORKSPACE, as_json: bool = JSON_OPTION) -> None:
    """Delete a secret."""
    ws_id = _ws_id(workspace, as_json)
    with service_errors(as_json):
        secrets_service.delete_secret(actor=cli_actor(), name=name, workspace_id=ws_id)
    emit({"deleted": name}, as_json, lambda d: typer.echo(f"Deleted {name}."))


@app.command("rotate")
def rotate(
    new_key: str = typer.Option(None, "--new-key", help="The new secret key (16+ characters)."),
    generate: bool = typer.Option(False, "--generate", help="Generate a new random key."),
    old_key: str = typer.Option(None, "--old-key",
                                help="The key the values were written with (default: current)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Re-encrypt every stored secret with a new secret key, all or nothing."""
    if bool(new_key) == generate:
        fail("Give --new-key KEY or --generate (one of them).", as_json=as_json)
    key = new_key or pysecrets.token_urlsafe(32)
    with service_errors(as_json):
        report = secrets_service.rotate_secret_key(actor=cli_actor(), new_key=key,
                                                   old_key=old_key)
    data = report.to_dict()
    if generate and report.key_saved_to is None:
        data["new_key"] = key  # the operator must put it into STUDIO_SECRET_KEY

    def human(_: object) -> None:
        for col, n in report.reencrypted.items():
            typer.echo(f"{col:<40} {n} re-encrypted")
        if "new_key" in data:
            typer.echo(f"New key: {key}")
        typer.echo(report.message)

    emit(data, as_json, human)
