"""Engine and sessions. One engine per database URL per process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from backend.config import get_settings
from backend.embedded import ensure_services

_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker[Session]] = {}

# Postgres settings every connection starts with. HNSW index scans (knowledge-base vector
# search) look at this many candidates (pgvector's default is 40; recall@10 0.986-0.989 at 100k
# chunks in bench/search.py), set here so that a search needs no SET statement of its own
HNSW_EF_SEARCH = 100
CONNECTION_OPTIONS = f"-c hnsw.ef_search={HNSW_EF_SEARCH}"


def connection_options(url: str) -> str:
    """libpq ``options`` for a connection: the URL's own (``?options=...``), then ours."""
    own = make_url(url).query.get("options")
    if isinstance(own, tuple):
        own = " ".join(own)
    return f"{own} {CONNECTION_OPTIONS}" if own else CONNECTION_OPTIONS


def engine_for(url: str) -> Engine:
    if url not in _engines:
        _engines[url] = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10,
                                      connect_args={"options": connection_options(url)})
    return _engines[url]


def database_url() -> str:
    return ensure_services(get_settings()).database_url


def get_engine() -> Engine:
    return engine_for(database_url())


def _session() -> Session:
    url = database_url()
    if url not in _factories:
        _factories[url] = sessionmaker(bind=engine_for(url), expire_on_commit=False)
    return _factories[url]()


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on error: no half-written rows."""
    session = _session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engines() -> None:
    """Drop pooled connections (after a fork, or between tests)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
    _factories.clear()


@contextmanager
def read_scope() -> Iterator[Session]:
    """A session that only reads, on a connection in autocommit mode: no BEGIN and COMMIT round
    trips around its statements. Each statement sees what was committed when it started, as in
    a READ COMMITTED transaction (Postgres' default); read what must agree in one statement.
    Writing through it is an error (``flush`` refuses)."""
    session = _session()
    try:
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session
        if session.new or session.dirty or session.deleted:
            raise RuntimeError("read_scope is for reads; write in session_scope.")
    finally:
        session.close()
