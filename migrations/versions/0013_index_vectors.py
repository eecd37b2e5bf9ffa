"""knowledge: the kind of vectors an index was built with (float or int8, for the bundled
MiniLM), so a change of the embedding setting never mixes the two in one index

Revision ID: 0013_index_vectors
Revises: 0012_doc_vectors
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_index_vectors"
down_revision: str | None = "0012_doc_vectors"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # existing indexes: NULL, embedded as the setting says (as they always were)
    op.add_column("kb_indexes", sa.Column("vectors", sa.String(length=16), nullable=True))


def downgrade() -> None:
    op.drop_column("kb_indexes", "vectors")
