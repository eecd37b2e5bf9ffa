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

MAX_ID = 2**63 - 1  # ids are Postgres bigints


def as_id(ref: object) -> int | None:
    """``ref`` as a row id, or None when it cannot be one: an int in 1..MAX_ID, or a string of
    ASCII digits written the way the id prints (no sign, no leading zeros, no other scripts'
    digits such as "¹", "①" or "１"), so a name made of such characters is only a name."""
    if isinstance(ref, bool):
        return None
    if isinstance(ref, int):
        return ref if 1 <= ref <= MAX_ID else None
    if not isinstance(ref, str):
        return None
    ref = ref.strip()
    if not (ref.isascii() and ref.isdigit()) or ref.startswith("0") or len(ref) > 19:
        return None
    number = int(ref)
    return number if number <= MAX_ID else None


def find_owned(session: Session, actor: Actor, model: type[T], ref: int | str, *,
               lock: bool = False, name_only: bool = False) -> T | None:
    """The ``model`` row ``ref`` names (an id, a string of digits, or a name), or None.
    ``name_only``: ``ref`` is a name in the actor's workspace, never an id (the API's rule)."""
    table: Any = model

    def by_name(name: str) -> Any:
        stmt = select(model).where(table.name == name, table.workspace_id == actor.workspace_id)
        return session.execute(stmt.with_for_update() if lock else stmt).scalar_one_or_none()

    if name_only:
        return by_name(ref.strip()) if isinstance(ref, str) else None
    return resolve_owned(actor, ref, lambda i: session.get(model, i, with_for_update=lock),
                         by_name, lambda row: row.workspace_id)


def resolve_owned(actor: Actor, ref: int | str, by_id: Callable[[int], R | None],
                  by_name: Callable[[str], R | None], workspace_of: Callable[[R], int]
                  ) -> R | None:
    """``find_owned``'s rule over any way of reading: ``ref`` as an id first (an int or a
    string of ASCII digits, as ``as_id`` reads it), then as a name (``by_name`` looks in the
    actor's workspace); a row of another workspace is None, except for admins."""
    row: R | None = None
    number = as_id(ref)
    if number is not None:
        row = by_id(number)
    if row is None and isinstance(ref, str):
        row = by_name(ref.strip())
    if row is None or (not actor.is_admin and workspace_of(row) != actor.workspace_id):
        return None
    return row
