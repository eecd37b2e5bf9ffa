"""Engine and sessions. One engine per database URL per process."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from psycopg.types.string import StrBinaryDumper, StrDumperUnknown
from sqlalchemy import Engine, create_engine, event, exc, make_url
from sqlalchemy.orm import Session, sessionmaker

from backend.config import get_settings
from backend.embedded import ensure_services

# by (database URL, extra connection options)
_engines: dict[tuple[str, str], Engine] = {}
_factories: dict[tuple[str, str], sessionmaker[Session]] = {}

# Postgres settings every connection starts with. HNSW index scans (knowledge-base vector
# search) look at this many candidates (pgvector's default is 40; recall@10 0.986-0.989 at 100k
# chunks in bench/search.py), set here so that a search needs no SET statement of its own
HNSW_EF_SEARCH = 100
CONNECTION_OPTIONS = f"-c hnsw.ef_search={HNSW_EF_SEARCH}"


# A pooled connection handed back less than this many seconds ago is handed out again without
# a ping (HikariCP's "alive bypass window"): a search burst or a page's several reads skip a
# round trip each (about 1 ms here), and one idle for longer is still checked, as
# ``pool_pre_ping`` did for every checkout.
PING_AFTER_IDLE_S = 0.5


def connection_options(url: str, extra: str = "") -> str:
    """libpq ``options`` for a connection: the URL's own (``?options=...``), then ours, then
    ``extra`` (settings of a purpose's own engine: ``engine_for``)."""
    own = make_url(url).query.get("options")
    if isinstance(own, tuple):
        own = " ".join(own)
    return " ".join(o for o in (own, CONNECTION_OPTIONS, extra) if o)


def _note_checkin(dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        record.info["checked_in"] = time.monotonic()


def _ping_if_idle(engine: Engine) -> Any:
    def checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        last = record.info.get("checked_in")
        if last is not None and time.monotonic() - last < PING_AFTER_IDLE_S:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as e:  # the server went away: the pool connects afresh
            raise exc.DisconnectionError(str(e)) from e
        if not alive:
            raise exc.DisconnectionError("the connection did not answer its ping")
    return checkout


# Postgres text and jsonb cannot hold U+0000 (NUL): a model's or a user's text that has one
# would fail its whole write ("\u0000 cannot be converted to text"). Every text the studio
# stores drops its NUL characters on the way in, in one place: the driver's str dumpers and the
# JSON serializer below, so no table, job result, message, trace, run, chunk or dataset row can
# miss it. NUL carries no meaning in text; nothing else is changed.
NUL = "\x00"


def drop_nul(text: str) -> str:
    """``text`` without its NUL characters (which Postgres text cannot hold)."""
    return text.replace(NUL, "") if NUL in text else text


class _NulFreeStrDumper(StrDumperUnknown):
    def dump(self, obj: str) -> Any:
        return super().dump(drop_nul(obj))


class _NulFreeStrBinaryDumper(StrBinaryDumper):
    def dump(self, obj: str) -> Any:
        return super().dump(drop_nul(obj))


# a JSON escape: an escaped backslash (kept as is) or an escaped NUL (dropped)
_JSON_NUL = re.compile(r"\\\\|\\u0000")


def json_dumps(value: Any) -> str:
    """JSON for json/jsonb columns, with NUL characters dropped from every string (keys too)."""
    text = json.dumps(value)
    if "\\u0000" not in text:
        return text
    return _JSON_NUL.sub(lambda m: m.group(0) if m.group(0) == "\\\\" else "", text)


def _nul_free_strings(dbapi_connection: Any, record: Any) -> None:
    adapters = getattr(dbapi_connection, "adapters", None)
    if adapters is not None:  # psycopg 3
        # the text one last: psycopg's default for str (untyped, so Postgres infers the
        # column's type, e.g. pgvector's text form) stays the one chosen
        adapters.register_dumper(str, _NulFreeStrBinaryDumper)
        adapters.register_dumper(str, _NulFreeStrDumper)


def engine_for(url: str, options: str = "") -> Engine:
    """The process's engine for ``url``; ``options``: libpq options of an engine of its own
    (``-c name=value`` settings every one of its connections starts with)."""
    key = (url, options)
    if key not in _engines:
        engine = create_engine(url, pool_size=5, max_overflow=10, json_serializer=json_dumps,
                               connect_args={"options": connection_options(url, options)})
        event.listen(engine, "connect", _nul_free_strings)
        event.listen(engine, "checkout", _ping_if_idle(engine))
        event.listen(engine, "checkin", _note_checkin)
        _engines[key] = engine
    return _engines[key]


def database_url() -> str:
    return ensure_services(get_settings()).database_url


def get_engine() -> Engine:
    return engine_for(database_url())


def _session(options: str = "") -> Session:
    key = (database_url(), options)
    if key not in _factories:
        _factories[key] = sessionmaker(bind=engine_for(*key), expire_on_commit=False)
    return _factories[key]()


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
def read_scope(options: str = "") -> Iterator[Session]:
    """A session that only reads, on a connection in autocommit mode: no BEGIN and COMMIT round
    trips around its statements. Each statement sees what was committed when it started, as in
    a READ COMMITTED transaction (Postgres' default); read what must agree in one statement.
    Writing through it is an error (``flush`` refuses). ``options``: libpq options of a pool of
    its own whose connections start with those settings (kept in
    ``session.info["connection_options"]``), for statements that want planner settings no
    other statement should have, without setting them each time."""
    session = _session(options)
    session.info["connection_options"] = options
    try:
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session
        if session.new or session.dirty or session.deleted:
            raise RuntimeError("read_scope is for reads; write in session_scope.")
    finally:
        session.close()
