"""Finds jobs whose worker died (no heartbeat) and marks them interrupted, never running forever."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, update
from sqlalchemy.orm import Session

from backend.models.jobs import Job, JobStatus

INTERRUPTED_MESSAGE = (
    "The worker running this job stopped without finishing it ({why}). "
    "Retry the job to resume it from its last checkpoint."
)


def reap_stale_jobs(session: Session, *, timeout_s: float) -> int:
    """Running jobs whose heartbeat is older than ``timeout_s`` become interrupted."""
    cutoff = datetime.now(UTC) - timedelta(seconds=timeout_s)
    stale = and_(
        Job.status == JobStatus.running.value,
        or_(Job.heartbeat_at < cutoff, and_(Job.heartbeat_at.is_(None), Job.updated_at < cutoff)),
    )
    res = session.execute(
        update(Job)
        .where(stale)
        .values(
            status=JobStatus.interrupted.value,
            finished_at=datetime.now(UTC),
            error=INTERRUPTED_MESSAGE.format(why=f"no heartbeat for {timeout_s:g} s"),
        )
    )
    return res.rowcount or 0  # type: ignore[attr-defined]


def reap_jobs_of_previous_worker(session: Session, *, worker_host: str) -> int:
    """On worker start: jobs this worker name was running in an earlier life are interrupted."""
    res = session.execute(
        update(Job)
        .where(
            Job.status == JobStatus.running.value,
            Job.worker_host == worker_host,
            Job.worker_pid != os.getpid(),
        )
        .values(
            status=JobStatus.interrupted.value,
            finished_at=datetime.now(UTC),
            error=INTERRUPTED_MESSAGE.format(why=f"worker {worker_host} restarted"),
        )
    )
    return res.rowcount or 0  # type: ignore[attr-defined]
