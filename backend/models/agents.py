"""Agents and published bots: the agent (a draft config plus frozen versions), its
conversations and messages, a trace per answer (one row per step), feedback, user-defined HTTP
tools, MCP servers, hosts an admin allows tools to reach, and API keys limited to one agent.

An agent's ``config`` is the draft the builder edits; publishing copies it into an
``AgentVersion`` and points ``published_version`` at it, so editing never changes what the
published bot answers until it is published again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.base import Base, IdMixin, TimestampMixin
from backend.models.workspaces import WorkspaceOwnedMixin


def _now_column() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Agent(IdMixin, WorkspaceOwnedMixin, TimestampMixin, Base):
    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    icon: Mapped[str] = mapped_column(String(16), default="🤖", server_default="🤖")
    config: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    published_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AgentVersion(Base):
    """A frozen config: what the published bot answers with."""

    __tablename__ = "agent_versions"
    __table_args__ = (UniqueConstraint("agent_id", "version"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_by: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = _now_column()


class AgentConversation(IdMixin, WorkspaceOwnedMixin, TimestampMixin, Base):
    __tablename__ = "agent_conversations"

    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200), default="", server_default="")
    channel: Mapped[str] = mapped_column(String(16), default="studio", server_default="studio")
    summary: Mapped[str] = mapped_column(Text, default="", server_default="")
    summarized_upto: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AgentMessage(Base):
    __tablename__ = "agent_messages"
    __table_args__ = (CheckConstraint("role IN ('user', 'assistant')", name="role"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("agent_conversations.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    sources: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list,
                                                          server_default="[]")
    trace_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = _now_column()


class AgentTrace(Base):
    """One answer's run: its plan (plan-and-execute), outcome and totals; steps hang off it."""

    __tablename__ = "agent_traces"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[int] = mapped_column(BigInteger, index=True)
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("agent_conversations.id", ondelete="CASCADE"), nullable=True, index=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    question: Mapped[str] = mapped_column(Text, default="", server_default="")
    status: Mapped[str] = mapped_column(String(16), default="ok", server_default="ok")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    plan: Mapped[list[Any] | None] = mapped_column(JSONB, nullable=True)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    total_ms: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    created_at: Mapped[datetime] = _now_column()


class AgentTraceStep(Base):
    __tablename__ = "agent_trace_steps"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    trace_id: Mapped[int] = mapped_column(ForeignKey("agent_traces.id", ondelete="CASCADE"),
                                          index=True)
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # model | tool | retrieval | plan
    name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    input: Mapped[Any] = mapped_column(JSONB, nullable=True)
    output: Mapped[Any] = mapped_column(JSONB, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AgentFeedback(Base):
    __tablename__ = "agent_feedback"
    __table_args__ = (CheckConstraint("rating IN (-1, 1)", name="rating"),
                      UniqueConstraint("message_id", "user_id"))

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("agent_messages.id", ondelete="CASCADE"),
                                            index=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[int] = mapped_column(BigInteger, index=True)
    user_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    rating: Mapped[int] = mapped_column(SmallInteger)
    comment: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = _now_column()


class HttpTool(IdMixin, WorkspaceOwnedMixin, TimestampMixin, Base):
    """A user-defined HTTP call the model may make. Header values may name workspace secrets as
    ``{secret:NAME}``; they are filled in at call time and never stored in traces."""

    __tablename__ = "agent_http_tools"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    method: Mapped[str] = mapped_column(String(8), default="GET", server_default="GET")
    url_template: Mapped[str] = mapped_column(String(2000))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    headers: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict, server_default="{}")


class McpServer(IdMixin, WorkspaceOwnedMixin, TimestampMixin, Base):
    """An MCP server whose tools agents may pick: a local command (stdio) or a URL."""

    __tablename__ = "agent_mcp_servers"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),
                      CheckConstraint("transport IN ('stdio', 'http')", name="transport"))

    name: Mapped[str] = mapped_column(String(64))
    transport: Mapped[str] = mapped_column(String(8))
    command: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    args: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default="[]")
    url: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    headers: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict, server_default="{}")


class AllowedHost(Base):
    """A host an admin lets HTTP and MCP tools reach although it is private or local."""

    __tablename__ = "agent_allowed_hosts"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    created_by: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = _now_column()


class ApiKeyLimit(Base):
    """An API key limited to one agent and/or a rate (requests per minute)."""

    __tablename__ = "api_key_limits"

    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"),
                                            primary_key=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"),
                                                 nullable=True, index=True)
    rate_per_min: Mapped[int | None] = mapped_column(Integer, nullable=True)
