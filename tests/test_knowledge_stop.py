"""An ingest that is told to stop mid-embedding (cancelled, worker shutting down, or the job lost
to another runner after a database outage) stops: it marks no document failed. The stop
exceptions are recognised by type (JobLost was left out when they were compared by name)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from backend.accounts.actor import Actor
from backend.db import session_scope
from backend.jobs.context import JobCancelled, JobInterrupted, JobLost, LocalContext
from backend.knowledge.ingest import FileItem, ingest_files
from backend.models.jobs import Job
from backend.models.knowledge import KnowledgeDocument
from backend.services import knowledge as kbs

SYSTEM = Actor.system()


class Stopping:
    name = "stopping"

    def __init__(self, exc: type[BaseException]) -> None:
        self.exc = exc

    def dimension(self) -> int:
        return 384

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise self.exc("stop here")


@pytest.mark.parametrize("exc", [JobLost, JobCancelled, JobInterrupted])
def test_a_stop_mid_embedding_marks_no_document_failed(exc: type[BaseException],
                                                       tmp_path: Path) -> None:
    name = f"stop-{uuid.uuid4().hex[:6]}"
    kb = kbs.create_knowledge_base(actor=SYSTEM, name=name)
    topics = ["bicycle repair", "sourdough baking", "roof insulation"]
    uploads = [(f"doc{i}.md", f"# {t.title()}\n\nThe {t} checklist says to prepare the tools, "
                f"read the {t} manual and write down each {t} step.".encode())
               for i, t in enumerate(topics)]
    job_id = kbs.ingest_files(actor=SYSTEM, kb=name, uploads=uploads, enqueue=False)
    with session_scope() as session:
        params = session.get(Job, job_id).params  # type: ignore[union-attr]
    items = [FileItem(**f) for f in params["files"]]
    try:
        ingest_files(LocalContext(run_dir=tmp_path), kb_id=kb.id, items=items,
                     embedder_for_index=lambda ix: Stopping(exc), max_bytes=10 << 20)
        raised = None
    except BaseException as e:  # noqa: BLE001
        raised = e
    with session_scope() as session:
        rows = session.execute(select(KnowledgeDocument.status, KnowledgeDocument.error).where(
            KnowledgeDocument.kb_id == kb.id)).all()
    assert "failed" not in [status for status, _ in rows], rows
    assert isinstance(raised, exc)
