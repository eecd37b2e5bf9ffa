"""The audit log: who created, changed, deleted, launched or published what, and when.

Call ``record`` from a service after the change is made (or inside its transaction by passing
``session=``)::

    from backend.accounts.audit import record
    record(actor, "create", "knowledge_base", kb.id, {"name": kb.name})

Actions in use: create, update, delete, launch, cancel, retry, publish, unpublish, move, login,
login_failed, logout, rotate, revoke. Details are scrubbed: a value under a key that looks like a
password, secret, token or API key is replaced by ``"***"``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from backend.accounts.actor import Actor
from backend.models.accounts import AuditEntry

log = logging.getLogger(__name__)

_SENSITIVE = ("password", "secret", "token", "api_key", "apikey", "authorization", "credential")


def _is_sensitive(key: str) -> bool:
    k = key.lower().replace("-", "_")
    return any(s in k for s in _SENSITIVE) or k in {"key", "value", "headers"}


def scrub(value: Any) -> Any:
    """A copy of ``value`` with sensitive entries masked, made JSON-friendly."""
    if isinstance(value, Mapping):
        return {str(k): ("***" if _is_sensitive(str(k)) else scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [scrub(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def record(
    actor: Actor,
    action: str,
    target_type: str,
    target_id: object = None,
    details: Mapping[str, Any] | None = None,
    *,
    workspace_id: int | None = None,
    session: Session | None = None,
) -> None:
    """Append one entry. ``workspace_id`` defaults to the actor's workspace."""
    entry = AuditEntry(
        at=datetime.now(UTC),
        user_id=actor.user_id,
        username=actor.username,
        workspace_id=actor.workspace_id if workspace_id is None else workspace_id,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        details=scrub(dict(details or {})),
    )
    if session is not None:
        session.add(entry)
        return
    from backend.db import session_scope

    try:
        with session_scope() as own:
            own.add(entry)
    except Exception:  # noqa: BLE001 - auditing must not undo the change it records
        log.exception("could not write audit entry %s %s %s", action, target_type, target_id)
