"""Finding a workspace-owned row the way every service names one: by id, or by name in the
actor's workspace. Another workspace's row looks absent (admins see every workspace's by id)."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.accounts.actor import Actor

T = TypeVar("T")


def find_owned(session: Session, actor: Actor, model: type[T], ref: int | str, *,
               lock: bool = False) -> T | None:
    """The ``model`` row ``ref`` names (an id, a string of digits, or a name), or None."""
    row: Any = None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        row = session.get(model, int(ref), with_for_update=lock)
    if row is None and isinstance(ref, str):
        table: Any = model
        stmt = select(model).where(table.name == ref.strip(),
                                   table.workspace_id == actor.workspace_id)
        if lock:
            stmt = stmt.with_for_update()
        row = session.execute(stmt).scalar_one_or_none()
    if row is None or (not actor.is_admin and row.workspace_id != actor.workspace_id):
        return None
    return row  # type: ignore[no-any-return]
