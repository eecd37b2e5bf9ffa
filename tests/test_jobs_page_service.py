"""What the Jobs, Home and Settings pages read: a demo job's progress, metrics and log read back
through the services; the queue backlog; the settings with their secrets hidden."""

from __future__ import annotations

import os

import pytest

from backend.accounts.actor import Actor, PermissionDenied, Role
from backend.config import get_settings, reset_settings
from backend.services import jobs
from backend.services.settings_view import embedded_services, mask_url, settings_overview

BUILDER = Actor(user_id=9001, username="builder", role=Role.builder)
OTHER_WORKSPACE_BUILDER = Actor(user_id=9002, username="far", role=Role.builder, workspace_id=99)


def test_demo_job_progress_metrics_and_log_read_back() -> None:
    actor = Actor.system()
    job = jobs.submit_job(actor=actor, kind="demo", params={"steps": 5, "step_seconds": 0.01},
                          title="Read-back demo", enqueue=False)
    assert job.status == "queued" and job.progress == 0.0
    done = jobs.run_inline(actor=actor, job_id=job.id)
    assert done.status == "succeeded"
    assert done.progress == pytest.approx(1.0)
    assert done.stage == "step 5/5"
    assert done.duration_s is not None and done.duration_s > 0

    series = jobs.job_metrics(actor=actor, job_id=job.id)
    assert [step for step, _ in series["loss"]] == [0, 1, 2, 3, 4]
    losses = [value for _, value in series["loss"]]
    assert losses == sorted(losses, reverse=True) and losses[0] > losses[-1]

    log = [line.message for line in jobs.job_log_tail(actor=actor, job_id=job.id)]
    assert log[0].startswith("Demo job: 5 steps") and log[-1] == "Demo job finished"

    listed = jobs.list_jobs(actor=actor, kinds=["demo"], statuses=["succeeded"],
                            search="Read-back")
    assert [j.id for j in listed] == [job.id]
    assert jobs.job_counts(actor=actor)["succeeded"] >= 1
    assert "demo" in jobs.job_kinds_in_use(actor=actor)


def test_queue_backlog_counts_waiting_jobs_the_actor_may_see() -> None:
    before = jobs.queue_backlog(actor=Actor.system()).get("cpu", 0)
    mine = [jobs.submit_job(actor=BUILDER, kind="demo", title="backlog", enqueue=False)
            for _ in range(2)]
    try:
        assert jobs.queue_backlog(actor=Actor.system())["cpu"] == before + 2
        # the builder sees its workspace's jobs; a builder of another workspace sees none of them
        assert jobs.queue_backlog(actor=BUILDER)["cpu"] >= 2
        assert jobs.queue_backlog(actor=OTHER_WORKSPACE_BUILDER).get("cpu", 0) == 0
        jobs.cancel_job(actor=BUILDER, job_id=mine[0].id)
        assert jobs.queue_backlog(actor=Actor.system())["cpu"] == before + 1
    finally:
        for job in mine:
            if not jobs.get_job(actor=BUILDER, job_id=job.id).finished:
                jobs.cancel_job(actor=BUILDER, job_id=job.id)


def test_statuses_cover_every_status_in_lifecycle_order() -> None:
    assert jobs.STATUSES[:3] == ("queued", "running", "succeeded")
    assert set(jobs.STATUSES) >= {"failed", "cancelled", "interrupted"}
    assert set(jobs.ACTIVE_STATUSES) == {"queued", "running"}


def test_mask_url_hides_passwords_only() -> None:
    assert mask_url("postgresql+psycopg://studio:s3cret@db:5432/studio?sslmode=require") == (
        "postgresql+psycopg://studio:***@db:5432/studio?sslmode=require")
    assert mask_url("redis://:pw@redis:6379/0") == "redis://:***@redis:6379/0"
    assert mask_url("redis://redis:6379/0") == "redis://redis:6379/0"


def test_settings_overview_never_shows_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "a-very-secret-key-0123456789"
    monkeypatch.setenv("STUDIO_SECRET_KEY", secret)
    monkeypatch.setenv("STUDIO_API_KEY", "sk-another-secret-value")
    monkeypatch.setenv("STUDIO_DATABASE_URL",
                       "postgresql+psycopg://studio:db-password-123@db:5432/studio")
    reset_settings()
    try:
        rows = {r.name: r for r in settings_overview(actor=Actor.system())}
        shown = " ".join(str(r.value) for r in rows.values())
        for leaked in (secret, "sk-another-secret-value", "db-password-123"):
            assert leaked not in shown
        assert rows["secret_key"].value is None and rows["secret_key"].state == "set"
        assert rows["api_key"].state == "set"
        assert rows["database_url"].value == "postgresql+psycopg://studio:***@db:5432/studio"
        assert rows["database_url"].env_var == "STUDIO_DATABASE_URL"
        assert not rows["database_url"].is_default
        assert rows["password_min_length"].value == str(get_settings().password_min_length)
        assert embedded_services().postgres is False
    finally:
        monkeypatch.undo()
        reset_settings()
    assert os.environ.get("STUDIO_API_KEY") is None
    assert embedded_services().postgres is True  # the test session's own embedded Postgres


def test_settings_overview_is_for_admins() -> None:
    with pytest.raises(PermissionDenied):
        settings_overview(actor=BUILDER)
