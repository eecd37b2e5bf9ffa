"""LLM Studio backend: services, domain packages, worker and API."""
