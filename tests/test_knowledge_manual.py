"""A generated HTML manual through the services: its shared navigation, banner and footer are
not indexed, no chunk is shorter than the minimum (at 300 characters too, after a re-index),
the right page comes first with a relevance that follows the order shown, and a re-index
reports each file's progress and a log line for it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from backend.accounts.actor import Actor
from backend.jobs.context import LocalContext
from backend.knowledge.splitting import min_chunk_chars
from backend.services import jobs
from backend.services import knowledge as kbs
from backend.services.knowledge_jobs import run_reindex
from tests.knowledge_files import NAVIGATION_TEXT, manual_pages

SYSTEM = Actor.system()
QUESTION = "How long are backups kept before they are deleted?"


@pytest.fixture(scope="module")
def kb_id() -> int:
    kb = kbs.create_knowledge_base(actor=SYSTEM, name=f"manual-{uuid.uuid4().hex[:6]}")
    job_id = kbs.ingest_files(actor=SYSTEM, kb=kb.id, uploads=list(manual_pages().items()),
                              enqueue=False)
    job = jobs.run_inline(actor=SYSTEM, job_id=job_id)
    assert job.status == "succeeded", job.error
    logs = [r.message for r in jobs.job_log_tail(actor=SYSTEM, job_id=job_id)]
    assert any("left out of the index" in m for m in logs), logs
    assert sum("chunks (" in m for m in logs) == 15, logs
    return kb.id


def _assert_clean(kb_id: int, size: int) -> None:
    chunks = kbs.list_chunks(actor=SYSTEM, kb=kb_id)
    assert len({c.document_id for c in chunks}) == 15
    for c in chunks:
        for junk in NAVIGATION_TEXT:
            assert junk not in c.text, (c.source, junk, c.text)
        assert len(c.text) >= min_chunk_chars(size), (c.source, c.text)


@pytest.mark.parametrize("mode", ["hybrid", "vector", "keyword"])
def test_the_right_page_first_with_relevance_in_the_order_shown(kb_id: int, mode: str) -> None:
    _assert_clean(kb_id, 1000)
    hits = kbs.search(actor=SYSTEM, kb=kb_id, query=QUESTION, k=5, mode=mode)
    assert hits[0].source == "backup.html", [h.source for h in hits]
    shown = [h.relevance for h in hits]
    assert all(0.0 <= r <= 1.0 for r in shown) and shown == sorted(shown, reverse=True)
    assert shown[0] > 0.2
    if mode != "keyword":  # the cosine similarity, at most
        assert shown[0] <= hits[0].metadata.get("similarity", hits[0].score) + 1e-4


def test_reindex_at_300_characters_reports_each_file(kb_id: int, tmp_path: Path) -> None:
    kbs.update_knowledge_base(actor=SYSTEM, kb=kb_id, chunk_size=300, chunk_overlap=50)
    stages: list[tuple[float, str | None]] = []
    ctx = LocalContext(run_dir=tmp_path, on_progress=lambda f, s: stages.append((f, s)))
    out = run_reindex(ctx, {"kb_id": kb_id})
    assert out["documents"] == 15 and out["failed"] == 0
    fractions = [f for f, s in stages if s and s.startswith("file")]
    assert len(fractions) == 15 and fractions == sorted(fractions) and fractions[-1] > 0.9
    assert sum("chunks (" in m for m in ctx.logs) == 15, ctx.logs
    assert any("15/15 files" in m for m in ctx.logs)
    _assert_clean(kb_id, 300)
    hits = kbs.search(actor=SYSTEM, kb=kb_id, query=QUESTION, k=5)
    assert hits[0].source == "backup.html"
