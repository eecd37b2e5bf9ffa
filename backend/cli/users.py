"""``studio users create|list|set-role|enable|disable|passwd|delete``."""

from __future__ import annotations

import sys

import typer

from backend.accounts.actor import Role
from backend.cli.output import JSON_OPTION, cli_actor, echo_lines, emit, fail, service_errors
from backend.services import accounts
from backend.services import workspaces as ws_service

app = typer.Typer(help="User accounts and their roles.", no_args_is_help=True)

PASSWORD_STDIN = typer.Option(
    False, "--password-stdin", help="Read the password from the first line of standard input."
)


def read_password(from_stdin: bool, prompt: str = "Password") -> str:
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            fail("No password on standard input.")
        return line
    return str(typer.prompt(prompt, hide_input=True, confirmation_prompt=True))


def user_id_for(username: str, as_json: bool = False) -> int:
    with service_errors(as_json):
        return accounts.find_user(actor=cli_actor(), username=username).id


def _line(u: accounts.UserView) -> str:
    spaces = ", ".join(w.name for w in u.workspaces) or "-"
    state = "" if u.is_active else "  (disabled)"
    last = u.last_login_at.strftime("%Y-%m-%d %H:%M") if u.last_login_at else "never"
    return f"#{u.id:<4} {u.username:<20} {u.role:<8} last login {last:<16}  {spaces}{state}"


@app.command("create")
def create(
    username: str = typer.Argument(..., help="Login name."),
    admin: bool = typer.Option(False, "--admin", help="Make the user an admin."),
    role: Role = typer.Option(None, "--role", help="user, builder or admin (default: user)."),
    workspace: list[str] = typer.Option(
        None, "--workspace", "-w", help="Workspace (name or id) to join; repeat for several."
    ),
    password_stdin: bool = PASSWORD_STDIN,
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a user. The first admin: `studio users create alice --admin`."""
    if admin and role not in (None, Role.admin):
        fail("--admin and --role disagree: give one of them.", as_json=as_json)
    the_role = Role.admin if admin else (role or Role.user)
    actor = cli_actor()
    with service_errors(as_json):
        ws_ids = [ws_service.find_workspace(actor=actor, name_or_id=w).id
                  for w in workspace or []] or None
    password = read_password(password_stdin)
    with service_errors(as_json):
        user = accounts.create_user(actor=actor, username=username, password=password,
                                    role=the_role, workspace_ids=ws_ids)
    emit(user, as_json, lambda u: typer.echo(f"Created {u.role} {u.username} (#{u.id})."))


@app.command("list")
def list_(
    search: str = typer.Option("", "--search", help="Part of the user name."),
    workspace: str = typer.Option(None, "--workspace", "-w", help="Only members of this one."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List users with their role, workspaces and last login."""
    actor = cli_actor()
    with service_errors(as_json):
        ws_id = ws_service.find_workspace(actor=actor, name_or_id=workspace).id if workspace \
            else None
        users = accounts.list_users(actor=actor, search=search, workspace_id=ws_id)
    emit(users, as_json, lambda us: echo_lines((_line(u) for u in us), "No users."))


@app.command("set-role")
def set_role(username: str, role: Role, as_json: bool = JSON_OPTION) -> None:
    """Change a user's role (user, builder, admin)."""
    actor = cli_actor()
    uid = user_id_for(username, as_json)
    with service_errors(as_json):
        user = accounts.update_user(actor=actor, user_id=uid, role=role)
    emit(user, as_json, lambda u: typer.echo(f"{u.username} is now {u.role}."))


@app.command("disable")
def disable(username: str, as_json: bool = JSON_OPTION) -> None:
    """Disable an account: its logins end and its API keys stop working."""
    actor = cli_actor()
    uid = user_id_for(username, as_json)
    with service_errors(as_json):
        user = accounts.update_user(actor=actor, user_id=uid, is_active=False)
    emit(user, as_json, lambda u: typer.echo(f"{u.username} is disabled."))


@app.command("enable")
def enable(username: str, as_json: bool = JSON_OPTION) -> None:
    """Enable a disabled account again."""
    actor = cli_actor()
    uid = user_id_for(username, as_json)
    with service_errors(as_json):
        user = accounts.update_user(actor=actor, user_id=uid, is_active=True)
    emit(user, as_json, lambda u: typer.echo(f"{u.username} is enabled."))


@app.command("passwd")
def passwd(username: str, password_stdin: bool = PASSWORD_STDIN,
           as_json: bool = JSON_OPTION) -> None:
    """Set a user's password (their studio logins end)."""
    actor = cli_actor()
    uid = user_id_for(username, as_json)
    password = read_password(password_stdin, "New password")
    with service_errors(as_json):
        accounts.set_password(actor=actor, user_id=uid, new_password=password)
    emit({"username": username, "password": "changed"}, as_json,
         lambda d: typer.echo(f"Password of {username} changed."))


@app.command("delete")
def delete(username: str, yes: bool = typer.Option(False, "--yes", help="Do not ask."),
           as_json: bool = JSON_OPTION) -> None:
    """Delete an account with its logins and API keys (what it made stays)."""
    actor = cli_actor()
    uid = user_id_for(username, as_json)
    if not yes and not as_json:
        typer.confirm(f"Delete user {username}?", abort=True)
    with service_errors(as_json):
        accounts.delete_user(actor=actor, user_id=uid)
    emit({"deleted": username}, as_json, lambda d: typer.echo(f"Deleted {username}."))
