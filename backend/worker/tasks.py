"""Thin Celery tasks: take ids, call plain functions. Nothing here is worth testing alone."""

from __future__ import annotations

from celery import current_task
from celery.exceptions import Reject

from backend.jobs.outage import DatabaseUnreachable
from backend.jobs.runner import run_job
from backend.worker.celery_app import get_celery

app = get_celery()


@app.task(name="studio.run_job")
def run_job_task(job_id: int) -> str:
    hostname = current_task.request.hostname if current_task else None
    try:
        return run_job(job_id, worker_host=hostname).status
    except DatabaseUnreachable as exc:
        # the job could not be claimed: never acknowledge it, put the message back
        raise Reject(str(exc), requeue=True) from exc
