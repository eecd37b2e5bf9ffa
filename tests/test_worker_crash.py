"""Cancel of a queued job, and a worker killed with SIGKILL mid-job: the job ends interrupted and
a retry resumes from its checkpoint. Workers here are started and killed by the tests."""

from __future__ import annotations

import signal
import time

from backend.accounts.actor import Actor
from backend.services import jobs as jobs_service

ADMIN = Actor.system()


def _wait_status(job_id: int, status: str, timeout_s: float) -> jobs_service.JobView:
    deadline = time.monotonic() + timeout_s
    while True:
        view = jobs_service.get_job(actor=ADMIN, job_id=job_id)
        if view.status == status or time.monotonic() > deadline:
            return view
        time.sleep(0.1)


def test_cancelled_queued_job_never_runs(worker_factory) -> None:
    job = jobs_service.submit_job(actor=ADMIN, kind="demo", params={"steps": 2, "step_seconds": 0.01})
    assert job.status == "queued"  # no worker is alive: it waits in Redis
    cancelled = jobs_service.cancel_job(actor=ADMIN, job_id=job.id)
    assert cancelled.status == "cancelled"
    worker_factory("late-worker")
    # a job submitted after the cancelled one runs; by then the cancelled message was consumed
    later = jobs_service.submit_job(actor=ADMIN, kind="demo", params={"steps": 1, "step_seconds": 0})
    assert jobs_service.wait_for_job(actor=ADMIN, job_id=later.id, timeout_s=60).status == "succeeded"
    after = jobs_service.get_job(actor=ADMIN, job_id=job.id)
    assert after.status == "cancelled" and after.started_at is None


def test_sigkill_mid_job_marks_interrupted_and_retry_resumes(worker_factory) -> None:
    w = worker_factory("doomed-worker")
    job = jobs_service.submit_job(actor=ADMIN, kind="demo", params={"steps": 60, "step_seconds": 0.1})
    view = _wait_status(job.id, "running", 30)
    assert view.status == "running"
    while jobs_service.get_job(actor=ADMIN, job_id=job.id).progress < 0.1:
        time.sleep(0.1)
    w.kill(signal.SIGKILL)
    # the heartbeat stops; the reaper (run by readers and by live workers) marks it interrupted
    view = _wait_status(job.id, "interrupted", 30)
    assert view.status == "interrupted", view
    assert "stopped without finishing" in (view.error or "")
    why = [line.message for line in jobs_service.job_log_tail(actor=ADMIN, job_id=job.id)]
    assert "Marked interrupted: no heartbeat from its worker for 4 s." in why
    done_steps = int(view.progress * 60)
    assert 0 < done_steps < 60

    worker_factory("rescue-worker")
    again = jobs_service.retry_job(actor=ADMIN, job_id=job.id)
    final = jobs_service.wait_for_job(actor=ADMIN, job_id=again.id, timeout_s=90)
    assert final.status == "succeeded", final.error
    assert final.result is not None
    assert final.result["resumed_from"] >= done_steps - 1 > 0


def test_sigterm_stops_worker_promptly_and_marks_its_job_interrupted(worker_factory) -> None:
    w = worker_factory("stopping-worker")
    job = jobs_service.submit_job(actor=ADMIN, kind="demo", params={"steps": 600, "step_seconds": 0.1})
    assert _wait_status(job.id, "running", 30).status == "running"
    started = time.monotonic()
    w.kill(signal.SIGTERM)  # warm shutdown: the job stops at its next check
    assert time.monotonic() - started < 15
    view = jobs_service.get_job(actor=ADMIN, job_id=job.id)
    assert view.status == "interrupted"
    assert view.error == "The worker was stopped while this job ran. Retry it to resume."


def test_restarted_worker_marks_its_previous_lifes_job_interrupted(studio_env, worker_factory) -> None:
    from tests.conftest import start_worker

    w = worker_factory("phoenix")
    job = jobs_service.submit_job(actor=ADMIN, kind="demo", params={"steps": 600, "step_seconds": 0.1})
    assert _wait_status(job.id, "running", 30).status == "running"
    w.kill(signal.SIGKILL)
    # the same worker comes back at once; a long heartbeat timeout keeps its reaper out of it,
    # so only the start-up check can mark the job (and nothing here reads jobs meanwhile)
    again = start_worker(dict(studio_env, STUDIO_HEARTBEAT_TIMEOUT_S="600"), "phoenix")
    try:
        view = jobs_service.get_job(actor=ADMIN, job_id=job.id)
        assert view.status == "interrupted"
        log = [line.message for line in jobs_service.job_log_tail(actor=ADMIN, job_id=job.id)]
        assert f"Marked interrupted: its worker {again.name} restarted." in log
    finally:
        again.kill(signal.SIGKILL)
