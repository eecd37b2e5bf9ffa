"""The ingest pipeline: documents embedded together (one embedding call across documents) and
stored by a writer thread while the next ones embed, still one transaction per document."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from backend.accounts.actor import Actor
from backend.db import session_scope
from backend.knowledge import embedding
from backend.services import jobs
from backend.services import knowledge as kbs

SYSTEM = Actor.system()
TOPICS = ["bicycle repair", "sourdough baking", "tax returns", "bird watching", "chess openings",
          "roof insulation"]


class Recording:
    """The real bundled embedder, recording each call; refuses texts that mention POISON."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: list[list[str]] = []

    def dimension(self) -> int:
        return int(self.inner.dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        if any("POISON" in t for t in texts):
            raise RuntimeError("this text cannot be embedded")
        return np.asarray(self.inner.embed(texts))


@pytest.fixture()
def recording(monkeypatch: pytest.MonkeyPatch) -> Recording:
    rec = Recording(embedding.bundled_embedder())
    monkeypatch.setattr(embedding, "_cached", rec)
    return rec


def _doc(topic: str, extra: str = "") -> bytes:
    paras = [f"Notes on {topic}, part {p}: the checklist for {topic} says to prepare the tools, "
             f"read the guide twice and write down every step {p} for later. {extra}"
             for p in range(3)]
    return "\n\n".join(paras).encode()


def _chunk_counts(kb_id: int) -> dict[int, int]:
    with session_scope() as s:
        return dict(s.execute(text(  # type: ignore[arg-type]
            "SELECT c.document_id, count(*) FROM kb_chunks c JOIN kb_indexes i ON i.id = "
            "c.index_id WHERE i.kb_id = :kb GROUP BY c.document_id"), {"kb": kb_id}).all())


def test_documents_embedded_together_still_fail_and_commit_alone(recording: Recording) -> None:
    kb = kbs.create_knowledge_base(actor=SYSTEM, name="pipeline-groups", chunk_size=200,
                                   chunk_overlap=0)
    uploads = [(f"{t.replace(' ', '-')}.txt", _doc(t)) for t in TOPICS]
    uploads.insert(3, ("poisoned.txt", _doc("lost luggage", "POISON")))
    job = jobs.run_inline(actor=SYSTEM, job_id=kbs.ingest_files(
        actor=SYSTEM, kb=kb.id, uploads=uploads, enqueue=False))
    assert job.status == "succeeded", job.error
    assert job.result is not None
    assert job.result["ingested"] == len(TOPICS) and job.result["failed"] == 1
    # chunks of several documents went through one embedding call
    sources_per_call = [{t.split("part")[0] for t in call} for call in recording.calls]
    assert max(len(s) for s in sources_per_call) >= 3, sources_per_call
    docs = {d.source: d for d in kbs.list_documents(actor=SYSTEM, kb=kb.id)}
    bad = docs["poisoned.txt"]
    assert bad.status == "failed" and bad.chunk_count == 0
    assert bad.error and "poisoned.txt" in bad.error and "cannot be embedded" in bad.error
    counts = _chunk_counts(kb.id)
    assert bad.id not in counts
    for source, d in docs.items():
        if source != "poisoned.txt":
            assert d.status == "ready" and d.chunk_count >= 2
            assert counts[d.id] == d.chunk_count, source
    view = kbs.get_knowledge_base(actor=SYSTEM, kb=kb.id)
    assert view.index["chunks"] == sum(counts.values())
    hits = kbs.search(actor=SYSTEM, kb=kb.id, query="how to bake sourdough bread", k=3)
    assert hits and hits[0].source == "sourdough-baking.txt"
    kbs.delete_knowledge_base(actor=SYSTEM, kb=kb.id)


def test_same_content_twice_in_one_upload_is_stored_once(recording: Recording) -> None:
    """The second copy arrives while the first is still on its way to the database: it waits
    for it and is recorded as a duplicate, not indexed twice."""
    kb = kbs.create_knowledge_base(actor=SYSTEM, name="pipeline-dedup")
    uploads = [("a.txt", _doc("bicycle repair")), ("b.txt", _doc("chess openings")),
               ("copy-of-a.txt", _doc("bicycle repair"))]
    job = jobs.run_inline(actor=SYSTEM, job_id=kbs.ingest_files(
        actor=SYSTEM, kb=kb.id, uploads=uploads, enqueue=False))
    assert job.status == "succeeded", job.error
    assert job.result is not None
    assert job.result["ingested"] == 2 and job.result["duplicates"] == 1
    docs = {d.source: d for d in kbs.list_documents(actor=SYSTEM, kb=kb.id)}
    assert docs["copy-of-a.txt"].status == "duplicate"
    assert docs["copy-of-a.txt"].duplicate_of == docs["a.txt"].id
    assert set(_chunk_counts(kb.id)) == {docs["a.txt"].id, docs["b.txt"].id}
    kbs.delete_knowledge_base(actor=SYSTEM, kb=kb.id)
