"""jobs: when a queued job's message was last sent to Redis (reconciliation re-sends lost ones)

Revision ID: 0005_jobs
Revises: 0007_knowledge
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_jobs"
down_revision: str | None = "0007_knowledge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_jobs_queued_enqueued_at", "jobs", ["enqueued_at"],
                    postgresql_where=sa.text("status = 'queued'"))


def downgrade() -> None:
    op.drop_index("ix_jobs_queued_enqueued_at", table_name="jobs")
    op.drop_column("jobs", "enqueued_at")
