"""Migrations upgrade an empty database to head and downgrade back to base."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect, text

from backend import migrate


def test_upgrade_empty_database_then_downgrade_to_base(empty_database: str) -> None:
    url = empty_database
    migrate.upgrade("head", url=url)
    assert migrate.current_revision(url) == migrate.head_revision()
    engine = create_engine(url)
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        assert {"jobs", "job_metrics", "job_logs", "workers", "workspaces", "models", "users"} <= tables
        assert conn.execute(text("SELECT extname FROM pg_extension WHERE extname='vector'")).scalar()
    migrate.downgrade("base", url=url)
    assert migrate.current_revision(url) is None
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    migrate.upgrade("head", url=url)  # and up again: downgrades leave nothing behind
    assert migrate.current_revision(url) == migrate.head_revision()


def test_models_and_migrations_agree(empty_database: str) -> None:
    """Every schema change is a migration: head's schema is what the ORM models describe."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import backend.models  # noqa: F401 - every table registered
    from backend.models.base import Base

    migrate.upgrade("head", url=empty_database)
    engine = create_engine(empty_database)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    engine.dispose()
    assert diff == []
