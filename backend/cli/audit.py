"""``studio audit list``: who did what, when (admins)."""

from __future__ import annotations

from datetime import datetime

import typer

from backend.cli.output import JSON_OPTION, cli_actor, echo_lines, emit, fail, service_errors
from backend.services import audit as audit_service
from backend.services import workspaces as ws_service

app = typer.Typer(help="The audit log.", no_args_is_help=True)


def _when(value: str | None, flag: str) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{flag} takes a date or time such as 2026-01-31 or 2026-01-31T14:00.")
    return when if when.tzinfo else when.astimezone()


@app.command("list")
def list_(
    user: str = typer.Option(None, "--user", help="Only this user name."),
    action: list[str] = typer.Option(None, "--action", help="create, update, delete, launch ..."),
    target_type: str = typer.Option(None, "--target-type", help="user, job, model, secret ..."),
    workspace: str = typer.Option(None, "--workspace", "-w", help="Only this workspace."),
    since: str = typer.Option(None, "--since", help="From this date/time (ISO)."),
    until: str = typer.Option(None, "--until", help="Up to this date/time (ISO)."),
    search: str = typer.Option("", "--search", help="Text in names, targets or details."),
    limit: int = typer.Option(100, "--limit"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Audit entries, newest first."""
    actor = cli_actor()
    with service_errors(as_json):
        ws_id = ws_service.find_workspace(actor=actor, name_or_id=workspace).id if workspace \
            else None
        rows = audit_service.list_audit(
            actor=actor, username=user, actions=action, target_type=target_type,
            workspace_id=ws_id, since=_when(since, "--since"), until=_when(until, "--until"),
            search=search, limit=limit,
        )
    emit(rows, as_json, lambda es: echo_lines((
        f"{e.at:%Y-%m-%d %H:%M:%S}  {e.username:<14} {e.action:<10} {e.target_type}"
        f"{' #' + e.target_id if e.target_id else ''}  {e.details or ''}" for e in es),
        "No entries."))
