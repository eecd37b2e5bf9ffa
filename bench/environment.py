"""Embedded Postgres and Redis for a benchmark, under a folder of its own, migrated."""

from __future__ import annotations

import os
from pathlib import Path


def setup_environment(data_dir: Path, **defaults: str) -> dict[str, str]:
    """Embedded services under ``data_dir``, migrated; their URLs exported (for workers the
    benchmark starts). ``defaults``: more environment variables, set unless already set."""
    os.environ["STUDIO_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("STUDIO_SECRET_KEY", "bench-secret-key-0123456789")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    from backend import migrate
    from backend.config import get_settings, reset_settings
    from backend.embedded import ensure_services

    reset_settings()
    urls = ensure_services(get_settings())
    os.environ["STUDIO_DATABASE_URL"] = urls.database_url
    os.environ["STUDIO_REDIS_URL"] = urls.redis_url
    reset_settings()
    migrate.upgrade("head", url=urls.database_url)
    return dict(os.environ)
