"""The small interface long-running code reports through: progress, metric, log, cancel.

Training and indexing functions take a ``JobContext``. A job (``DbJobContext``), a test or the
CLI (``LocalContext``) can each supply one, so the same code runs with or without Celery.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import insert, update

from backend.jobs.outage import DatabaseUnreachable, retry_unreachable

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised by ``check_cancelled`` when somebody asked the job to stop."""


class JobInterrupted(Exception):
    """Raised by ``check_cancelled`` when the worker itself is shutting down."""


class JobLost(Exception):
    """Raised by ``check_cancelled`` when the job's row is no longer this runner's (it was
    marked interrupted elsewhere, e.g. after a long database outage): stop, write nothing."""


class JobContext(Protocol):
    job_id: int | None
    run_dir: Path
    resume_dir: Path | None

    def progress(self, fraction: float, stage: str | None = None, **stage_args: Any) -> None:
        """``stage`` is a sentence template such as ``"epoch {epoch}/{epochs}"`` with its values
        in ``stage_args``: people see it translated, the CLI in English."""
        ...
    def metric(self, name: str, value: float, step: int) -> None: ...
    def log(self, message: str, level: str = "INFO") -> None: ...
    def check_cancelled(self) -> None: ...
    def should_stop(self) -> bool: ...


@dataclass
class LocalContext:
    """A context for tests and the CLI: keeps everything in memory, prints nothing by default."""

    run_dir: Path
    resume_dir: Path | None = None
    job_id: int | None = None
    on_progress: Callable[[float, str | None], None] | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    progress_value: float = 0.0
    stage: str = ""
    metrics: list[tuple[str, int, float]] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    def progress(self, fraction: float, stage: str | None = None, **stage_args: Any) -> None:
        self.progress_value = max(0.0, min(1.0, float(fraction)))
        if stage is not None:
            self.stage = render_stage(stage, stage_args)
        if self.on_progress:
            self.on_progress(self.progress_value, stage)

    def metric(self, name: str, value: float, step: int) -> None:
        self.metrics.append((name, int(step), float(value)))

    def log(self, message: str, level: str = "INFO") -> None:
        self.logs.append(message)
        log.log(logging.getLevelName(level), message)

    def should_stop(self) -> bool:
        return self.cancel_event.is_set()

    def check_cancelled(self) -> None:
        if self.should_stop():
            raise JobCancelled()


def render_stage(template: str, args: dict[str, Any]) -> str:
    """The stage in English: the template filled with its values."""
    if not args:
        return template
    try:
        return template.format(**args)
    except (KeyError, IndexError, ValueError):
        return template


# Set by the worker when it starts shutting down: running jobs stop at their next check.
WORKER_SHUTDOWN = threading.Event()


