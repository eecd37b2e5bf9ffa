"""What a worker does besides tasks: announce itself, beat, reap dead jobs, say goodbye."""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime

from celery.signals import task_prerun, worker_ready, worker_shutdown, worker_shutting_down
from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert

from backend.config import get_settings
from backend.db import session_scope
from backend.jobs.context import WORKER_SHUTDOWN
from backend.jobs.reaper import reap_jobs_of_previous_worker, reap_stale_jobs
from backend.models.jobs import Worker

log = logging.getLogger(__name__)

_state: dict[str, object] = {}


def device_description() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            return "cuda: " + ", ".join(names)
    except Exception:  # noqa: BLE001 - torch missing or broken: report cpu
        pass
    return "cpu"


def gpu_stats() -> list[dict[str, object]]:
    """Memory and utilisation of each CUDA device, for the heartbeat (empty without CUDA)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return []
        stats: list[dict[str, object]] = []
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            try:
                util: float | None = float(torch.cuda.utilization(i))
            except Exception:  # noqa: BLE001 - needs NVML; memory is still worth reporting
                util = None
            stats.append({"index": i, "name": torch.cuda.get_device_name(i),
                          "memory_total_mb": total // 2**20,
                          "memory_used_mb": (total - free) // 2**20, "utilization": util})
        return stats
    except Exception:  # noqa: BLE001 - a broken driver must not stop the heartbeat
        log.debug("could not read GPU stats", exc_info=True)
        return []


def _announce(hostname: str, queues: list[str], concurrency: int) -> None:
    now = datetime.now(UTC)
    with session_scope() as session:
        stmt = insert(Worker).values(
            hostname=hostname, queues=queues, pid=os.getpid(), concurrency=concurrency,
            device=device_description(), gpus=gpu_stats(), started_at=now, last_seen=now,
        )
        session.execute(stmt.on_conflict_do_update(
            index_elements=[Worker.hostname],
            set_={"queues": queues, "pid": os.getpid(), "concurrency": concurrency,
                  "device": stmt.excluded.device, "gpus": stmt.excluded.gpus,
                  "started_at": now, "last_seen": now},
        ))
        n = reap_jobs_of_previous_worker(session, worker_host=hostname)
        if n:
            log.warning("marked %d job(s) of the previous %s interrupted", n, hostname)


def _beat(hostname: str, stop: threading.Event) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    settings = get_settings()
    failing = False
    while not stop.wait(settings.heartbeat_interval_s):
        try:
            with session_scope() as session:
                now = datetime.now(UTC)
                session.execute(update(Worker).where(Worker.hostname == hostname)
                                .values(last_seen=now, gpus=gpu_stats()))
                reap_stale_jobs(session, timeout_s=settings.heartbeat_timeout_s)
                # rows of workers gone for a day (killed ones never remove their own)
                session.execute(delete(Worker).where(Worker.last_seen < now - timedelta(days=1)))
            if failing:
                log.warning("worker heartbeat works again")
            failing = False
        except Exception as exc:  # noqa: BLE001 - next beat retries
            if not failing:
                log.warning("worker heartbeat failed (retrying): %s",
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            failing = True


def _reconcile(stop: threading.Event) -> None:
    """Every ``reconcile_interval_s``: queued jobs whose message Redis lost are sent again."""
    from backend.services.jobs import reconcile_queued_jobs

    settings = get_settings()
    while not stop.wait(settings.reconcile_interval_s):
        try:
            reconcile_queued_jobs()
        except Exception as exc:  # noqa: BLE001 - Postgres or Redis away: next round retries
            log.warning("reconciliation of queued jobs failed (retrying): %s",
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


@worker_ready.connect
def _on_ready(sender=None, **_: object) -> None:  # type: ignore[no-untyped-def]
    hostname = sender.hostname
    queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values())
    # the sender is the consumer; its controller (the WorkController) knows the pool size
    controller = getattr(sender, "controller", None)
    concurrency = int(getattr(controller, "concurrency", None) or 1)
    _announce(hostname, queues, concurrency)
    stop = threading.Event()
    threading.Thread(target=_beat, args=(hostname, stop), daemon=True,
                     name="worker-heartbeat").start()
    threading.Thread(target=_reconcile, args=(stop,), daemon=True,
                     name="worker-reconcile").start()
    _state.update(hostname=hostname, stop=stop)
    if "cpu" in queues and get_settings().inference_device != "cuda":
        # ingest jobs and knowledge searches embed here: the model loaded (and, on a bfloat16
        # CPU, the ONNX export for questions made) before the first one needs it
        from backend.knowledge.embedding import warm_up_in_background

        _state["warm_up"] = warm_up_in_background()
    log.info("worker %s ready on queues %s", hostname, ",".join(queues))


# how long a task waits for the embedder's warm-up (it takes seconds; the ONNX export, once per
# data folder, longer)
WARM_UP_WAIT_S = 120.0


@task_prerun.connect
def _after_warm_up(**_: object) -> None:
    """A task starts once the embedder's warm-up is over (at most ``WARM_UP_WAIT_S``):
    transformers resolves its classes lazily, and a task importing them while the warm-up thread
    does could get a half-imported module ("cannot import name 'AutoModelForCausalLM' from
    'transformers'", seen in a chat task on a worker just started)."""
    thread = _state.get("warm_up")
    if isinstance(thread, threading.Thread) and thread.is_alive():
        thread.join(WARM_UP_WAIT_S)


@worker_shutting_down.connect
def _on_shutting_down(**_: object) -> None:
    WORKER_SHUTDOWN.set()


@worker_shutdown.connect
def _on_shutdown(**_: object) -> None:
    stop = _state.get("stop")
    if isinstance(stop, threading.Event):
        stop.set()
    hostname = _state.get("hostname")
    if isinstance(hostname, str):
        try:
            with session_scope() as session:
                # only its own row: a name taken over by a newer worker stays
                session.execute(delete(Worker).where(Worker.hostname == hostname,
                                                     Worker.pid == os.getpid()))
        except Exception:  # noqa: BLE001
            log.exception("could not remove worker row %s", hostname)
