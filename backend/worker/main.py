"""Start a worker process: ``studio worker --queues cpu,gpu``."""

from __future__ import annotations

import logging
import os
import socket

from backend.config import get_settings


class WorkerNameTaken(RuntimeError):
    """Another live worker already uses this name."""


def default_worker_name(queues: list[str]) -> str:
    """Unique per process: two workers on one machine never share an identity."""
    return f"studio-{'-'.join(queues)}-{os.getpid()}@{socket.gethostname()}"


def check_name_free(nodename: str) -> None:
    """Claim ``nodename`` for this process, atomically: its row in the workers table is
    inserted, or taken over when the worker holding it is gone (its heartbeat is stale or, on
    this machine, its process has ended). Two workers started with the same name at the same
    moment cannot both pass: the second insert waits for the first and then finds a live
    holder. Raises ``WorkerNameTaken``; called before the worker consumes any job."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select
    from sqlalchemy.dialects.postgresql import insert

    from backend.db import session_scope
    from backend.jobs.reaper import process_alive
    from backend.models.jobs import Worker

    settings = get_settings()
    me = os.getpid()
    now = datetime.now(UTC)
    with session_scope() as session:
        claimed = session.execute(
            insert(Worker).values(hostname=nodename, queues=[], pid=me, started_at=now,
                                  last_seen=now)
            .on_conflict_do_nothing(index_elements=[Worker.hostname])
            .returning(Worker.hostname)).first()
        if claimed is not None:
            return
        # the name has a row: lock it (a racing claim waits here) and judge its holder
        row = session.execute(select(Worker).where(Worker.hostname == nodename)
                              .with_for_update()).scalar_one_or_none()
        if row is None:  # removed meanwhile (its worker stopped): claim it anew
            session.add(Worker(hostname=nodename, queues=[], pid=me, started_at=now,
                               last_seen=now))
            return
        if row.pid != me:
            fresh = row.last_seen >= now - timedelta(seconds=settings.heartbeat_timeout_s)
            same_machine = nodename.rsplit("@", 1)[-1] == socket.gethostname()
            if fresh and (not same_machine or process_alive(row.pid)):
                raise WorkerNameTaken(
                    f"A worker named {nodename} is already running (pid {row.pid}). "
                    "Give this one another --name, or leave --name out for a unique one.")
        # taken over: listed again only once this process announces its queues (and has
        # marked the jobs of the name's previous process interrupted)
        row.pid, row.last_seen, row.started_at, row.queues = me, now, now, []


def run_worker(queues: list[str], *, concurrency: int | None = None, name: str | None = None,
               loglevel: str | None = None) -> None:
    settings = get_settings()
    os.environ.setdefault("OMP_NUM_THREADS", str(settings.torch_threads))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    settings.ensure_dirs()
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    nodename = name or default_worker_name(queues)
    if "@" not in nodename:
        nodename = f"{nodename}@{socket.gethostname()}"
    check_name_free(nodename)
    from backend.jobs.kinds import load_all
    from backend.worker import lifecycle  # noqa: F401 - connects the worker signals
    from backend.worker.celery_app import get_celery

    load_all()
    try:
        import torch

        torch.set_num_threads(settings.torch_threads)
    except ImportError:
        pass
    app = get_celery()
    import backend.worker.tasks  # noqa: F401 - registers tasks

    app.worker_main([
        "worker",
        "--queues", ",".join(queues),
        "--pool", "threads",
        "--concurrency", str(concurrency or settings.worker_concurrency),
        "--hostname", nodename,
        "--loglevel", loglevel or settings.log_level,
        "--without-gossip", "--without-mingle",
    ])
