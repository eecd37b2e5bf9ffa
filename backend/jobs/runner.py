"""Run one job by id: claim its row, call its kind's function, record the outcome.

Idempotent: only a queued job is claimed, so a duplicate or late delivery does nothing. A retry is a
new job linked to the old one; its context's ``resume_dir`` is the old job's run folder.
"""

from __future__ import annotations

import logging
import os
import socket
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from backend.config import get_settings
from backend.db import session_scope
from backend.jobs.context import DbJobContext, JobCancelled, JobInterrupted
from backend.jobs.kinds import get_kind
from backend.models.jobs import Job, JobStatus

log = logging.getLogger(__name__)


# Fixed sentences the studio shows translated (see studio/components/jobs_widgets.py)
CANCELLED_MESSAGE = "Cancelled on request."
WORKER_STOPPED_MESSAGE = "The worker was stopped while this job ran. Retry it to resume."


class UserError(Exception):
    """An error whose message is meant for people (bad input, missing file): shown as is."""


@dataclass(frozen=True)
class RunOutcome:
    job_id: int
    status: str
    skipped: bool = False


def run_dir_for(job_id: int) -> Path:
    return get_settings().runs_dir / f"job-{job_id}"


def _claim(job_id: int, worker_host: str) -> tuple[Job, Path | None] | None:
    with session_scope() as session:
        job = session.execute(select(Job).where(Job.id == job_id).with_for_update()).scalar_one_or_none()
        if job is None:
            log.warning("job %s does not exist; skipping", job_id)
            return None
        if JobStatus(job.status) != JobStatus.queued:
            # finished, cancelled, already running, or interrupted (resumed by a retry, which is
            # a new job): a duplicate or late delivery does nothing
            return None
        resume_dir = run_dir_for(job.retry_of_id) if job.retry_of_id is not None else None
        job.status = JobStatus.running.value
        job.started_at = job.started_at or datetime.now(UTC)
        job.finished_at = None
        job.error = None
        job.error_detail = None
        job.worker_host = worker_host
        job.worker_pid = os.getpid()
        job.attempt = job.attempt + 1
        job.heartbeat_at = datetime.now(UTC)
        session.flush()
        session.expunge(job)
        return job, resume_dir


def _finish(job_id: int, status: JobStatus, **values: object) -> None:
    with session_scope() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            return
        job.status = status.value
        job.finished_at = datetime.now(UTC)
        for key, value in values.items():
            setattr(job, key, value)


def friendly_error(exc: BaseException) -> str:
    if isinstance(exc, UserError | ValueError | FileNotFoundError | PermissionError):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def run_job(job_id: int, *, worker_host: str | None = None) -> RunOutcome:
    """Run a job to its end. Never raises for the job's own errors: they land on the row."""
    settings = get_settings()
    host = worker_host or f"inline@{socket.gethostname()}"
    claimed = _claim(job_id, host)
    if claimed is None:
        return RunOutcome(job_id=job_id, status="skipped", skipped=True)
    job, resume_dir = claimed
    run_dir = run_dir_for(job.id)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        kind = get_kind(job.kind)
    except KeyError as exc:
        _finish(job.id, JobStatus.failed, error=str(exc))
        return RunOutcome(job_id=job.id, status=JobStatus.failed.value)

    ctx = DbJobContext(
        job.id,
        session_factory=_raw_session,
        run_dir=run_dir,
        resume_dir=resume_dir,
        heartbeat_interval_s=settings.heartbeat_interval_s,
    )
    try:
        with ctx:
            result = kind.fn(ctx, dict(job.params or {}))
    except JobCancelled:
        ctx.log("Cancelled on request", level="WARNING")
        _finish(job.id, JobStatus.cancelled, error=CANCELLED_MESSAGE)
        return RunOutcome(job_id=job.id, status=JobStatus.cancelled.value)
    except JobInterrupted:
        ctx.log("The worker is shutting down; stopping here", level="WARNING")
        _finish(job.id, JobStatus.interrupted, error=WORKER_STOPPED_MESSAGE)
        return RunOutcome(job_id=job.id, status=JobStatus.interrupted.value)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the row
        log.exception("job %s (%s) failed", job.id, job.kind)
        try:
            ctx.log(friendly_error(exc), level="ERROR")
        except Exception:  # noqa: BLE001
            log.exception("could not write the failure log line of job %s", job.id)
        _finish(job.id, JobStatus.failed, error=friendly_error(exc),
                error_detail=traceback.format_exc())
        return RunOutcome(job_id=job.id, status=JobStatus.failed.value)
    _finish(job.id, JobStatus.succeeded, progress=1.0, result=result or {})
    return RunOutcome(job_id=job.id, status=JobStatus.succeeded.value)


def _raw_session():  # type: ignore[no-untyped-def]
    """A plain session (caller commits) for the job context's frequent small writes."""
    from sqlalchemy.orm import Session

    from backend.db import get_engine

    return Session(get_engine(), expire_on_commit=False)
