"""pre-training: corpora and their versions

Revision ID: 0011_pretrain
Revises: 0008_prompts
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011_pretrain"
down_revision: str | None = "0008_prompts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "corpora",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=2000), server_default="", nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), server_default="1", nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"],
                                name=op.f("fk_corpora_workspace_id_workspaces"),
                                ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_corpora")),
        sa.UniqueConstraint("workspace_id", "name", name=op.f("uq_corpora_workspace_id")),
    )
    op.create_index(op.f("ix_corpora_workspace_id"), "corpora", ["workspace_id"], unique=False)
    op.create_table(
        "corpus_versions",
        sa.Column("corpus_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("folder", sa.String(length=2000), nullable=False),
        sa.Column("sources", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("heldout_fraction", sa.Float(), nullable=False),
        sa.Column("documents", sa.Integer(), nullable=False),
        sa.Column("heldout_documents", sa.Integer(), nullable=False),
        sa.Column("characters", sa.BigInteger(), nullable=False),
        sa.Column("stats", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("token_files", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.ForeignKeyConstraint(["corpus_id"], ["corpora.id"],
                                name=op.f("fk_corpus_versions_corpus_id_corpora"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_corpus_versions")),
        sa.UniqueConstraint("corpus_id", "version", name=op.f("uq_corpus_versions_corpus_id")),
    )
    op.create_index(op.f("ix_corpus_versions_corpus_id"), "corpus_versions", ["corpus_id"],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_corpus_versions_corpus_id"), table_name="corpus_versions")
    op.drop_table("corpus_versions")
    op.drop_index(op.f("ix_corpora_workspace_id"), table_name="corpora")
    op.drop_table("corpora")
