from sqlalchemy import text

from backend.db import get_engine


def test_database_has_pgvector_and_default_workspace() -> None:
    with get_engine().connect() as conn:
        assert conn.execute(text("SELECT extversion FROM pg_extension WHERE extname='vector'")).scalar()
        assert conn.execute(text("SELECT name FROM workspaces WHERE id = 1")).scalar() == "Default"
