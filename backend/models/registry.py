"""The model registry: every chat or embedding model a page can talk to.

A row is one of three kinds:
- ``local``: a Hugging Face folder or hub id, loaded by transformers on a worker;
- ``openai``: an OpenAI-compatible endpoint (base URL, model name, encrypted API key);
- ``produced``: a folder this studio wrote (pre-training, fine-tuning), with its lineage.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.base import Base, IdMixin, TimestampMixin
from backend.models.workspaces import WorkspaceOwnedMixin


class ModelKind(enum.StrEnum):
    local = "local"
    openai = "openai"
    produced = "produced"


class Capability(enum.StrEnum):
    chat = "chat"
    embeddings = "embeddings"
    tools = "tools"


class RegisteredModel(IdMixin, WorkspaceOwnedMixin, TimestampMixin, Base):
    __tablename__ = "models"
    __table_args__ = (
        UniqueConstraint("workspace_id", "name"),
        CheckConstraint("kind IN ('local', 'openai', 'produced')", name="kind"),
    )

    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    # local/produced: folder path or hub id; openai: empty.
    source: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    base_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    remote_model: Mapped[str | None] = mapped_column(String(300), nullable=True)
    api_key_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    api_key_masked: Mapped[str | None] = mapped_column(String(40), nullable=True)
    capabilities: Mapped[list[str]] = mapped_column(
        JSONB, default=lambda: ["chat"], server_default='["chat"]'
    )
    default_params: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default="{}"
    )
    lineage: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    description: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    last_test_ok: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    last_test_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_tested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # prices per million tokens (any currency; the playground shows the cost of a run)
    price_input_per_mtok: Mapped[float | None] = mapped_column(Float, nullable=True)
    price_output_per_mtok: Mapped[float | None] = mapped_column(Float, nullable=True)
