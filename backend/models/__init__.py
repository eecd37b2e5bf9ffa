"""All ORM models. Import this package to get every table registered on ``Base.metadata``."""

from backend.models.base import Base
from backend.models.jobs import Job, JobLog, JobMetric, JobStatus, Worker
from backend.models.workspaces import DEFAULT_WORKSPACE_ID, Workspace

__all__ = [
    "DEFAULT_WORKSPACE_ID",
    "Base",
    "Job",
    "JobLog",
    "JobMetric",
    "JobStatus",
    "Worker",
    "Workspace",
]
