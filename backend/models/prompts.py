"""Prompts: a named prompt in a workspace, its versions (every save is one), and the runs made
with it (or without one, from the playground's scratch editor)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.base import Base, IdMixin, TimestampMixin
from backend.models.workspaces import WorkspaceOwnedMixin


class Prompt(IdMixin, WorkspaceOwnedMixin, TimestampMixin, Base):
    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    latest_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class PromptVersion(IdMixin, WorkspaceOwnedMixin, TimestampMixin, Base):
    """One saved state of a prompt. Versions are never changed; a restore saves a new one."""

    __tablename__ = "prompt_versions"
    __table_args__ = (UniqueConstraint("prompt_id", "version"),)

    prompt_id: Mapped[int] = mapped_column(
        ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    system: Mapped[str] = mapped_column(Text, default="", server_default="")
    template: Mapped[str] = mapped_column(Text)
    # few-shot turns: [{"user": ..., "assistant": ...}]
    examples: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default="[]")
    # {"type": "text"} | {"type": "list"} | {"type": "json", "schema": {...}}
    output_format: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default='{"type": "text"}')
    # knowledge-base context: {"kb": name, "query_variable": "question", "k": 3} or null
    context: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    message: Mapped[str] = mapped_column(String(2000), default="", server_default="")


class PromptRun(IdMixin, WorkspaceOwnedMixin, TimestampMixin, Base):
    """One answer of one model: what went in, what came out, how fast and at what cost."""

    __tablename__ = "prompt_runs"

    prompt_id: Mapped[int | None] = mapped_column(
        ForeignKey("prompts.id", ondelete="SET NULL"), nullable=True, index=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    model_name: Mapped[str] = mapped_column(String(200))
    model_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    source: Mapped[str] = mapped_column(String(20), default="playground",
                                        server_default="playground")
    system: Mapped[str] = mapped_column(Text, default="", server_default="")
    template: Mapped[str] = mapped_column(Text, default="", server_default="")
    variables: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list,
                                                           server_default="[]")
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    output_format: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default='{"type": "text"}')
    output: Mapped[str] = mapped_column(Text, default="", server_default="")
    parsed: Mapped[Any | None] = mapped_column(JSONB, nullable=True)
    valid: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    invalid_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    tokens_in: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tokens_out: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ttft_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    tokens_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    total_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    cost: Mapped[float | None] = mapped_column(Float, nullable=True)
    finish_reason: Mapped[str | None] = mapped_column(String(20), nullable=True)
