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
    """Refuse a name a live worker holds: its heartbeat is fresh and, on this machine, its
    process exists. (A dead one's name may be reused; its jobs are then marked interrupted.)"""
    from datetime import UTC, datetime, timedelta

    from backend.db import session_scope
    from backend.jobs.reaper import process_alive
    from backend.models.jobs import Worker

    settings = get_settings()
    with session_scope() as session:
        row = session.get(Worker, nodename)
        if row is None or row.pid == os.getpid():
            return
        fresh = row.last_seen >= datetime.now(UTC) - timedelta(seconds=settings.heartbeat_timeout_s)
        same_machine = nodename.rsplit("@", 1)[-1] == socket.gethostname()
        if fresh and (not same_machine or process_alive(row.pid)):
            raise WorkerNameTaken(
                f"A worker named {nodename} is already running (pid {row.pid}). "
                "Give this one another --name, or leave --name out for a unique one.")


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
