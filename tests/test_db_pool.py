"""The engine's pool: settings every connection starts with, pools of their own for a purpose's
settings, and a ping only for connections that sat idle."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from backend import db
from backend.db import read_scope, session_scope


def test_connection_options_keep_the_urls_own() -> None:
    assert db.connection_options("postgresql+psycopg://u@h/db") == db.CONNECTION_OPTIONS
    assert db.connection_options(
        "postgresql+psycopg://u@h/db?options=-c%20search_path%3Dstudio"
    ) == f"-c search_path=studio {db.CONNECTION_OPTIONS}"
    assert db.connection_options("postgresql+psycopg://u@h/db", "-c work_mem=8MB") == \
        f"{db.CONNECTION_OPTIONS} -c work_mem=8MB"


def test_connections_start_with_the_hnsw_ef_search() -> None:
    with session_scope() as s:
        assert s.execute(text("SHOW hnsw.ef_search")).scalar() == str(db.HNSW_EF_SEARCH)


def test_a_purposes_pool_has_its_settings_and_no_other_has() -> None:
    with read_scope("-c work_mem=7MB") as s:
        assert s.execute(text("SHOW work_mem")).scalar() == "7MB"
        assert s.execute(text("SHOW hnsw.ef_search")).scalar() == str(db.HNSW_EF_SEARCH)
    for scope in (session_scope(), read_scope()):
        with scope as s:
            assert s.execute(text("SHOW work_mem")).scalar() != "7MB"


def _backend_pid() -> int:
    with session_scope() as s:
        return int(s.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_only_idle_connections_are_pinged(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = db.get_engine()
    pings: list[object] = []
    real = engine.dialect.do_ping

    def counted(conn: object) -> bool:
        pings.append(conn)
        return bool(real(conn))

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 60.0)
    _backend_pid()
    pings.clear()
    for _ in range(5):  # back-to-back use: the connection answered a moment ago
        _backend_pid()
    assert pings == []
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)
    _backend_pid()
    assert len(pings) == 1


def test_a_dead_pooled_connection_is_replaced_not_handed_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Postgres ended the pooled connection while it sat idle (a restart, an idle timeout): the
    next session gets a live one instead of an error."""
    with session_scope() as other:
        other.execute(text("SELECT 1"))
        pid = _backend_pid()  # a second connection, back in the pool now
        other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    time.sleep(0.2)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)
    seen = {_backend_pid() for _ in range(4)}
    assert pid not in seen
