"""Jobs: the one mechanism every long task uses. The row is the job's truth, not Celery's."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.base import Base, IdMixin, TimestampMixin
from backend.models.workspaces import WorkspaceOwnedMixin


class JobStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    interrupted = "interrupted"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATUSES


FINISHED_STATUSES = frozenset(
    {JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled, JobStatus.interrupted}
)


class Job(IdMixin, WorkspaceOwnedMixin, TimestampMixin, Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_queued_enqueued_at", "enqueued_at",
              postgresql_where=text("status = 'queued'")),
    )

    kind: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(String(300), default="", server_default="")
    # a title the system wrote: ``title`` is its English text (for search, the CLI and the API);
    # the studio shows ``title_template`` translated and filled with ``title_args``
    title_template: Mapped[str | None] = mapped_column(String(300), nullable=True)
    title_args: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    queue: Mapped[str] = mapped_column(String(32), default="cpu", server_default="cpu")
    status: Mapped[str] = mapped_column(
        String(16), default=JobStatus.queued.value, server_default="queued", index=True
    )
    progress: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # ``stage`` is the English text (for search and the CLI); the studio shows
    # ``stage_template`` translated and filled with ``stage_args``
    stage: Mapped[str] = mapped_column(String(200), default="", server_default="")
    stage_template: Mapped[str | None] = mapped_column(String(200), nullable=True)
    stage_args: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    worker_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    worker_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    celery_task_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    retry_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True
    )
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # when its message was last sent to Redis: a queued job whose message is gone is sent again
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    @property
    def status_enum(self) -> JobStatus:
        return JobStatus(self.status)


class JobMetric(Base):
    """One point of a job's metrics time series (loss, lr, tokens/s ...)."""

    __tablename__ = "job_metrics"
    __table_args__ = (Index("ix_job_metrics_job_name_step", "job_id", "name", "step"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class JobLog(Base):
    """A line of a job's log; the Jobs page shows the tail."""

    __tablename__ = "job_logs"
    __table_args__ = (Index("ix_job_logs_job_id_id", "job_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    level: Mapped[str] = mapped_column(String(10), default="INFO")
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class Worker(Base):
    """A live Celery worker, as it last reported itself (heartbeat)."""

    __tablename__ = "workers"

    hostname: Mapped[str] = mapped_column(String(255), primary_key=True)
    queues: Mapped[list[str]] = mapped_column(JSONB, default=list)
    pid: Mapped[int] = mapped_column(Integer)
    concurrency: Mapped[int] = mapped_column(Integer, default=1)
    device: Mapped[str] = mapped_column(String(200), default="cpu")
    # one entry per CUDA device: name, memory_total_mb, memory_used_mb, utilization (percent)
    gpus: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list, server_default="[]")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
