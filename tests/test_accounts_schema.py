"""The accounts migration (0003) creates exactly what the ORM models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from backend.db import get_engine
from backend.models.base import Base

ACCOUNT_TABLES = {"users", "workspace_members", "studio_sessions", "api_keys", "login_attempts",
                  "audit_log", "secrets"}


def _table_of(diff: object) -> str | None:
    item = diff[0] if isinstance(diff, list) else diff
    for part in item if isinstance(item, tuple) else ():
        name = getattr(part, "name", None)
        table = getattr(part, "table", None)
        if table is not None and getattr(table, "name", None) in ACCOUNT_TABLES:
            return table.name
        if name in ACCOUNT_TABLES:
            return name
        if isinstance(part, str) and part in ACCOUNT_TABLES:
            return part
    return None


def test_migration_matches_models() -> None:
    with get_engine().connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, Base.metadata)
    ours = [d for d in diffs if _table_of(d)]
    assert ours == []