class DbJobContext:
    """A context that writes to the job's row. A background thread beats the heartbeat and
    picks up cancel requests, so ``check_cancelled`` costs nothing in a hot loop."""

    METRIC_FLUSH_S = 1.0
    PROGRESS_MIN_INTERVAL_S = 0.25

    def __init__(
        self,
        job_id: int,
        *,
        session_factory: Callable[[], Any],
        run_dir: Path,
        resume_dir: Path | None,
        heartbeat_interval_s: float,
        owner: tuple[str, int] | None = None,
        db_retry_s: float = 60.0,
    ) -> None:
        self.job_id: int | None = job_id
        self.run_dir = run_dir
        self.resume_dir = resume_dir
        self._session_factory = session_factory
        self._interval = heartbeat_interval_s
        # (worker_host, worker_pid) that claimed the row: writes only touch the row while it is
        # running under this owner, so a row that reached a final state elsewhere stays so
        self._owner = owner
        self._db_retry_s = db_retry_s
        self._cancelled = threading.Event()
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._metrics: list[dict[str, Any]] = []
        self._last_metric_flush = time.monotonic()
        self._last_progress = 0.0
        self._thread = threading.Thread(target=self._beat, name=f"job-{job_id}-heartbeat",
                                        daemon=True)

    # lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> DbJobContext:
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.flush()
        except Exception:
            if exc_type is None:
                raise
            log.exception("could not write the last metrics of job %s", self.job_id)

    def _mine(self, stmt: Any) -> Any:
        """``stmt`` restricted to this job's row while it runs under this runner."""
        from backend.models.jobs import Job, JobStatus

        stmt = stmt.where(Job.id == self.job_id, Job.status == JobStatus.running.value)
        if self._owner is not None:
            stmt = stmt.where(Job.worker_host == self._owner[0], Job.worker_pid == self._owner[1])
        return stmt

    def _write(self, fn: Callable[[Any], Any], what: str) -> Any:
        """Run ``fn(session)`` and commit, riding out a short database outage."""
        def attempt() -> Any:
            with self._session_factory() as session:
                out = fn(session)
                session.commit()
                return out

        return retry_unreachable(attempt, budget_s=self._db_retry_s, what=what,
                                 give_up=WORKER_SHUTDOWN.is_set)

    def _beat(self) -> None:
        from backend.models.jobs import Job

        while not self._stop.wait(self._interval):
            try:
                with self._session_factory() as session:
                    row = session.execute(
                        self._mine(update(Job))
                        .values(heartbeat_at=_now_sql())
                        .returning(Job.cancel_requested)
                    ).first()
                    session.commit()
                if row is None:
                    self._lost.set()
                elif row[0]:
                    self._cancelled.set()
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried next interval
                log.warning("heartbeat for job %s failed: %s", self.job_id,
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    # reporting -----------------------------------------------------------------------------
    def progress(self, fraction: float, stage: str | None = None, **stage_args: Any) -> None:
        from backend.models.jobs import Job

        now = time.monotonic()
        fraction = max(0.0, min(1.0, float(fraction)))
        if stage is None and fraction < 1.0 and now - self._last_progress < self.PROGRESS_MIN_INTERVAL_S:
            return
        self._last_progress = now
        values: dict[str, Any] = {"progress": fraction}
        if stage is not None:
            values["stage"] = render_stage(stage, stage_args)[:200]
            values["stage_template"] = stage[:200]
            values["stage_args"] = stage_args or None
        updated = self._write(
            lambda session: session.execute(
                self._mine(update(Job)).values(**values).returning(Job.id)).first() is not None,
            "progress")
        if not updated:
            self._lost.set()

    def metric(self, name: str, value: float, step: int) -> None:
        with self._lock:
            self._metrics.append(
                {"job_id": self.job_id, "name": name[:100], "value": float(value), "step": int(step)}
            )
        if time.monotonic() - self._last_metric_flush >= self.METRIC_FLUSH_S:
            self.flush()

    def flush(self) -> None:
        from backend.models.jobs import JobMetric

        with self._lock:
            rows, self._metrics = self._metrics, []
            self._last_metric_flush = time.monotonic()
        if rows:
            try:
                self._write(lambda session: session.execute(insert(JobMetric), rows), "metrics")
            except DatabaseUnreachable:
                with self._lock:  # keep them for the next flush
                    self._metrics = rows + self._metrics
                raise

    def log(self, message: str, level: str = "INFO") -> None:
        from backend.models.jobs import JobLog

        log.log(logging.getLevelName(level), "job %s: %s", self.job_id, message)
        self._write(lambda session: session.add(
            JobLog(job_id=self.job_id, level=level, message=message[:10000])), "log")

    def should_stop(self) -> bool:
        return self._cancelled.is_set() or self._lost.is_set() or WORKER_SHUTDOWN.is_set()

    def check_cancelled(self) -> None:
        if self._lost.is_set():
            raise JobLost()
        if WORKER_SHUTDOWN.is_set():
            raise JobInterrupted()
        if self._cancelled.is_set():
            raise JobCancelled()


def _now_sql() -> Any:
    from sqlalchemy import func

    return func.now()
