"""Knowledge bases: documents, their chunks (text, pgvector embedding, metadata) and the BM25
statistics keyword search scores with.

A base has one *active index* (embedder, chunking, language and the chunks built with them). A
re-index builds a second index beside it; search keeps reading the active one until the new one is
complete, then the base switches in one transaction and the old index is dropped.

BM25 data is kept at ingest: ``kb_chunk_terms`` holds each chunk's term frequencies (and the
chunk's length, so scoring needs no join), ``kb_term_stats`` each term's document frequency per
index, and the index row the chunk count and total length (for the average length).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.base import Base, IdMixin, TimestampMixin
from backend.models.workspaces import WorkspaceOwnedMixin

# Dimensions that get an HNSW index from the migration; others get one when first used
# (``backend.knowledge.store.ensure_hnsw_index``).
MIGRATED_HNSW_DIMS = (384,)


class DocumentStatus(enum.StrEnum):
    pending = "pending"
    processing = "processing"
    ready = "ready"
    failed = "failed"
    duplicate = "duplicate"


class IndexStatus(enum.StrEnum):
    building = "building"
    active = "active"


class KnowledgeBase(IdMixin, WorkspaceOwnedMixin, TimestampMixin, Base):
    __tablename__ = "knowledge_bases"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    # Settings wanted for the next index: embedder (a registered model name or None for the
    # bundled MiniLM), chunk_size, chunk_overlap, splitter, language
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    active_index_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class KnowledgeIndex(Base):
    __tablename__ = "kb_indexes"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    kb_id: Mapped[int] = mapped_column(
        ForeignKey("knowledge_bases.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default=IndexStatus.building.value)
    embedder: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # the bundled MiniLM's kind of vectors (float, int8) the index was built with; None (from
    # before kinds were recorded): the setting's
    vectors: Mapped[str | None] = mapped_column(String(16), nullable=True)
    dim: Mapped[int] = mapped_column(Integer)
    chunk_size: Mapped[int] = mapped_column(Integer)
    chunk_overlap: Mapped[int] = mapped_column(Integer)
    splitter: Mapped[str] = mapped_column(String(20))
    language: Mapped[str] = mapped_column(String(8))
    n_chunks: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    total_length: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    job_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class KnowledgeDocument(TimestampMixin, Base):
    __tablename__ = "kb_documents"
    __table_args__ = (
        UniqueConstraint("kb_id", "source"),
        Index("ix_kb_documents_kb_id_sha256", "kb_id", "sha256"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    kb_id: Mapped[int] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"))
    # the file name as uploaded (for a folder, its path relative to that folder)
    source: Mapped[str] = mapped_column(String(1000))
    file_type: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    stored_path: Mapped[str] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(16), default=DocumentStatus.pending.value)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    title: Mapped[str] = mapped_column(String(500), default="", server_default="")
    chunk_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    char_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    duplicate_of: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    job_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, default=dict, server_default="{}"
    )


class KnowledgeChunk(Base):
    __tablename__ = "kb_chunks"
    __table_args__ = (
        Index("ix_kb_chunks_index_id_document_id_ord", "index_id", "document_id", "ord"),
        Index("ix_kb_chunks_document_id", "document_id"),
        # search filters (migration 0014)
        Index("ix_kb_chunks_source", "index_id", text("(metadata ->> 'source')")),
        Index("ix_kb_chunks_file_type", "index_id", text("(metadata ->> 'file_type')")),
        *[
            Index(
                f"ix_kb_chunks_hnsw_{dim}",
                text(f"(embedding::vector({dim})) vector_cosine_ops"),
                postgresql_using="hnsw",
                postgresql_where=text(f"dim = {dim}"),
            )
            for dim in MIGRATED_HNSW_DIMS
        ],
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    index_id: Mapped[int] = mapped_column(ForeignKey("kb_indexes.id", ondelete="CASCADE"))
    document_id: Mapped[int] = mapped_column(ForeignKey("kb_documents.id", ondelete="CASCADE"))
    ord: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    dim: Mapped[int] = mapped_column(SmallInteger)
    embedding: Mapped[Any] = mapped_column(Vector())
    length: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    edited: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    meta: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, default=dict, server_default="{}"
    )


class DocumentVector(Base):
    """A document's vector in an index: the sum of its enabled chunks' vectors (the direction of
    their mean, which is all a cosine needs) and how many there are. Kept by
    ``backend.knowledge.store`` in the transaction that changes the chunks, so hybrid search reads
    one row per candidate document instead of summing its chunks at query time. No row when the
    document has no enabled chunk in the index."""

    __tablename__ = "kb_document_vectors"

    index_id: Mapped[int] = mapped_column(
        ForeignKey("kb_indexes.id", ondelete="CASCADE"), primary_key=True
    )
    document_id: Mapped[int] = mapped_column(
        ForeignKey("kb_documents.id", ondelete="CASCADE"), primary_key=True
    )
    dim: Mapped[int] = mapped_column(SmallInteger)
    embedding: Mapped[Any] = mapped_column(Vector())
    n_chunks: Mapped[int] = mapped_column(Integer)


class ChunkTerm(Base):
    """A term's frequency in a chunk (and the chunk's length, so BM25 needs no join)."""

    __tablename__ = "kb_chunk_terms"
    __table_args__ = (
        Index("ix_kb_chunk_terms_index_id_term", "index_id", "term", "chunk_id", "tf", "dl"),
    )

    chunk_id: Mapped[int] = mapped_column(
        ForeignKey("kb_chunks.id", ondelete="CASCADE"), primary_key=True
    )
    term: Mapped[str] = mapped_column(String(100), primary_key=True)
    index_id: Mapped[int] = mapped_column(BigInteger)
    tf: Mapped[int] = mapped_column(Integer)
    dl: Mapped[int] = mapped_column(Integer)


class TermStat(Base):
    """In how many chunks of an index a term occurs (BM25's document frequency)."""

    __tablename__ = "kb_term_stats"

    index_id: Mapped[int] = mapped_column(
        ForeignKey("kb_indexes.id", ondelete="CASCADE"), primary_key=True
    )
    term: Mapped[str] = mapped_column(String(100), primary_key=True)
    df: Mapped[int] = mapped_column(Integer)
