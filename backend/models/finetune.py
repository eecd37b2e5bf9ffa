"""Fine-tuning datasets: a named dataset owned by a workspace, and its immutable versions.

Each version's records are stored normalised (JSON Lines, one ``{"messages": ...}`` or
``{"prompt", "chosen", "rejected"}`` per line) under ``data_dir/datasets``; the row points at the
file and keeps what validation found (counts, duplicates).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.base import Base, IdMixin, TimestampMixin
from backend.models.workspaces import WorkspaceOwnedMixin


class TrainingDataset(IdMixin, WorkspaceOwnedMixin, TimestampMixin, Base):
    __tablename__ = "datasets"
    __table_args__ = (
        UniqueConstraint("workspace_id", "name"),
        CheckConstraint("format IN ('alpaca', 'chat', 'preference')", name="format"),
    )

    name: Mapped[str] = mapped_column(String(200))
    # alpaca and chat records are stored as chat; preference as prompt/chosen/rejected
    format: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    # upload | knowledge_base | feedback
    source: Mapped[str] = mapped_column(String(32), default="upload", server_default="upload")
    latest_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class DatasetVersion(IdMixin, TimestampMixin, Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)

    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(2000))
    original_name: Mapped[str] = mapped_column(String(255), default="", server_default="")
    records: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    sha256: Mapped[str] = mapped_column(String(64), default="", server_default="")
    stats: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    note: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    created_by: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
