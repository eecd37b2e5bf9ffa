"""``studio keys create|list|revoke``: API keys for the API and the CLI."""

from __future__ import annotations

import typer

from backend.cli.output import JSON_OPTION, cli_actor, echo_lines, emit, service_errors
from backend.cli.users import user_id_for
from backend.services import accounts
from backend.services import workspaces as ws_service

app = typer.Typer(help="API keys (shown once; only their digest is stored).",
                  no_args_is_help=True)


def _line(k: accounts.ApiKeyView) -> str:
    used = k.last_used_at.strftime("%Y-%m-%d %H:%M") if k.last_used_at else "never"
    state = "  REVOKED" if k.revoked else ""
    return f"#{k.id:<4} {k.prefix}…  {k.username:<16} {k.workspace:<16} used {used}  {k.name}{state}"


@app.command("create")
def create(
    user: str = typer.Option(None, "--user", help="Whose key (default: the API key's user)."),
    workspace: str = typer.Option(None, "--workspace", "-w", help="Its workspace (name or id)."),
    name: str = typer.Option("", "--name", help="What it is for."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create an API key. It is printed once: store it now."""
    actor = cli_actor()
    uid = user_id_for(user, as_json) if user else None
    with service_errors(as_json):
        ws_id = ws_service.find_workspace(actor=actor, name_or_id=workspace).id if workspace \
            else None
        new = accounts.create_api_key(actor=actor, name=name, user_id=uid, workspace_id=ws_id)
    data = {"key": new.key, **new.view.to_dict()}

    def human(_: object) -> None:
        typer.echo(new.key)
        typer.echo(f"Key #{new.view.id} for {new.view.username} in {new.view.workspace}. "
                   "It is shown only now.", err=True)

    emit(data, as_json, human)


@app.command("list")
def list_(user: str = typer.Option(None, "--user", help="Only this user's keys (admins)."),
          revoked: bool = typer.Option(False, "--revoked", help="Include revoked keys."),
          as_json: bool = JSON_OPTION) -> None:
    """List API keys (admins: everyone's; others: their own)."""
    uid = user_id_for(user, as_json) if user else None
    with service_errors(as_json):
        keys = accounts.list_api_keys(actor=cli_actor(), user_id=uid, include_revoked=revoked)
    emit(keys, as_json, lambda ks: echo_lines((_line(k) for k in ks), "No keys."))


@app.command("revoke")
def revoke(key_id: int, as_json: bool = JSON_OPTION) -> None:
    """Revoke a key: it stops working at once."""
    with service_errors(as_json):
        key = accounts.revoke_api_key(actor=cli_actor(), key_id=key_id)
    emit(key, as_json, lambda k: typer.echo(f"Revoked key #{k.id} ({k.prefix}…)."))
