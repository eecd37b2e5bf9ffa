"""The Celery app. Broker is the studio's Redis (embedded or configured); results are not kept in
Celery: a job's truth is its row in Postgres."""

from __future__ import annotations

from functools import lru_cache

from celery import Celery
from kombu import Queue

from backend.config import get_settings
from backend.embedded import celery_url, ensure_services

QUEUES = ("cpu", "gpu")


@lru_cache(maxsize=1)
def get_celery() -> Celery:
    urls = ensure_services(get_settings())
    broker = celery_url(urls.redis_url)
    app = Celery("studio", broker=broker,
                 include=["backend.worker.tasks", "backend.worker.inference_tasks"])
    app.conf.update(
        task_queues=[Queue(q) for q in QUEUES],
        task_default_queue="cpu",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        broker_transport_options={"visibility_timeout": 12 * 3600},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
    )
    return app
