"""jobs: the title the system writes as a template with its values, so the studio can show it in
the reader's language (``title`` stays the English text for the CLI, the API and search)

Revision ID: 0015_job_title_template
Revises: 0014_chunk_filters
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015_job_title_template"
down_revision: str | None = "0014_chunk_filters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("title_template", sa.String(length=300), nullable=True))
    op.add_column("jobs", sa.Column("title_args", postgresql.JSONB(astext_type=sa.Text()),
                                    nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "title_args")
    op.drop_column("jobs", "title_template")
