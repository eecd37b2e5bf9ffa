"""The accounts migration (0003) creates exactly what the ORM models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from backend.db import get_engine
from backend.models.base import Base

ACCOUNT_TABLES = ("users", "workspace_members", "studio_sessions", "api_keys", "login_attempts",
                  "audit_log", "secrets")


def test_migration_matches_models() -> None:
    with get_engine().connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, Base.metadata)
    ours = [d for d in diffs if any(f"'{t}'" in repr(d) for t in ACCOUNT_TABLES)]
    assert ours == []
    with get_engine().connect() as conn:
        from sqlalchemy import inspect

        assert set(ACCOUNT_TABLES) <= set(inspect(conn).get_table_names())
