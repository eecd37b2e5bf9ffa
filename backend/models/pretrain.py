"""Corpora for pre-training: a named corpus owned by a workspace, and its versions.

A version is built once from the files given (cleaned, de-duplicated, split into train and
held-out documents) and never changes: its folder under the data dir holds ``train.jsonl``,
``val.jsonl``, the tokenizers trained on it and the memory-mapped token files made from it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backend.models.base import Base, IdMixin, TimestampMixin
from backend.models.workspaces import WorkspaceOwnedMixin


class Corpus(IdMixin, WorkspaceOwnedMixin, TimestampMixin, Base):
    __tablename__ = "corpora"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    versions: Mapped[list[CorpusVersion]] = relationship(
        back_populates="corpus", cascade="all, delete-orphan", order_by="CorpusVersion.version",
        passive_deletes=True,
    )


class CorpusVersion(IdMixin, TimestampMixin, Base):
    __tablename__ = "corpus_versions"
    __table_args__ = (UniqueConstraint("corpus_id", "version"),)

    corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    # where the cleaned documents live: <folder>/train.jsonl and <folder>/val.jsonl
    folder: Mapped[str] = mapped_column(String(2000))
    # what went in: [{"source": "docs.zip", "kind": "zip"}, {"knowledge_base": "faq"}, ...]
    sources: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    heldout_fraction: Mapped[float] = mapped_column(Float, default=0.05)
    documents: Mapped[int] = mapped_column(Integer, default=0)
    heldout_documents: Mapped[int] = mapped_column(Integer, default=0)
    characters: Mapped[int] = mapped_column(BigInteger, default=0)
    # files read/skipped, duplicates removed, languages, byte-level token estimate ...
    stats: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    # tokenizer key -> {"tokenizer": folder, "train": path, "val": path, "dtype": "uint16",
    #                   "train_tokens": n, "val_tokens": n}: token files made once, then reused
    token_files: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_by: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    corpus: Mapped[Corpus] = relationship(back_populates="versions")
