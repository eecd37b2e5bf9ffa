"""Start a worker process: ``studio worker --queues cpu,gpu``."""

from __future__ import annotations

import logging
import os
import socket

from backend.config import get_settings


def run_worker(queues: list[str], *, concurrency: int | None = None, name: str | None = None,
               loglevel: str | None = None) -> None:
    settings = get_settings()
    os.environ.setdefault("OMP_NUM_THREADS", str(settings.torch_threads))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    settings.ensure_dirs()
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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

    nodename = name or f"studio-{'-'.join(queues)}@{socket.gethostname()}"
    app.worker_main([
        "worker",
        "--queues", ",".join(queues),
        "--pool", "threads",
        "--concurrency", str(concurrency or settings.worker_concurrency),
        "--hostname", nodename,
        "--loglevel", loglevel or settings.log_level,
        "--without-gossip", "--without-mingle",
    ])
