"""Finding a workspace-owned row the way every service names one: by id, or by name in the
actor's workspace. Another workspace's row looks absent (admins see every workspace's by id)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.accounts.actor import Actor

T = TypeVar("T")
R = TypeVar("R")


def find_owned(session: Session, actor: Actor, model: type[T], ref: int | str, *,
               lock: bool = False) -> T | None:
    """The ``model`` row ``ref`` names (an id, a string of digits, or a name), or None."""
    table: Any = model

    def by_name(name: str) -> Any:
        stmt = select(model).where(table.name == name, table.workspace_id == actor.workspace_id)
        return session.execute(stmt.with_for_update() if lock else stmt).scalar_one_or_none()

    return resolve_owned(actor, ref, lambda i: session.get(model, i, with_for_update=lock),
                         by_name, lambda row: row.workspace_id)


def resolve_owned(actor: Actor, ref: int | str, by_id: Callable[[int], R | None],
                  by_name: Callable[[str], R | None], workspace_of: Callable[[R], int]
                  ) -> R | None:
    """``find_owned``'s rule over any way of reading: ``ref`` as an id first (an int or a
    string of digits), then as a name (``by_name`` looks in the actor's workspace); a row of
    another workspace is None, except for admins."""
    row: R | None = None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        row = by_id(int(ref))
    if row is None and isinstance(ref, str):
        row = by_name(ref.strip())
    if row is None or (not actor.is_admin and workspace_of(row) != actor.workspace_id):
        return None
    return row
