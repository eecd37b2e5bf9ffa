"""Finds jobs whose worker died (no heartbeat) and marks them interrupted, never running forever."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, update
from sqlalchemy.orm import Session

from backend.models.jobs import Job, JobLog, JobStatus

INTERRUPTED_MESSAGE = (
    "The worker running this job stopped without finishing it. "
    "Retry the job to resume it from its last checkpoint."
)


def _interrupt(session: Session, *conditions: Any, why: str) -> int:
    """Running jobs matching ``conditions`` become interrupted; their log says why."""
    ids = list(session.execute(
        update(Job)
        .where(Job.status == JobStatus.running.value, *conditions)
        .values(status=JobStatus.interrupted.value, finished_at=datetime.now(UTC),
                error=INTERRUPTED_MESSAGE)
        .returning(Job.id)
    ).scalars())
    for job_id in ids:
        session.add(JobLog(job_id=job_id, level="WARNING", message=f"Marked interrupted: {why}."))
    return len(ids)


def reap_stale_jobs(session: Session, *, timeout_s: float) -> int:
    """Running jobs whose heartbeat is older than ``timeout_s`` become interrupted."""
    cutoff = datetime.now(UTC) - timedelta(seconds=timeout_s)
    silent = or_(Job.heartbeat_at < cutoff, and_(Job.heartbeat_at.is_(None), Job.updated_at < cutoff))
    return _interrupt(session, silent, why=f"no heartbeat from its worker for {timeout_s:g} s")


def reap_jobs_of_previous_worker(session: Session, *, worker_host: str) -> int:
    """On worker start: jobs this worker name was running in an earlier life are interrupted."""
    return _interrupt(session, Job.worker_host == worker_host, Job.worker_pid != os.getpid(),
                      why=f"its worker {worker_host} restarted")
