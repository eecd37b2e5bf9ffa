"""Helpers for the accounts tests: users, workspaces and API keys made through the services."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from backend.accounts.actor import Actor, Role
from backend.db import get_engine
from backend.services import accounts, workspaces

PASSWORD = "correct horse battery"
SYSTEM = Actor.system()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_workspace(prefix: str = "ws") -> int:
    return workspaces.create_workspace(actor=SYSTEM, name=unique(prefix)).id


def make_user(role: Role | str = Role.user, workspace_ids: list[int] | None = None,
              password: str = PASSWORD, prefix: str = "u") -> accounts.UserView:
    return accounts.create_user(actor=SYSTEM, username=unique(prefix), password=password,
                                role=role, workspace_ids=workspace_ids or [1])


def actor_of(user: accounts.UserView, workspace_id: int) -> Actor:
    return Actor(user_id=user.id, username=user.username, role=Role(user.role),
                 workspace_id=workspace_id)


def make_key(user: accounts.UserView, workspace_id: int) -> str:
    return accounts.create_api_key(actor=SYSTEM, user_id=user.id, workspace_id=workspace_id,
                                   name="test").key


def dump_database() -> str:
    """Every row of every table in the public schema, as text."""
    parts: list[str] = []
    with get_engine().connect() as conn:
        tables = conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )).scalars().all()
        for table in tables:
            rows = conn.execute(text(f'SELECT t::text FROM "{table}" t')).scalars().all()
            parts.append(f"-- {table}\n" + "\n".join(rows))
    return "\n".join(parts)
