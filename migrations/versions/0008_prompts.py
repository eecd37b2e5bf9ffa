"""prompts, prompt versions and prompt runs; model prices

Revision ID: 0008_prompts
Revises: 0009_agents
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008_prompts"
down_revision: str | None = "0009_agents"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _owned() -> list[sa.Column]:
    return [
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), server_default="1", nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
    ]


def _jsonb() -> postgresql.JSONB:
    return postgresql.JSONB(astext_type=sa.Text())


def upgrade() -> None:
    op.add_column("models", sa.Column("price_input_per_mtok", sa.Float(), nullable=True))
    op.add_column("models", sa.Column("price_output_per_mtok", sa.Float(), nullable=True))

    op.create_table(
        "prompts",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=2000), server_default="", nullable=False),
        sa.Column("latest_version", sa.Integer(), server_default="0", nullable=False),
        *_owned(),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"],
                                name=op.f("fk_prompts_workspace_id_workspaces"),
                                ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompts")),
        sa.UniqueConstraint("workspace_id", "name", name=op.f("uq_prompts_workspace_id")),
    )
    op.create_index(op.f("ix_prompts_workspace_id"), "prompts", ["workspace_id"])

    op.create_table(
        "prompt_versions",
        sa.Column("prompt_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("system", sa.Text(), server_default="", nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("examples", _jsonb(), server_default="[]", nullable=False),
        sa.Column("output_format", _jsonb(), server_default='{"type": "text"}', nullable=False),
        sa.Column("context", _jsonb(), nullable=True),
        sa.Column("params", _jsonb(), server_default="{}", nullable=False),
        sa.Column("message", sa.String(length=2000), server_default="", nullable=False),
        *_owned(),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"],
                                name=op.f("fk_prompt_versions_prompt_id_prompts"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"],
                                name=op.f("fk_prompt_versions_workspace_id_workspaces"),
                                ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_versions")),
        sa.UniqueConstraint("prompt_id", "version", name=op.f("uq_prompt_versions_prompt_id")),
    )
    op.create_index(op.f("ix_prompt_versions_prompt_id"), "prompt_versions", ["prompt_id"])
    op.create_index(op.f("ix_prompt_versions_workspace_id"), "prompt_versions", ["workspace_id"])

    op.create_table(
        "prompt_runs",
        sa.Column("prompt_id", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("model_id", sa.BigInteger(), nullable=True),
        sa.Column("source", sa.String(length=20), server_default="playground", nullable=False),
        sa.Column("system", sa.Text(), server_default="", nullable=False),
        sa.Column("template", sa.Text(), server_default="", nullable=False),
        sa.Column("variables", _jsonb(), server_default="{}", nullable=False),
        sa.Column("messages", _jsonb(), server_default="[]", nullable=False),
        sa.Column("params", _jsonb(), server_default="{}", nullable=False),
        sa.Column("output_format", _jsonb(), server_default='{"type": "text"}', nullable=False),
        sa.Column("output", sa.Text(), server_default="", nullable=False),
        sa.Column("parsed", _jsonb(), nullable=True),
        sa.Column("valid", sa.Boolean(), nullable=True),
        sa.Column("invalid_reason", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("tokens_in", sa.Integer(), nullable=True),
        sa.Column("tokens_out", sa.Integer(), nullable=True),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("tokens_per_s", sa.Float(), nullable=True),
        sa.Column("total_ms", sa.Float(), nullable=True),
        sa.Column("cost", sa.Float(), nullable=True),
        sa.Column("finish_reason", sa.String(length=20), nullable=True),
        *_owned(),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"],
                                name=op.f("fk_prompt_runs_prompt_id_prompts"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"],
                                name=op.f("fk_prompt_runs_workspace_id_workspaces"),
                                ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_runs")),
    )
    op.create_index(op.f("ix_prompt_runs_prompt_id"), "prompt_runs", ["prompt_id"])
    op.create_index(op.f("ix_prompt_runs_workspace_id"), "prompt_runs", ["workspace_id"])


def downgrade() -> None:
    op.drop_table("prompt_runs")
    op.drop_table("prompt_versions")
    op.drop_table("prompts")
    op.drop_column("models", "price_output_per_mtok")
    op.drop_column("models", "price_input_per_mtok")
