"""``studio keys create|list|revoke``: API keys for the API and the CLI."""

from __future__ import annotations

import typer

from backend.cli.output import JSON_OPTION, cli_actor, echo_lines, emit, fail, service_errors
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
    user: str = typer.Option(None, "--user", help="The user the key acts as, with that user's "
                             "role (default: the caller, i.e. the --api-key's user; required "
                             "without --api-key)."),
    workspace: str = typer.Option(None, "--workspace", "-w", help="Its workspace (name or id)."),
    name: str = typer.Option("", "--name", help="What it is for."),
    agent: str = typer.Option(None, "--agent", help="Limit the key to this published agent."),
    rate: str = typer.Option(None, "--rate", metavar="N/min",
                             help="Limit the key to N requests a minute, e.g. 60/min."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create an API key. It is printed once: store it now."""
    actor = cli_actor()
    if not user and actor.user_id is None:
        fail("Say which user the key acts as: --user NAME. Without --api-key the CLI runs as "
             "the studio itself, which has no keys of its own; the key gets that user's role "
             "(for a bot's key, a user-role account is enough). `studio users list` shows the "
             "users.", as_json=as_json)
    uid = user_id_for(user, as_json) if user else None
    per_min = _rate(rate, as_json) if rate else None
    with service_errors(as_json):
        ws_id = ws_service.find_workspace(actor=actor, name_or_id=workspace).id if workspace \
            else None
        if agent or per_min:
            from backend.services import agents

            _check_agent(actor, agent, ws_id)
        new = accounts.create_api_key(actor=actor, name=name, user_id=uid, workspace_id=ws_id)
        if agent or per_min:
            limit = agents.set_key_limit(actor=actor, key_id=new.view.id, agent=agent,
                                         rate_per_min=per_min)
    data = {"key": new.key, **new.view.to_dict()}
    if agent or per_min:
        data.update(agent=limit.agent, rate_per_min=limit.rate_per_min)

    def human(_: object) -> None:
        typer.echo(new.key)
        typer.echo(f"Key #{new.view.id} for {new.view.username} in {new.view.workspace}. "
                   "It is shown only now.", err=True)

    emit(data, as_json, human)


def _rate(text: str, as_json: bool) -> int:
    number, _, unit = text.strip().lower().partition("/")
    if not number.isdigit() or unit not in ("", "min", "m", "minute") or int(number) < 1:
        fail(f"--rate takes N/min, e.g. 60/min (got {text!r}).", as_json=as_json)
    return int(number)


def _check_agent(actor: object, agent: str | None, workspace_id: int | None) -> None:
    """Refuse before the key exists when the agent is not there (no key half-made)."""
    if not agent:
        return
    from dataclasses import replace

    from backend.accounts.actor import Actor
    from backend.services import agents

    assert isinstance(actor, Actor)
    scoped = replace(actor, workspace_id=workspace_id) if workspace_id else actor
    agents.get_agent(actor=Actor.system(scoped.workspace_id), agent=agent)


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
