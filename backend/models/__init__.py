"""All ORM models. Import this package to get every table registered on ``Base.metadata``."""

from backend.models.accounts import (
    ApiKey,
    AuditEntry,
    LoginAttempt,
    Membership,
    Secret,
    StudioSession,
    User,
)
from backend.models.agents import (
    Agent,
    AgentConversation,
    AgentFeedback,
    AgentMessage,
    AgentTrace,
    AgentTraceStep,
    AgentVersion,
    AllowedHost,
    ApiKeyLimit,
    HttpTool,
    McpServer,
)
from backend.models.base import Base
from backend.models.finetune import DatasetVersion, TrainingDataset
from backend.models.jobs import Job, JobLog, JobMetric, JobStatus, Worker
from backend.models.knowledge import (
    ChunkTerm,
    DocumentStatus,
    DocumentVector,
    KnowledgeBase,
    KnowledgeChunk,
    KnowledgeDocument,
    KnowledgeIndex,
    TermStat,
)
from backend.models.pretrain import Corpus, CorpusVersion
from backend.models.prompts import Prompt, PromptRun, PromptVersion
from backend.models.registry import Capability, ModelKind, RegisteredModel
from backend.models.workspaces import DEFAULT_WORKSPACE_ID, Workspace

__all__ = [
    "Agent",
    "AgentConversation",
    "AgentFeedback",
    "AgentMessage",
    "AgentTrace",
    "AgentTraceStep",
    "AgentVersion",
    "AllowedHost",
    "ApiKeyLimit",
    "HttpTool",
    "McpServer",
    "ApiKey",
    "AuditEntry",
    "LoginAttempt",
    "Membership",
    "Secret",
    "StudioSession",
    "User",
    "DEFAULT_WORKSPACE_ID",
    "DatasetVersion",
    "TrainingDataset",
    "Base",
    "Capability",
    "Corpus",
    "CorpusVersion",
    "ChunkTerm",
    "DocumentStatus",
    "KnowledgeBase",
    "KnowledgeChunk",
    "DocumentVector",
    "KnowledgeDocument",
    "KnowledgeIndex",
    "TermStat",
    "Job",
    "JobLog",
    "JobMetric",
    "JobStatus",
    "ModelKind",
    "Prompt",
    "PromptRun",
    "PromptVersion",
    "RegisteredModel",
    "Worker",
    "Workspace",
]
