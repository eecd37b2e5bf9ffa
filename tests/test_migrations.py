"""Migrations upgrade an empty database to head and downgrade back to base."""

from __future__ import annotations

import uuid

from sqlalchemy import create_engine, inspect, text

from backend import migrate
from backend.db import get_engine


def test_upgrade_empty_database_then_downgrade_to_base() -> None:
    name = f"mig_{uuid.uuid4().hex[:8]}"
    admin = get_engine().execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = get_engine().url.set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade("head", url=url)
        assert migrate.current_revision(url) == migrate.head_revision()
        engine = create_engine(url)
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            assert {"jobs", "job_metrics", "job_logs", "workers", "workspaces"} <= tables
            assert conn.execute(text("SELECT extname FROM pg_extension WHERE extname='vector'")).scalar()
        migrate.downgrade("base", url=url)
        assert migrate.current_revision(url) is None
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        engine.dispose()
        migrate.upgrade("head", url=url)  # and up again: downgrades leave nothing behind
        assert migrate.current_revision(url) == migrate.head_revision()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
