"""knowledge: each document's vector per index (sum of its enabled chunks' vectors), kept on
write so hybrid search reads it by key instead of summing chunks at query time

Revision ID: 0012_doc_vectors
Revises: 0010_finetune
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector

revision: str = "0012_doc_vectors"
down_revision: str | None = "0010_finetune"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kb_document_vectors",
        sa.Column("index_id", sa.BigInteger(), nullable=False),
        sa.Column("document_id", sa.BigInteger(), nullable=False),
        sa.Column("dim", sa.SmallInteger(), nullable=False),
        sa.Column("embedding", Vector(), nullable=False),
        sa.Column("n_chunks", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["document_id"], ["kb_documents.id"],
                                name=op.f("fk_kb_document_vectors_document_id_kb_documents"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["index_id"], ["kb_indexes.id"],
                                name=op.f("fk_kb_document_vectors_index_id_kb_indexes"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("index_id", "document_id", name=op.f("pk_kb_document_vectors")),
    )
    # the chunks already stored (pgvector 0.6 has sum() over vectors)
    op.execute(
        "INSERT INTO kb_document_vectors (index_id, document_id, dim, embedding, n_chunks) "
        "SELECT index_id, document_id, min(dim), sum(embedding), count(*) FROM kb_chunks "
        "WHERE enabled GROUP BY index_id, document_id")


def downgrade() -> None:
    op.drop_table("kb_document_vectors")
