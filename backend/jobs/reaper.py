"""Finds jobs whose worker died (no heartbeat) and marks them interrupted, never running forever.

A worker is dead only when its heartbeat says so (or, on the same machine, when its process is
gone): a second worker starting never touches the jobs of a live one.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
from sqlalchemy import and_, func, or_, select, update
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
    """Running jobs whose heartbeat is older than ``timeout_s`` become interrupted.

    Only once the database itself has been up for ``timeout_s``: while Postgres was stopped no
    heartbeat could be written, so right after it starts again every heartbeat looks old though
    no worker stopped. Those jobs' own runners say what happened (they go on, or end "The
    database was unreachable ...")."""
    cutoff = datetime.now(UTC) - timedelta(seconds=timeout_s)
    silent = or_(Job.heartbeat_at < cutoff, and_(Job.heartbeat_at.is_(None), Job.updated_at < cutoff))
    database_up = func.pg_postmaster_start_time() < cutoff
    return _interrupt(session, silent, database_up,
                      why=f"no heartbeat from its worker for {timeout_s:g} s")


def process_alive(pid: int | None) -> bool:
    """Is this pid a live process on this machine (a zombie is not)?"""
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _machine(worker_host: str) -> str:
    return worker_host.rsplit("@", 1)[-1]


def reap_jobs_of_previous_worker(session: Session, *, worker_host: str) -> int:
    """On worker start: jobs an earlier process of this worker name was running, when that
    process is gone (checked on this machine; elsewhere the heartbeat timeout decides)."""
    if _machine(worker_host) != socket.gethostname():
        return 0
    rows = session.execute(
        select(Job.id, Job.worker_pid).where(Job.status == JobStatus.running.value,
                                             Job.worker_host == worker_host)
    ).all()
    dead = [job_id for job_id, pid in rows if pid != os.getpid() and not process_alive(pid)]
    if not dead:
        return 0
    return _interrupt(session, Job.id.in_(dead), why=f"its worker {worker_host} restarted")
