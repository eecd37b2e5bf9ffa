"""knowledge bases: documents, chunks with pgvector embeddings (an HNSW expression index per
dimension), and BM25 statistics (term frequencies per chunk, document frequencies per index)

Revision ID: 0007_knowledge
Revises: 0011_pretrain
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql

revision: str = "0007_knowledge"
down_revision: str | None = "0011_pretrain"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONB = postgresql.JSONB(astext_type=sa.Text())


def _ts() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
    ]


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "knowledge_bases",
        sa.Column("workspace_id", sa.BigInteger(), server_default="1", nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=2000), server_default="", nullable=False),
        sa.Column("settings", JSONB, server_default="{}", nullable=False),
        sa.Column("active_index_id", sa.BigInteger(), nullable=True),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        *_ts(),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"],
                                name=op.f("fk_knowledge_bases_workspace_id_workspaces"),
                                ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_bases")),
        sa.UniqueConstraint("workspace_id", "name", name=op.f("uq_knowledge_bases_workspace_id")),
    )
    op.create_index(op.f("ix_knowledge_bases_workspace_id"), "knowledge_bases", ["workspace_id"])
    op.create_table(
        "kb_indexes",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("kb_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("embedder", sa.String(length=200), nullable=True),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("chunk_size", sa.Integer(), nullable=False),
        sa.Column("chunk_overlap", sa.Integer(), nullable=False),
        sa.Column("splitter", sa.String(length=20), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("n_chunks", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("total_length", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.ForeignKeyConstraint(["kb_id"], ["knowledge_bases.id"],
                                name=op.f("fk_kb_indexes_kb_id_knowledge_bases"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_indexes")),
    )
    op.create_index(op.f("ix_kb_indexes_kb_id"), "kb_indexes", ["kb_id"])
    op.create_table(
        "kb_documents",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("kb_id", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=1000), nullable=False),
        sa.Column("file_type", sa.String(length=16), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("stored_path", sa.String(length=2000), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("title", sa.String(length=500), server_default="", nullable=False),
        sa.Column("chunk_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("char_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("duplicate_of", sa.BigInteger(), nullable=True),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("metadata", JSONB, server_default="{}", nullable=False),
        *_ts(),
        sa.ForeignKeyConstraint(["kb_id"], ["knowledge_bases.id"],
                                name=op.f("fk_kb_documents_kb_id_knowledge_bases"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_documents")),
        sa.UniqueConstraint("kb_id", "source", name=op.f("uq_kb_documents_kb_id")),
    )
    op.create_index("ix_kb_documents_kb_id_sha256", "kb_documents", ["kb_id", "sha256"])
    op.create_table(
        "kb_chunks",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("index_id", sa.BigInteger(), nullable=False),
        sa.Column("document_id", sa.BigInteger(), nullable=False),
        sa.Column("ord", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("dim", sa.SmallInteger(), nullable=False),
        sa.Column("embedding", Vector(), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("edited", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("metadata", JSONB, server_default="{}", nullable=False),
        sa.ForeignKeyConstraint(["document_id"], ["kb_documents.id"],
                                name=op.f("fk_kb_chunks_document_id_kb_documents"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["index_id"], ["kb_indexes.id"],
                                name=op.f("fk_kb_chunks_index_id_kb_indexes"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_chunks")),
    )
    op.create_index("ix_kb_chunks_index_id_document_id_ord", "kb_chunks",
                    ["index_id", "document_id", "ord"])
    op.create_index("ix_kb_chunks_document_id", "kb_chunks", ["document_id"])
    # one HNSW index per embedding dimension, over an expression the queries repeat
    op.execute("CREATE INDEX ix_kb_chunks_hnsw_384 ON kb_chunks USING hnsw "
               "((embedding::vector(384)) vector_cosine_ops) WHERE dim = 384")
    op.create_table(
        "kb_chunk_terms",
        sa.Column("chunk_id", sa.BigInteger(), nullable=False),
        sa.Column("term", sa.String(length=100), nullable=False),
        sa.Column("index_id", sa.BigInteger(), nullable=False),
        sa.Column("tf", sa.Integer(), nullable=False),
        sa.Column("dl", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["chunk_id"], ["kb_chunks.id"],
                                name=op.f("fk_kb_chunk_terms_chunk_id_kb_chunks"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("chunk_id", "term", name=op.f("pk_kb_chunk_terms")),
    )
    op.create_index("ix_kb_chunk_terms_index_id_term", "kb_chunk_terms",
                    ["index_id", "term", "chunk_id", "tf", "dl"])
    op.create_table(
        "kb_term_stats",
        sa.Column("index_id", sa.BigInteger(), nullable=False),
        sa.Column("term", sa.String(length=100), nullable=False),
        sa.Column("df", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["index_id"], ["kb_indexes.id"],
                                name=op.f("fk_kb_term_stats_index_id_kb_indexes"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("index_id", "term", name=op.f("pk_kb_term_stats")),
    )


def downgrade() -> None:
    op.drop_table("kb_term_stats")
    op.drop_table("kb_chunk_terms")
    op.execute("DROP INDEX IF EXISTS ix_kb_chunks_hnsw_384")
    op.drop_table("kb_chunks")
    op.drop_table("kb_documents")
    op.drop_index(op.f("ix_kb_indexes_kb_id"), table_name="kb_indexes")
    op.drop_table("kb_indexes")
    op.drop_index(op.f("ix_knowledge_bases_workspace_id"), table_name="knowledge_bases")
    op.drop_table("knowledge_bases")
