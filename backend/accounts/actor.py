"""The actor of a service call: every service function takes one and checks it.

Roles are ordered: ``user`` < ``builder`` < ``admin``. A service refuses a call whose actor lacks
the role (``PermissionDenied``), so hiding a button is never the only guard.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from backend.models.workspaces import DEFAULT_WORKSPACE_ID


class Role(enum.StrEnum):
    user = "user"
    builder = "builder"
    admin = "admin"

    @property
    def rank(self) -> int:
        return {"user": 0, "builder": 1, "admin": 2}[self.value]


class PermissionDenied(PermissionError):
    """The actor may not do this. The message says what role or workspace it needs."""


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    username: str
    role: Role
    workspace_id: int = DEFAULT_WORKSPACE_ID

    @classmethod
    def system(cls, workspace_id: int = DEFAULT_WORKSPACE_ID) -> Actor:
        """The studio itself (launcher, worker internals, local CLI run by the machine's owner)."""
        return cls(user_id=None, username="system", role=Role.admin, workspace_id=workspace_id)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.admin

    def has_role(self, role: Role) -> bool:
        return self.role.rank >= role.rank

    def require_role(self, role: Role, action: str) -> None:
        if not self.has_role(role):
            raise PermissionDenied(
                f"{self.username} ({self.role.value}) may not {action}: "
                f"it needs the {role.value} role. Ask an admin."
            )

    def require_workspace(self, workspace_id: int, what: str) -> None:
        """Members see their workspace only; admins see every workspace."""
        if not self.is_admin and workspace_id != self.workspace_id:
            raise PermissionDenied(f"{what} belongs to another workspace.")
