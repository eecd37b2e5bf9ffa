"""Workspaces and their members; moving things between workspaces (admins).

Every table with a ``workspace_id`` column and an ``id`` key holds things that belong to a
workspace (prompts, knowledge bases, agents, datasets, models, jobs, secrets ...). They are found
from the ORM metadata, so a new domain table is movable without changes here. Moving a thing also
moves the rows that hang off it through a foreign key and carry their own ``workspace_id``
(a knowledge base's documents and chunks, for instance).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

import backend.models  # noqa: F401 - every table registered
from backend.accounts.actor import Actor, PermissionDenied, Role
from backend.accounts.audit import record
from backend.db import session_scope
from backend.models.accounts import Membership, User
from backend.models.base import Base
from backend.models.workspaces import DEFAULT_WORKSPACE_ID, Workspace

# tables with a workspace_id that are about access, not things one moves
NOT_MOVABLE = frozenset({"workspace_members", "studio_sessions", "api_keys", "audit_log"})
LABEL_COLUMNS = ("name", "title", "filename", "source", "kind")


class WorkspaceNotFound(LookupError):
    pass


class WorkspaceError(ValueError):
    """A workspace request that cannot be done as asked; the message says why."""


@dataclass
class WorkspaceView:
    id: int
    name: str
    description: str
    created_at: datetime
    members: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        return d


@dataclass(frozen=True)
class MemberView:
    user_id: int
    username: str
    role: str
    is_active: bool


@dataclass(frozen=True)
class ItemView:
    kind: str
    id: int
    label: str
    workspace_id: int


def _view(session: Session, ws: Workspace) -> WorkspaceView:
    members = session.execute(
        select(func.count()).select_from(Membership).where(Membership.workspace_id == ws.id)
    ).scalar_one()
    return WorkspaceView(id=ws.id, name=ws.name, description=ws.description,
                         created_at=ws.created_at, members=members)


def _load(session: Session, workspace_id: int) -> Workspace:
    ws = session.get(Workspace, workspace_id)
    if ws is None:
        raise WorkspaceNotFound(f"No workspace #{workspace_id}.")
    return ws


def _member_ids(session: Session, user_id: int) -> set[int]:
    return set(session.execute(
        select(Membership.workspace_id).where(Membership.user_id == user_id)
    ).scalars())


def list_workspaces(*, actor: Actor) -> list[WorkspaceView]:
    """Admins see every workspace; others the ones they belong to."""
    with session_scope() as session:
        stmt = select(Workspace).order_by(Workspace.id)
        if not actor.is_admin:
            if actor.user_id is None:
                return []
            stmt = stmt.where(Workspace.id.in_(_member_ids(session, actor.user_id)))
        return [_view(session, w) for w in session.execute(stmt).scalars()]


def get_workspace(*, actor: Actor, workspace_id: int) -> WorkspaceView:
    with session_scope() as session:
        ws = _load(session, workspace_id)
        if not actor.is_admin and (
            actor.user_id is None or workspace_id not in _member_ids(session, actor.user_id)
        ):
            raise WorkspaceNotFound(f"No workspace #{workspace_id}.")
        return _view(session, ws)


def find_workspace(*, actor: Actor, name_or_id: str) -> WorkspaceView:
    """A workspace by id (``3``) or name (``Sales``), among those the actor sees."""
    wanted = name_or_id.strip()
    for ws in list_workspaces(actor=actor):
        if str(ws.id) == wanted or ws.name.lower() == wanted.lower():
            return ws
    raise WorkspaceNotFound(f"No workspace {wanted!r}.")


def create_workspace(*, actor: Actor, name: str, description: str = "") -> WorkspaceView:
    actor.require_role(Role.admin, "create workspaces")
    name = name.strip()
    if not name or len(name) > 200:
        raise WorkspaceError("A workspace needs a name of 1 to 200 characters.")
    with session_scope() as session:
        exists = session.execute(
            select(Workspace.id).where(func.lower(Workspace.name) == name.lower())
        ).first()
        if exists:
            raise WorkspaceError(f"A workspace named {name!r} already exists.")
        ws = Workspace(name=name, description=description.strip()[:2000])
        session.add(ws)
        session.flush()
        session.refresh(ws)
        record(actor, "create", "workspace", ws.id, {"name": name}, workspace_id=ws.id,
               session=session)
        return _view(session, ws)


def update_workspace(*, actor: Actor, workspace_id: int, name: str | None = None,
                     description: str | None = None) -> WorkspaceView:
    actor.require_role(Role.admin, "change workspaces")
    with session_scope() as session:
        ws = _load(session, workspace_id)
        changes: dict[str, Any] = {}
        if name is not None and name.strip() != ws.name:
            new = name.strip()
            if not new or len(new) > 200:
                raise WorkspaceError("A workspace needs a name of 1 to 200 characters.")
            clash = session.execute(select(Workspace.id).where(
                func.lower(Workspace.name) == new.lower(), Workspace.id != ws.id)).first()
            if clash:
                raise WorkspaceError(f"A workspace named {new!r} already exists.")
            changes["name"] = [ws.name, new]
            ws.name = new
        if description is not None and description != ws.description:
            changes["description"] = True
            ws.description = description.strip()[:2000]
        session.flush()
        if changes:
            record(actor, "update", "workspace", ws.id, changes, workspace_id=ws.id,
                   session=session)
        return _view(session, ws)


def delete_workspace(*, actor: Actor, workspace_id: int) -> None:
    """Only an empty workspace goes; the default one stays."""
    actor.require_role(Role.admin, "delete workspaces")
    if workspace_id == DEFAULT_WORKSPACE_ID:
        raise WorkspaceError("The default workspace cannot be deleted.")
    with session_scope() as session:
        ws = _load(session, workspace_id)
        held = {kind: n for kind, n in _counts(session, workspace_id).items() if n}
        if held:
            listing = ", ".join(f"{n} {kind}" for kind, n in sorted(held.items()))
            raise WorkspaceError(
                f"Workspace {ws.name!r} still holds {listing}: move or delete them first."
            )
        name = ws.name
        session.delete(ws)
        record(actor, "delete", "workspace", workspace_id, {"name": name},
               workspace_id=workspace_id, session=session)


# ---------------------------------------------------------------------------- members


def list_members(*, actor: Actor, workspace_id: int) -> list[MemberView]:
    """Admins, and members of the workspace, see who belongs to it."""
    actor.require_workspace(workspace_id, "That workspace")
    with session_scope() as session:
        _load(session, workspace_id)
        rows = session.execute(
            select(User.id, User.username, User.role, User.is_active)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.workspace_id == workspace_id)
            .order_by(User.username)
        ).all()
        return [MemberView(user_id=i, username=u, role=r, is_active=a) for i, u, r, a in rows]


def add_member(*, actor: Actor, workspace_id: int, user_id: int) -> None:
    actor.require_role(Role.admin, "add workspace members")
    with session_scope() as session:
        ws = _load(session, workspace_id)
        user = session.get(User, user_id)
        if user is None:
            raise LookupError(f"No user #{user_id}.")
        if session.get(Membership, (user_id, workspace_id)) is not None:
            return
        session.add(Membership(user_id=user_id, workspace_id=workspace_id))
        record(actor, "update", "workspace", ws.id,
               {"added_member": user.username}, workspace_id=ws.id, session=session)


def remove_member(*, actor: Actor, workspace_id: int, user_id: int) -> None:
    actor.require_role(Role.admin, "remove workspace members")
    with session_scope() as session:
        ws = _load(session, workspace_id)
        membership = session.get(Membership, (user_id, workspace_id))
        if membership is None:
            return
        user = session.get(User, user_id)
        session.delete(membership)
        record(actor, "update", "workspace", ws.id,
               {"removed_member": user.username if user else user_id}, workspace_id=ws.id,
               session=session)


# -------------------------------------------------------------------------- moving things


def _movable_tables() -> dict[str, Table]:
    tables: dict[str, Table] = {}
    for name, table in Base.metadata.tables.items():
        if name in NOT_MOVABLE or "workspace_id" not in table.c or "id" not in table.c:
            continue
        if [c.name for c in table.primary_key.columns] != ["id"]:
            continue
        tables[name] = table
    return tables


def movable_kinds(*, actor: Actor) -> list[str]:
    """Table names of the things that belong to a workspace: ``jobs``, ``models`` ..."""
    actor.require_role(Role.admin, "move things between workspaces")
    return sorted(_roots())


def _roots() -> dict[str, Table]:
    """Movable tables that are not children of another movable table (those move along)."""
    tables = _movable_tables()
    roots: dict[str, Table] = {}
    for name, table in tables.items():
        parents = {fk.column.table.name for fk in table.foreign_keys} & set(tables)
        if not (parents - {name}):
            roots[name] = table
    return roots


def _label_column(table: Table) -> ColumnElement[Any] | None:
    for col in LABEL_COLUMNS:
        if col in table.c:
            return table.c[col]
    return None


def _counts(session: Session, workspace_id: int) -> dict[str, int]:
    return {
        name: session.execute(
            select(func.count()).select_from(table).where(table.c.workspace_id == workspace_id)
        ).scalar_one()
        for name, table in _movable_tables().items()
    }


def workspace_contents(*, actor: Actor, workspace_id: int) -> dict[str, int]:
    """How many things of each kind the workspace holds."""
    actor.require_workspace(workspace_id, "That workspace")
    with session_scope() as session:
        _load(session, workspace_id)
        return {k: n for k, n in _counts(session, workspace_id).items() if k in _roots()}


def list_items(*, actor: Actor, kind: str, workspace_id: int,
               limit: int = 500) -> list[ItemView]:
    """Things of one kind in a workspace, to pick what to move."""
    actor.require_role(Role.admin, "move things between workspaces")
    table = _roots().get(kind)
    if table is None:
        raise WorkspaceError(f"{kind!r} is not something that belongs to a workspace.")
    label = _label_column(table)
    with session_scope() as session:
        cols = [table.c.id, table.c.workspace_id] + ([label] if label is not None else [])
        rows = session.execute(
            select(*cols).where(table.c.workspace_id == workspace_id)
            .order_by(table.c.id.desc()).limit(limit)
        ).all()
        return [ItemView(kind=kind, id=r[0], workspace_id=r[1],
                         label=str(r[2]) if label is not None and r[2] is not None else f"#{r[0]}")
                for r in rows]


def _move_children(session: Session, parent: Table, parent_ids: Any, to_ws: int,
                   seen: set[str]) -> dict[str, int]:
    moved: dict[str, int] = {}
    for name, table in _movable_tables().items():
        if name in seen:
            continue
        for fk in table.foreign_keys:
            if fk.column.table is parent and fk.column.name == "id":
                cond = fk.parent.in_(parent_ids)
                n = session.execute(  # type: ignore[attr-defined]
                    update(table).where(cond).values(workspace_id=to_ws)
                ).rowcount
                if n:
                    moved[name] = moved.get(name, 0) + n
                child_ids = select(table.c.id).where(cond)
                for k, v in _move_children(session, table, child_ids, to_ws,
                                           seen | {name}).items():
                    moved[k] = moved.get(k, 0) + v
    return moved


def move_item(*, actor: Actor, kind: str, item_id: int, to_workspace_id: int) -> dict[str, int]:
    """Move one thing (and what hangs off it) to another workspace. Returns rows moved per
    table."""
    actor.require_role(Role.admin, "move things between workspaces")
    table = _roots().get(kind)
    if table is None:
        raise WorkspaceError(f"{kind!r} is not something that belongs to a workspace.")
    with session_scope() as session:
        target = _load(session, to_workspace_id)
        current = session.execute(
            select(table.c.workspace_id).where(table.c.id == item_id).with_for_update()
        ).scalar_one_or_none()
        if current is None:
            raise LookupError(f"No {kind} #{item_id}.")
        if current == to_workspace_id:
            return {}
        try:
            with session.begin_nested():
                session.execute(update(table).where(table.c.id == item_id)
                                .values(workspace_id=to_workspace_id))
                moved = {kind: 1}
                ids = select(table.c.id).where(table.c.id == item_id)
                for k, v in _move_children(session, table, ids, to_workspace_id,
                                           {kind}).items():
                    moved[k] = moved.get(k, 0) + v
        except IntegrityError:
            raise WorkspaceError(
                f"Workspace {target.name!r} already has a {kind} with the same name: "
                "rename one of them first."
            ) from None
        record(actor, "move", kind, item_id,
               {"from_workspace": current, "to_workspace": to_workspace_id, "moved": moved},
               workspace_id=to_workspace_id, session=session)
        return moved


def require_member(session: Session, actor: Actor, workspace_id: int) -> None:
    """For services: refuse unless the actor is an admin or a member of ``workspace_id``."""
    if actor.is_admin:
        return
    if actor.user_id is None or workspace_id not in _member_ids(session, actor.user_id):
        raise PermissionDenied("That belongs to another workspace.")
