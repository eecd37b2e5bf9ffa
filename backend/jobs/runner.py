"""Run one job by id: claim its row, call its kind's function, record the outcome.

Idempotent: only a queued job is claimed, so a duplicate or late delivery does nothing. A retry is a
new job linked to the old one; its context's ``resume_dir`` is the newest run folder along the
chain of retries (a retry that was cancelled before it ran has none).

A job row never leaves a final state: every write after the claim is guarded by "still running,
under this runner", so a row marked interrupted or cancelled elsewhere stays so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from backend.config import get_settings
from backend.db import session_scope
from backend.jobs.context import (
    WORKER_SHUTDOWN,
    DbJobContext,
    JobCancelled,
    JobInterrupted,
    JobLost,
)
from backend.jobs.kinds import get_kind
from backend.jobs.outage import (
    DB_UNREACHABLE_MESSAGE,
    DatabaseUnreachable,
    is_unreachable,
    retry_unreachable,
)
from backend.models.jobs import Job, JobStatus

log = logging.getLogger(__name__)


# Fixed sentences the studio shows translated (see studio/components/jobs_widgets.py)
CANCELLED_MESSAGE = "Cancelled on request."
WORKER_STOPPED_MESSAGE = "The worker was stopped while this job ran. Retry it to resume."

# The final status write waits longer for the database than the job's own writes do: losing it
# leaves the row running until the reaper notices.
FINAL_WRITE_FACTOR = 5


class UserError(Exception):
    """An error whose message is meant for people (bad input, missing file): shown as is."""


@dataclass(frozen=True)
class RunOutcome:
    job_id: int
    status: str
    skipped: bool = False


def run_dir_for(job_id: int) -> Path:
    return get_settings().runs_dir / f"job-{job_id}"


def resume_dir_for(session: Session, retry_of_id: int | None) -> Path | None:
    """The newest run folder with something in it along the chain of retries: a retry of a
    retry that was cancelled before it ran resumes from the job before it."""
    seen: set[int] = set()
    current = retry_of_id
    while current is not None and current not in seen and len(seen) < 1000:
        seen.add(current)
        folder = run_dir_for(current)
        if folder.is_dir() and any(folder.iterdir()):
            return folder
        current = session.execute(select(Job.retry_of_id).where(Job.id == current)).scalar()
    return None


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
        resume_dir = resume_dir_for(session, job.retry_of_id)
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


def _finish(job_id: int, status: JobStatus, owner: tuple[str, int], **values: Any) -> bool:
    """Record the outcome, only if the row still runs under ``owner``. Rides out a database
    outage (longer than the job's own writes do). False: the row had ended elsewhere."""
    settings = get_settings()
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.running.value,
               Job.worker_host == owner[0], Job.worker_pid == owner[1])
        .values(status=status.value, finished_at=datetime.now(UTC), **values)
        .returning(Job.id)
    )

    def write() -> bool:
        with session_scope() as session:
            return session.execute(stmt).first() is not None

    try:
        done = retry_unreachable(write, budget_s=settings.db_retry_s * FINAL_WRITE_FACTOR,
                                 what=f"recording job {job_id} {status.value}")
    except DatabaseUnreachable:
        log.error("could not record job %s as %s: the database stayed unreachable", job_id,
                  status.value)
        return False
    if not done:
        log.warning("job %s had already ended elsewhere; its %s outcome is not recorded",
                    job_id, status.value)
    return done


# Shown instead of a database error's own text (its SQL, parameters, driver names): the
# details are in the worker's log and, for admins, in the job's traceback
DATABASE_ERROR_MESSAGE = ("The database refused to store this job's data ({reason}). The "
                          "worker's log has the details; retry the job, and report it if it "
                          "fails again.")

# an absolute server path (two or more parts): shown by its last part only
_SERVER_PATH = re.compile(r"(?<![\w:/])(?:/[\w.@+-]+){2,}/?")


def _plain(text: str) -> str:
    """``text`` with server paths cut to their file names."""
    return _SERVER_PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], text)


def friendly_error(exc: BaseException) -> str:
    """The job's error as people see it: plain words, no SQL, no server paths."""
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(exc, SQLAlchemyError):
        orig = getattr(exc, "orig", None)
        reason = type(orig or exc).__name__
        reason = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", reason).lower()
        return DATABASE_ERROR_MESSAGE.format(reason=reason)
    if isinstance(exc, UserError | ValueError | FileNotFoundError | PermissionError):
        return _plain(str(exc)) or type(exc).__name__
    return f"{type(exc).__name__}: {_plain(str(exc))}" if str(exc) else type(exc).__name__


def run_job(job_id: int, *, worker_host: str | None = None) -> RunOutcome:
    """Run a job to its end. Never raises for the job's own errors: they land on the row.

    Raises ``DatabaseUnreachable`` when the job could not even be claimed (the caller puts the
    message back in the queue)."""
    settings = get_settings()
    host = worker_host or f"inline@{socket.gethostname()}"
    owner = (host, os.getpid())
    claimed = retry_unreachable(lambda: _claim(job_id, host), budget_s=settings.db_retry_s,
                                what=f"claiming job {job_id}", give_up=WORKER_SHUTDOWN.is_set)
    if claimed is None:
        return RunOutcome(job_id=job_id, status="skipped", skipped=True)
    job, resume_dir = claimed
    run_dir = run_dir_for(job.id)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        kind = get_kind(job.kind)
    except KeyError as exc:
        _finish(job.id, JobStatus.failed, owner, error=str(exc))
        return RunOutcome(job_id=job.id, status=JobStatus.failed.value)

    ctx = DbJobContext(
        job.id,
        session_factory=_raw_session,
        run_dir=run_dir,
        resume_dir=resume_dir,
        heartbeat_interval_s=settings.heartbeat_interval_s,
        owner=owner,
        db_retry_s=settings.db_retry_s,
    )

    def note(message: str, level: str) -> None:
        with contextlib.suppress(Exception):  # the outcome matters more than its log line
            ctx.log(message, level=level)

    def end(status: JobStatus, **values: Any) -> RunOutcome:
        recorded = _finish(job.id, status, owner, **values)
        return RunOutcome(job_id=job.id, status=status.value if recorded else "lost")

    try:
        with ctx:
            result = kind.fn(ctx, dict(job.params or {}))
    except JobLost:
        log.warning("job %s ended elsewhere while it ran here; stopped", job.id)
        return RunOutcome(job_id=job.id, status="lost")
    except JobCancelled:
        note("Cancelled on request", "WARNING")
        return end(JobStatus.cancelled, error=CANCELLED_MESSAGE)
    except JobInterrupted:
        note("The worker is shutting down; stopping here", "WARNING")
        return end(JobStatus.interrupted, error=WORKER_STOPPED_MESSAGE)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the row
        if isinstance(exc, DatabaseUnreachable) or is_unreachable(exc):
            log.error("job %s stops: the database is unreachable (%s)", job.id, exc)
            note("The database was unreachable; stopping here", "ERROR")
            return end(JobStatus.interrupted, error=DB_UNREACHABLE_MESSAGE)
        log.exception("job %s (%s) failed", job.id, job.kind)
        note(friendly_error(exc), "ERROR")
        return end(JobStatus.failed, error=friendly_error(exc),
                   error_detail=traceback.format_exc())
    return end(JobStatus.succeeded, progress=1.0, result=result or {})


def _raw_session():  # type: ignore[no-untyped-def]
    """A plain session (caller commits) for the job context's frequent small writes."""
    from backend.db import get_engine

    return Session(get_engine(), expire_on_commit=False)
