"""The one settings object. Every tunable is an environment variable prefixed ``STUDIO_``."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(RuntimeError):
    """A setting has a value we cannot run with; the message says which and how to fix it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STUDIO_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="Postgres URL (with pgvector). Empty: an embedded Postgres under data_dir.",
    )
    redis_url: str | None = Field(
        default=None, description="Redis URL. Empty: an embedded Redis under data_dir."
    )
    data_dir: Path = Field(
        default=Path("studio-data"),
        description="Uploads, checkpoints, model folders and the embedded services live here.",
    )
    host: str = Field(default="127.0.0.1", description="Address the studio and API listen on.")
    studio_port: int = Field(default=8501, ge=1, le=65535, description="Streamlit port.")
    api_port: int = Field(default=8000, ge=1, le=65535, description="OpenAI-compatible API port.")
    max_upload_mb: int = Field(default=200, ge=1, description="Largest file one may upload.")
    secret_key: str | None = Field(
        default=None,
        min_length=16,
        description="Encrypts secrets at rest. Empty: generated once into data_dir/secret.key.",
    )
    worker_concurrency: int = Field(default=2, ge=1, le=64, description="Jobs a worker runs at once.")
    torch_threads: int = Field(default=1, ge=1, le=256, description="torch.set_num_threads in workers.")
    heartbeat_interval_s: float = Field(default=2.0, gt=0, description="Running jobs beat this often.")
    heartbeat_timeout_s: float = Field(
        default=30.0, gt=0, description="A running job silent this long is marked interrupted."
    )
    services_linger_s: float = Field(
        default=60.0, ge=0,
        description="Embedded Postgres and Redis keep running this long after the last process "
                    "using them has gone, so consecutive commands do not restart them.",
    )
    reconcile_interval_s: float = Field(
        default=10.0, gt=0,
        description="Workers look this often for queued jobs whose message Redis lost.",
    )
    reconcile_after_s: float = Field(
        default=30.0, gt=0,
        description="A queued job with no message in Redis for this long is sent again.",
    )
    db_retry_s: float = Field(
        default=60.0, gt=0,
        description="A running job retries its database writes this long while Postgres is "
                    "unreachable, then ends interrupted.",
    )
    request_timeout_s: float = Field(
        default=30.0, gt=0, description="Timeout for calls to remote model endpoints."
    )
    # Local inference (models and inference) ---------------------------------------------
    inference_device: Literal["auto", "cuda", "cpu"] = Field(
        default="auto", description="Where local models run: auto picks cuda when present."
    )
    model_cache_size: int = Field(
        default=2, ge=1, le=64, description="Local models a worker keeps loaded (LRU)."
    )
    model_cache_max_gb: float = Field(
        default=24.0, gt=0, description="Memory the loaded local models may take in all (GB)."
    )
    inference_accept_timeout_s: float = Field(
        default=120.0, gt=0,
        description="Longest a chat waits in the queue for a gpu worker before it is refused "
                    "(the API answers 503 with Retry-After).",
    )
    inference_queue_size: int = Field(
        default=64, ge=0, le=100000,
        description="Chats that may wait for a gpu worker at once (across API processes); one "
                    "more is refused at once with 503 and Retry-After.",
    )
    inference_retry_after_s: int = Field(
        default=5, ge=1, le=3600, description="The Retry-After the API sends with a refused chat."
    )
    inference_idle_timeout_s: float = Field(
        default=300.0, gt=0,
        description="Longest silence from a worker during a chat (model loading included).",
    )
    embedding_backend: Literal["auto", "bf16", "onnx", "onnx-int8", "torch"] = Field(
        default="auto",
        description="How the bundled MiniLM embeds on CPU: auto uses bf16 on CPUs with "
        "bfloat16 arithmetic (AVX512-BF16, AMX) and onnx elsewhere; bf16 runs its matrix "
        "products in bfloat16 (about 2x faster, vectors within cosine 0.9999); onnx uses an "
        "ONNX export made once under data_dir/cache (same vectors, faster than torch); "
        "onnx-int8 quantizes its weights (vectors within cosine ~0.99, retrieval a little "
        "worse); torch uses sentence-transformers.",
    )
    embedding_batch_size: int = Field(
        default=64, ge=1, le=4096, description="Texts embedded per batch."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    default_language: Literal["en", "zh_CN"] = "en"
    # Accounts ------------------------------------------------------------------------------
    api_key: str | None = Field(
        default=None,
        description="CLI: act as this API key's user and workspace instead of as the operator.",
    )
    session_hours: float = Field(default=12.0, gt=0, description="A studio login lasts this long.")
    login_max_failures: int = Field(
        default=5, ge=1, description="Wrong passwords per username before logins are locked."
    )
    login_lockout_minutes: float = Field(
        default=5.0, gt=0, description="Window (and lock) for counting wrong passwords."
    )
    password_min_length: int = Field(default=8, ge=4, description="Shortest password accepted.")

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @field_validator("database_url")
    @classmethod
    def _pg_url(cls, v: str | None) -> str | None:
        if not v:
            return None
        if not v.startswith(("postgresql", "postgres://")):
            raise ValueError("must be a Postgres URL such as postgresql+psycopg://user:pw@host/db")
        if v.startswith("postgres://"):
            v = "postgresql://" + v.removeprefix("postgres://")
        if v.startswith("postgresql://"):
            v = "postgresql+psycopg://" + v.removeprefix("postgresql://")
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str | None) -> str | None:
        if not v:
            return None
        if not v.startswith(("redis://", "rediss://", "redis+socket://", "unix://")):
            raise ValueError("must be a Redis URL such as redis://localhost:6379/0")
        return v

    # Derived paths -----------------------------------------------------------------------
    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def embedded_dir(self) -> Path:
        return self.data_dir / "embedded"

    def ensure_dirs(self) -> None:
        for d in (self.data_dir, self.uploads_dir, self.models_dir, self.runs_dir, self.logs_dir):
            d.mkdir(parents=True, exist_ok=True)

    def resolved_secret_key(self) -> str:
        """The secret key: from the environment, else generated once and kept in data_dir."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret.key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(32)
        path.write_text(key)
        path.chmod(0o600)
        return key


def _explain(err: ValidationError) -> str:
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "?"
    return f"Invalid setting STUDIO_{field.upper()}: {first['msg']}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings. Raises SettingsError with one readable line on a bad value."""
    try:
        return Settings()
    except ValidationError as err:
        raise SettingsError(_explain(err)) from None


def reset_settings() -> None:
    """Forget cached settings (tests change the environment between cases)."""
    get_settings.cache_clear()
