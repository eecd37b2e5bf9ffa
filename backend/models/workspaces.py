"""Workspaces: every prompt, knowledge base, agent, dataset, model and job belongs to one."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.base import Base, IdMixin, TimestampMixin

DEFAULT_WORKSPACE_ID = 1


class Workspace(IdMixin, TimestampMixin, Base):
    __tablename__ = "workspaces"

    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    description: Mapped[str] = mapped_column(String(2000), default="", server_default="")


class WorkspaceOwnedMixin:
    """What every owned thing (job, model, prompt, knowledge base, agent, dataset) carries: its
    workspace, and who created it (a user id; none for the studio itself)."""

    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspaces.id", ondelete="RESTRICT"),
        default=DEFAULT_WORKSPACE_ID,
        server_default=str(DEFAULT_WORKSPACE_ID),
        index=True,
    )
    created_by: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
