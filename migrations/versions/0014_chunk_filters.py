"""knowledge: indexes on the chunk metadata that search filters by (source, file type), so a
narrow filter reads its chunks by key instead of testing every chunk of the base

Revision ID: 0014_chunk_filters
Revises: 0013_index_vectors
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014_chunk_filters"
down_revision: str | None = "0013_index_vectors"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_kb_chunks_source ON kb_chunks "
                "(index_id, (metadata ->> 'source'))")
    op.execute("CREATE INDEX ix_kb_chunks_file_type ON kb_chunks "
                "(index_id, (metadata ->> 'file_type'))")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_kb_chunks_file_type")
    op.execute("DROP INDEX IF EXISTS ix_kb_chunks_source")
