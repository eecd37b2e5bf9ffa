"""The audit log as admins see it: filter by who, what, where and when; search the details.

Services write entries with ``record`` (re-exported here)::

    from backend.services.audit import record
    record(actor, "launch", "job", job.id, {"kind": job.kind})
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, func, or_, select

from backend.accounts.actor import Actor, Role
from backend.accounts.audit import record, scrub
from backend.db import session_scope
from backend.models.accounts import AuditEntry

__all__ = ["AuditView", "audit_facets", "list_audit", "record", "scrub"]


@dataclass
class AuditView:
    id: int
    at: datetime
    user_id: int | None
    username: str
    workspace_id: int | None
    action: str
    target_type: str
    target_id: str | None
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["at"] = self.at.isoformat()
        return d


def list_audit(
    *,
    actor: Actor,
    username: str | None = None,
    actions: list[str] | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    workspace_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    search: str = "",
    limit: int = 200,
    offset: int = 0,
) -> list[AuditView]:
    """Newest first. ``search`` looks in the user name, target and details."""
    actor.require_role(Role.admin, "read the audit log")
    stmt = select(AuditEntry)
    if username:
        stmt = stmt.where(func.lower(AuditEntry.username) == username.strip().lower())
    if actions:
        stmt = stmt.where(AuditEntry.action.in_(actions))
    if target_type:
        stmt = stmt.where(AuditEntry.target_type == target_type)
    if target_id is not None:
        stmt = stmt.where(AuditEntry.target_id == str(target_id))
    if workspace_id is not None:
        stmt = stmt.where(AuditEntry.workspace_id == workspace_id)
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEntry.at <= until)
    if search.strip():
        like = f"%{search.strip()}%"
        stmt = stmt.where(or_(
            AuditEntry.username.ilike(like),
            AuditEntry.target_type.ilike(like),
            AuditEntry.target_id.ilike(like),
            AuditEntry.action.ilike(like),
            cast(AuditEntry.details, String).ilike(like),
        ))
    stmt = stmt.order_by(AuditEntry.id.desc()).limit(max(1, min(limit, 5000))).offset(offset)
    with session_scope() as session:
        return [
            AuditView(id=e.id, at=e.at, user_id=e.user_id, username=e.username,
                      workspace_id=e.workspace_id, action=e.action, target_type=e.target_type,
                      target_id=e.target_id, details=dict(e.details or {}))
            for e in session.execute(stmt).scalars()
        ]


def audit_facets(*, actor: Actor) -> dict[str, list[str]]:
    """The distinct actions, target types and user names, for the filter pickers."""
    actor.require_role(Role.admin, "read the audit log")
    with session_scope() as session:
        def distinct(col: Any) -> list[str]:
            return sorted(v for v in session.execute(select(col).distinct()).scalars() if v)

        return {"actions": distinct(AuditEntry.action),
                "target_types": distinct(AuditEntry.target_type),
                "usernames": distinct(AuditEntry.username)}
