"""``studio workspaces list|create|rename|delete|members|add-member|remove-member|contents|move``."""

from __future__ import annotations

import typer

from backend.cli.output import JSON_OPTION, cli_actor, echo_lines, emit, service_errors
from backend.cli.users import user_id_for
from backend.services import workspaces as ws_service

app = typer.Typer(help="Workspaces, their members, and moving things between them.",
                  no_args_is_help=True)


def _ws(name_or_id: str, as_json: bool) -> ws_service.WorkspaceView:
    with service_errors(as_json):
        return ws_service.find_workspace(actor=cli_actor(), name_or_id=name_or_id)


@app.command("list")
def list_(as_json: bool = JSON_OPTION) -> None:
    """Workspaces you can see (all of them for admins and the operator)."""
    with service_errors(as_json):
        spaces = ws_service.list_workspaces(actor=cli_actor())
    emit(spaces, as_json, lambda ws: echo_lines(
        f"#{w.id:<4} {w.name:<24} {w.members} members  {w.description}" for w in ws))


@app.command("create")
def create(name: str, description: str = typer.Option("", "--description"),
           as_json: bool = JSON_OPTION) -> None:
    """Create a workspace."""
    with service_errors(as_json):
        ws = ws_service.create_workspace(actor=cli_actor(), name=name, description=description)
    emit(ws, as_json, lambda w: typer.echo(f"Created workspace {w.name} (#{w.id})."))


@app.command("rename")
def rename(workspace: str, new_name: str, as_json: bool = JSON_OPTION) -> None:
    """Rename a workspace."""
    ws = _ws(workspace, as_json)
    with service_errors(as_json):
        out = ws_service.update_workspace(actor=cli_actor(), workspace_id=ws.id, name=new_name)
    emit(out, as_json, lambda w: typer.echo(f"Workspace #{w.id} is now {w.name}."))


@app.command("delete")
def delete(workspace: str, as_json: bool = JSON_OPTION) -> None:
    """Delete an empty workspace."""
    ws = _ws(workspace, as_json)
    with service_errors(as_json):
        ws_service.delete_workspace(actor=cli_actor(), workspace_id=ws.id)
    emit({"deleted": ws.name}, as_json, lambda d: typer.echo(f"Deleted workspace {ws.name}."))


@app.command("members")
def members(workspace: str, as_json: bool = JSON_OPTION) -> None:
    """Who belongs to a workspace."""
    ws = _ws(workspace, as_json)
    with service_errors(as_json):
        rows = ws_service.list_members(actor=cli_actor(), workspace_id=ws.id)
    emit(rows, as_json, lambda ms: echo_lines((f"{m.username:<20} {m.role}" for m in ms),
                                             "No members."))


@app.command("add-member")
def add_member(workspace: str, username: str, as_json: bool = JSON_OPTION) -> None:
    """Add a user to a workspace."""
    ws = _ws(workspace, as_json)
    uid = user_id_for(username, as_json)
    with service_errors(as_json):
        ws_service.add_member(actor=cli_actor(), workspace_id=ws.id, user_id=uid)
    emit({"workspace": ws.name, "added": username}, as_json,
         lambda d: typer.echo(f"{username} is a member of {ws.name}."))


@app.command("remove-member")
def remove_member(workspace: str, username: str, as_json: bool = JSON_OPTION) -> None:
    """Remove a user from a workspace."""
    ws = _ws(workspace, as_json)
    uid = user_id_for(username, as_json)
    with service_errors(as_json):
        ws_service.remove_member(actor=cli_actor(), workspace_id=ws.id, user_id=uid)
    emit({"workspace": ws.name, "removed": username}, as_json,
         lambda d: typer.echo(f"{username} left {ws.name}."))


@app.command("contents")
def contents(workspace: str, as_json: bool = JSON_OPTION) -> None:
    """How many things of each kind a workspace holds."""
    ws = _ws(workspace, as_json)
    with service_errors(as_json):
        counts = ws_service.workspace_contents(actor=cli_actor(), workspace_id=ws.id)
    emit(counts, as_json, lambda c: echo_lines(f"{k:<24} {n}" for k, n in sorted(c.items())))


@app.command("move")
def move(kind: str = typer.Argument(..., help="What: jobs, models, knowledge_bases ..."),
         item_id: int = typer.Argument(..., help="Its id."),
         to: str = typer.Option(..., "--to", help="Target workspace (name or id)."),
         as_json: bool = JSON_OPTION) -> None:
    """Move one thing (with what hangs off it) to another workspace."""
    ws = _ws(to, as_json)
    with service_errors(as_json):
        moved = ws_service.move_item(actor=cli_actor(), kind=kind, item_id=item_id,
                                     to_workspace_id=ws.id)
    emit({"moved": moved, "to": ws.name}, as_json,
         lambda d: typer.echo(f"Moved {kind} #{item_id} to {ws.name}: {moved or 'already there'}"))
