"""fine-tuning: datasets with versions; workers report their GPUs (memory, utilisation)

Revision ID: 0010_finetune
Revises: 0005_jobs
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010_finetune"
down_revision: str | None = "0005_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("workspace_id", sa.BigInteger(), server_default="1", nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("description", sa.String(length=2000), server_default="", nullable=False),
        sa.Column("source", sa.String(length=32), server_default="upload", nullable=False),
        sa.Column("latest_version", sa.Integer(), server_default="0", nullable=False),
        *_timestamps(),
        sa.CheckConstraint("format IN ('alpaca', 'chat', 'preference')",
                           name=op.f("ck_datasets_format")),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"],
                                name=op.f("fk_datasets_workspace_id_workspaces"),
                                ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("workspace_id", "name", name=op.f("uq_datasets_workspace_id")),
    )
    op.create_index(op.f("ix_datasets_workspace_id"), "datasets", ["workspace_id"])
    op.create_table(
        "dataset_versions",
        sa.Column("dataset_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=2000), nullable=False),
        sa.Column("original_name", sa.String(length=255), server_default="", nullable=False),
        sa.Column("records", sa.Integer(), server_default="0", nullable=False),
        sa.Column("sha256", sa.String(length=64), server_default="", nullable=False),
        sa.Column("stats", postgresql.JSONB(astext_type=sa.Text()), server_default="{}",
                  nullable=False),
        sa.Column("note", sa.String(length=2000), server_default="", nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"],
                                name=op.f("fk_dataset_versions_dataset_id_datasets"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_versions")),
        sa.UniqueConstraint("dataset_id", "version", name=op.f("uq_dataset_versions_dataset_id")),
    )
    op.create_index(op.f("ix_dataset_versions_dataset_id"), "dataset_versions", ["dataset_id"])
    op.add_column("workers", sa.Column("gpus", postgresql.JSONB(astext_type=sa.Text()),
                                       server_default="[]", nullable=False))


def downgrade() -> None:
    op.drop_column("workers", "gpus")
    op.drop_index(op.f("ix_dataset_versions_dataset_id"), table_name="dataset_versions")
    op.drop_table("dataset_versions")
    op.drop_index(op.f("ix_datasets_workspace_id"), table_name="datasets")
    op.drop_table("datasets")
