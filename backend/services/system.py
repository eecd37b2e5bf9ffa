"""Health and maintenance: doctor report, schema upgrade/downgrade, dump and restore."""

from __future__ import annotations

import contextlib
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text

from backend import migrate
from backend.accounts.actor import Actor, Role
from backend.config import get_settings
from backend.embedded import embedded_postgres_bin, ensure_services, redis_py_url


@dataclass
class DoctorReport:
    python: str
    platform: str
    torch: str | None
    cuda: bool
    gpus: list[str]
    postgres: str | None
    pgvector: str | None
    schema_revision: str | None
    schema_head: str | None
    redis: str | None
    workers: list[dict[str, Any]]
    embedded_postgres: bool
    embedded_redis: bool
    data_dir: str
    problems: list[str] = field(default_factory=list)
    # what doctor did itself: an embedded or empty database is brought to the schema
    schema_action: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def doctor() -> DoctorReport:
    settings = get_settings()
    problems: list[str] = []
    torch_version: str | None = None
    cuda = False
    gpus: list[str] = []
    try:
        import torch

        torch_version = torch.__version__
        cuda = torch.cuda.is_available()
        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    except ImportError:
        problems.append("torch is not installed: run `make install`.")
    urls = ensure_services(settings)
    pg_version = vector_version = revision = schema_action = None
    try:
        from backend.db import get_engine

        # like every other command: an embedded or empty database gets the schema; a shared
        # outdated one is only reported (its owner upgrades it)
        with contextlib.suppress(SchemaOutdated):
            schema_action = ensure_schema()

        with get_engine().connect() as conn:
            pg_version = conn.execute(text("SHOW server_version")).scalar_one()
            vector_version = conn.execute(
                text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            ).scalar_one_or_none()
        revision = migrate.current_revision(urls.database_url)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        problems.append(f"Postgres is not reachable: {exc}")
    head = migrate.head_revision()
    if pg_version and revision != head:
        problems.append(f"Schema is at {revision}, code expects {head}: run `studio db upgrade`.")
    if pg_version and vector_version is None:
        problems.append("The pgvector extension is missing: run `studio db upgrade`.")
    redis_version = None
    try:
        import redis

        client = redis.Redis.from_url(redis_py_url(urls.redis_url), socket_timeout=3)
        redis_version = str(client.info("server").get("redis_version"))
    except Exception as exc:  # noqa: BLE001
        problems.append(f"Redis is not reachable: {exc}")
    workers: list[dict[str, Any]] = []
    if revision is not None:
        from backend.services.jobs import list_workers

        workers = [
            {"hostname": w.hostname, "queues": w.queues, "device": w.device,
             "concurrency": w.concurrency, "last_seen": w.last_seen.isoformat()}
            for w in list_workers(actor=Actor.system())
        ]
    return DoctorReport(
        python=sys.version.split()[0], platform=platform.platform(), torch=torch_version,
        cuda=cuda, gpus=gpus, postgres=pg_version, pgvector=vector_version,
        schema_revision=revision, schema_head=head, redis=redis_version, workers=workers,
        embedded_postgres=urls.embedded_postgres, embedded_redis=urls.embedded_redis,
        data_dir=str(settings.data_dir), problems=problems, schema_action=schema_action,
    )


class SchemaOutdated(RuntimeError):
    """The database's schema is older than the code and is not ours to upgrade silently."""


def ensure_schema() -> str | None:
    """Bring an empty or embedded database to the code's schema; refuse to run on an outdated
    shared one (its owner upgrades it with ``studio db upgrade``). Returns what was done."""
    urls = ensure_services(get_settings())
    current, head = migrate.current_revision(urls.database_url), migrate.quick_head_revision()
    if current == head:
        return None
    if current is None or urls.embedded_postgres:
        migrate.upgrade("head", url=urls.database_url)
        return f"upgraded the schema from {current or 'empty'} to {head}"
    raise SchemaOutdated(
        f"The database schema is at {current} but this code needs {head}. "
        "Run `studio db upgrade` (back it up first with `studio db dump > backup.sql`)."
    )


def upgrade_schema(revision: str = "head") -> str | None:
    url = ensure_services(get_settings()).database_url
    migrate.upgrade(revision, url=url)
    return migrate.current_revision(url)


def downgrade_schema(revision: str) -> str | None:
    url = ensure_services(get_settings()).database_url
    migrate.downgrade(revision, url=url)
    return migrate.current_revision(url)


def _libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _major(version_text: str) -> int:
    import re

    m = re.search(r"(\d+)(?:\.\d+)?", version_text)
    return int(m.group(1)) if m else 0


def _pg_tool(name: str) -> str:
    """The embedded Postgres's own tool, or one on PATH when the server is newer than it."""
    from backend.db import get_engine

    with get_engine().connect() as conn:
        server = _major(conn.execute(text("SHOW server_version")).scalar_one())
    candidates = [str(embedded_postgres_bin(name))]
    found = shutil.which(name)
    if found:
        candidates.append(found)
    for tool in candidates:
        try:
            out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=10)
        except OSError:
            continue
        if _major(out.stdout.partition(")")[2]) >= server:
            return tool
    raise RuntimeError(f"No {name} of version {server} or newer found: install the Postgres "
                       f"{server} client tools.")


def dump_database(*, actor: Actor, out: Any) -> None:
    """Plain SQL dump (schema and data) written to the binary stream ``out``."""
    actor.require_role(Role.admin, "dump the database")
    url = _libpq_url(ensure_services(get_settings()).database_url)
    proc = subprocess.run(
        [_pg_tool("pg_dump"), "--clean", "--if-exists", "--no-owner", "--no-privileges", url],
        stdout=out, stderr=subprocess.PIPE, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pg_dump failed: {proc.stderr.decode(errors='replace').strip()}")


def restore_database(*, actor: Actor, path: Path) -> None:
    """Load a dump made by ``dump_database``, all or nothing (one transaction)."""
    actor.require_role(Role.admin, "restore the database")
    if not path.is_file():
        raise FileNotFoundError(f"No dump file at {path}.")
    url = _libpq_url(ensure_services(get_settings()).database_url)
    proc = subprocess.run(
        [_pg_tool("psql"), "--quiet", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "--single-transaction",
         "-f", str(path), url],
        capture_output=True, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"Restore failed and nothing was changed: {proc.stderr.decode(errors='replace').strip()}"
        )
    from backend.db import dispose_engines

    dispose_engines()
