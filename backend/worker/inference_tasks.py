"""Thin Celery task for local chat inference on the ``gpu`` queue."""

from __future__ import annotations

from typing import Any

from celery import current_task

from backend.worker.celery_app import get_celery

app = get_celery()


@app.task(name="studio.inference.chat", acks_late=False, ignore_result=True)
def chat_task(request: dict[str, Any]) -> str:
    # Not acks_late: a chat is not retried on another worker; its caller has moved on.
    from backend.llm.serve import serve_chat_request
    from backend.services.chat import channel_redis

    hostname = current_task.request.hostname if current_task else "worker"
    return serve_chat_request(request, r=channel_redis(), worker=str(hostname))
