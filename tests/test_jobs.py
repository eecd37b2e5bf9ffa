"""The job system against a real worker: progress, metrics, logs, failures, retries."""

from __future__ import annotations

from backend.accounts.actor import Actor
from backend.services import jobs as jobs_service

ADMIN = Actor.system()


def test_demo_job_reports_progress_metrics_and_logs(worker) -> None:
    job = jobs_service.submit_job(actor=ADMIN, kind="demo", params={"steps": 6, "step_seconds": 0.05})
    assert job.status == "queued"
    done = jobs_service.wait_for_job(actor=ADMIN, job_id=job.id, timeout_s=60)
    assert done.status == "succeeded", done.error
    assert done.progress == 1.0
    assert (done.stage, done.stage_template, done.stage_args) == (
        "step 6/6", "step {step}/{total}", {"step": 6, "total": 6})
    assert done.worker_host == worker.name
    assert done.result == {"steps": 6, "resumed_from": 0, "final_loss": done.result["final_loss"]}
    metrics = jobs_service.job_metrics(actor=ADMIN, job_id=job.id)
    steps = [s for s, _ in metrics["loss"]]
    assert steps == list(range(6))
    losses = [v for _, v in metrics["loss"]]
    assert losses[-1] < losses[0]
    log = [line.message for line in jobs_service.job_log_tail(actor=ADMIN, job_id=job.id)]
    assert log[0].startswith("Demo job: 6 steps") and log[-1] == "Demo job finished"
    assert done.started_at is not None and done.finished_at is not None


def test_failing_job_keeps_a_readable_error_and_traceback_for_admins(worker) -> None:
    job = jobs_service.submit_job(actor=ADMIN, kind="demo",
                                  params={"steps": 5, "step_seconds": 0.01, "fail_at": 2})
    done = jobs_service.wait_for_job(actor=ADMIN, job_id=job.id, timeout_s=60)
    assert done.status == "failed"
    assert done.error == "RuntimeError: demo failure requested at step 2"
    assert done.error_detail and "Traceback" in done.error_detail
    builder = Actor(user_id=None, username="b", role="builder")  # type: ignore[arg-type]
    from backend.accounts.actor import Role

    builder = Actor(user_id=None, username="b", role=Role.builder)
    assert jobs_service.get_job(actor=builder, job_id=job.id).error_detail is None


def test_cancel_running_job(worker) -> None:
    job = jobs_service.submit_job(actor=ADMIN, kind="demo", params={"steps": 400, "step_seconds": 0.05})
    running = jobs_service.wait_for_job(actor=ADMIN, job_id=job.id, timeout_s=2)
    import time

    deadline = time.monotonic() + 30
    while running.status == "queued" and time.monotonic() < deadline:
        time.sleep(0.1)
        running = jobs_service.get_job(actor=ADMIN, job_id=job.id)
    assert running.status == "running"
    jobs_service.cancel_job(actor=ADMIN, job_id=job.id)
    done = jobs_service.wait_for_job(actor=ADMIN, job_id=job.id, timeout_s=30)
    assert done.status == "cancelled"
    assert done.progress < 0.5


def test_retry_creates_linked_job_with_same_params(worker) -> None:
    job = jobs_service.submit_job(actor=ADMIN, kind="demo",
                                  params={"steps": 3, "step_seconds": 0.01, "fail_at": 1})
    jobs_service.wait_for_job(actor=ADMIN, job_id=job.id, timeout_s=60)
    again = jobs_service.retry_job(actor=ADMIN, job_id=job.id)
    assert again.id != job.id and again.retry_of_id == job.id
    assert again.params == {"steps": 3, "step_seconds": 0.01, "fail_at": 1}
