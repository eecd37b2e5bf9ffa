"""Celery app, thin task wrappers, and the worker's own lifecycle (heartbeat, reaping)."""
