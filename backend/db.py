"""Engine and sessions. One engine per database URL per process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from backend.config import get_settings
from backend.embedded import ensure_services

_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker[Session]] = {}


def engine_for(url: str) -> Engine:
    if url not in _engines:
        _engines[url] = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    return _engines[url]


def database_url() -> str:
    return ensure_services(get_settings()).database_url


def get_engine() -> Engine:
    return engine_for(database_url())


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on error: no half-written rows."""
    url = database_url()
    if url not in _factories:
        _factories[url] = sessionmaker(bind=engine_for(url), expire_on_commit=False)
    session = _factories[url]()
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
