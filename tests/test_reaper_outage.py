"""After a Postgres stop longer than the heartbeat timeout, every running job's heartbeat looks
old though no worker stopped: the reaper waits until the database has been up for the timeout
before it calls a worker dead (issue 23 item 14). Real Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from backend.accounts.actor import Actor
from backend.db import session_scope
from backend.jobs.reaper import reap_stale_jobs
from backend.models.jobs import Job, JobStatus
from backend.services import jobs as jobs_service

SYSTEM = Actor.system()


def _running_job(heartbeat_at: datetime) -> int:
    job = jobs_service.submit_job(actor=SYSTEM, kind="demo", enqueue=False)
    with session_scope() as session:
        row = session.get(Job, job.id)
        assert row is not None
        row.status, row.heartbeat_at = JobStatus.running.value, heartbeat_at
        row.worker_host, row.worker_pid = "elsewhere@far-away", 1
    return job.id


def _status(job_id: int) -> str:
    with session_scope() as session:  # (not get_job: it reaps with the configured timeout)
        return str(session.execute(select(Job.status).where(Job.id == job_id)).scalar_one())


def test_heartbeats_missed_while_the_database_was_down_do_not_reap() -> None:
    with session_scope() as session:
        up_since = session.execute(select(func.pg_postmaster_start_time())).scalar_one()
    job_id = _running_job(up_since - timedelta(seconds=120))  # silent since before the start
    up_for = (datetime.now(UTC) - up_since).total_seconds()
    # a timeout longer than the database has been up: the missed beats prove nothing
    with session_scope() as session:
        reap_stale_jobs(session, timeout_s=up_for + 30)
    assert _status(job_id) == "running"
    # the database up for longer than the timeout and still no beat: the worker is gone
    with session_scope() as session:
        reap_stale_jobs(session, timeout_s=max(0.5, up_for - 1))
    assert _status(job_id) == "interrupted"
