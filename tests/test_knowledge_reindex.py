"""Re-index under concurrent changes, on the real Postgres + pgvector and the bundled MiniLM: a
file ingested while a re-index runs (finishing before the switch, or started before it and
written after it), a file replaced meanwhile, a document or the whole base deleted meanwhile.
No document may be lost or left stale, no chunk left behind, and the BM25 statistics must
match the chunks.

The interleaving is made deterministic by running the other action from inside the embedder
call of the job under test (the jobs run in this process, on the real services)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import text

from backend.accounts.actor import Actor
from backend.db import session_scope
from backend.services import jobs
from backend.services import knowledge as kbs

SYSTEM = Actor.system()


def doc_text(topic: str, word: str, n: int = 5) -> bytes:
    return "\n\n".join(f"Section {i} of the {topic} notes: the {word} team checks item {i} "
                       f"every week and writes down what changed." for i in range(n)).encode()


@dataclass
class Hook:
    marker: str
    action: Callable[[], None]
    fired: bool = False


@dataclass
class Hooks:
    """Run an action the first time the embedder sees a text containing its marker."""

    pending: list[Hook] = field(default_factory=list)

    def on(self, marker: str, action: Callable[[], None]) -> Hook:
        hook = Hook(marker, action)
        self.pending.append(hook)
        return hook


class HookedEmbedder:
    def __init__(self, inner: Any, hooks: Hooks) -> None:
        self.inner, self.hooks = inner, hooks

    def embed(self, texts: list[str]) -> Any:
        for hook in list(self.hooks.pending):
            if any(hook.marker in t for t in texts):
                self.hooks.pending.remove(hook)
                hook.fired = True
                hook.action()
        return self.inner.embed(texts)


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hooks]:
    h = Hooks()
    real = kbs.embedder_for_index
    monkeypatch.setattr(kbs, "embedder_for_index",
                        lambda actor, name, vectors=None: HookedEmbedder(real(actor, name, vectors), h))
    yield h
    assert not h.pending, f"hooks that never ran: {[x.marker for x in h.pending]}"


def run(job_id: int) -> jobs.JobView:
    return jobs.run_inline(actor=SYSTEM, job_id=job_id)


def ingest(kb: int, uploads: list[tuple[str, bytes]]) -> jobs.JobView:
    job = run(kbs.ingest_files(actor=SYSTEM, kb=kb, uploads=uploads, enqueue=False))
    assert job.status == "succeeded", job.error
    return job


def new_base(name: str, uploads: list[tuple[str, bytes]]) -> kbs.KnowledgeBaseView:
    kb = kbs.create_knowledge_base(actor=SYSTEM, name=name, chunk_size=1000, chunk_overlap=0)
    ingest(kb.id, uploads)
    kbs.update_knowledge_base(actor=SYSTEM, kb=kb.id, chunk_size=200)
    return kbs.get_knowledge_base(actor=SYSTEM, kb=kb.id)


def docs(kb: int) -> dict[str, kbs.DocumentView]:
    return {d.source: d for d in kbs.list_documents(actor=SYSTEM, kb=kb)}


def chunks_by_index(document_id: int) -> dict[int, list[str]]:
    with session_scope() as s:
        rows = s.execute(text("SELECT index_id, text FROM kb_chunks WHERE document_id = :d "
                              "ORDER BY index_id, ord"), {"d": document_id}).all()
    out: dict[int, list[str]] = {}
    for ix, t in rows:
        out.setdefault(int(ix), []).append(t)
    return out


def check_statistics(kb_id: int) -> list[int]:
    """Each index's chunk count, total length and document frequencies match its chunks; returns
    the base's index ids."""
    with session_scope() as s:
        indexes = s.execute(text("SELECT id, n_chunks, total_length FROM kb_indexes "
                                 "WHERE kb_id = :k ORDER BY id"), {"k": kb_id}).all()
        for ix, n, total in indexes:
            real = s.execute(text("SELECT count(*), coalesce(sum(length), 0) FROM kb_chunks "
                                  "WHERE index_id = :i"), {"i": ix}).one()
            assert (n, total) == tuple(real), f"index {ix}: kept {(n, total)}, real {real}"
            wrong = s.execute(text(
                "SELECT count(*) FROM (SELECT term, df FROM kb_term_stats WHERE index_id = :i) s "
                "FULL JOIN (SELECT term, count(*) AS n FROM kb_chunk_terms WHERE index_id = :i "
                "GROUP BY term) c ON c.term = s.term "
                "WHERE coalesce(s.df, 0) <> coalesce(c.n, 0)"), {"i": ix}).scalar()
            assert wrong == 0, f"index {ix}: {wrong} document frequencies off"
    return [int(r[0]) for r in indexes]


def test_file_ingested_during_reindex_is_in_the_new_index(hooks: Hooks) -> None:
    kb = new_base("reindex-ingest-during", [("alpha.txt", doc_text("alpha", "ALPHA"))])
    old_index = kb.index["id"]
    job_id = kbs.reindex(actor=SYSTEM, kb=kb.id, enqueue=False)
    # while the re-index embeds alpha, a new file is ingested (into the active, old index)
    hooks.on("ALPHA", lambda: ingest(kb.id, [("bravo.txt", doc_text("bravo", "BRAVO"))]))
    job = run(job_id)
    assert job.status == "succeeded", job.error
    view = kbs.get_knowledge_base(actor=SYSTEM, kb=kb.id)
    assert view.index["id"] != old_index and view.index["chunk_size"] == 200
    assert check_statistics(kb.id) == [view.index["id"]]
    bravo = docs(kb.id)["bravo.txt"]
    assert bravo.status == "ready"
    in_new = chunks_by_index(bravo.id)
    assert list(in_new) == [view.index["id"]] and len(in_new[view.index["id"]]) > 1
    assert bravo.chunk_count == len(in_new[view.index["id"]])
    hits = kbs.search(actor=SYSTEM, kb=kb.id, query="what does the BRAVO team check", k=3)
    assert hits and hits[0].source == "bravo.txt"


def test_ingest_that_outlasts_a_reindex_goes_into_the_new_index(hooks: Hooks) -> None:
    kb = new_base("reindex-ingest-across", [("alpha.txt", doc_text("alpha", "ALPHA"))])
    reindex_id = kbs.reindex(actor=SYSTEM, kb=kb.id, enqueue=False)
    outcome: dict[str, jobs.JobView] = {}

    def reindex_now() -> None:
        outcome["reindex"] = run(reindex_id)

    # the ingest embeds bravo for the old index; the whole re-index runs and switches meanwhile
    hooks.on("BRAVO", reindex_now)
    ingest(kb.id, [("bravo.txt", doc_text("bravo", "BRAVO"))])
    assert outcome["reindex"].status == "succeeded", outcome["reindex"].error
    view = kbs.get_knowledge_base(actor=SYSTEM, kb=kb.id)
    assert view.index["chunk_size"] == 200
    assert check_statistics(kb.id) == [view.index["id"]]
    for source in ("alpha.txt", "bravo.txt"):
        d = docs(kb.id)[source]
        assert d.status == "ready", d.error
        in_new = chunks_by_index(d.id)
        assert list(in_new) == [view.index["id"]]
        assert d.chunk_count == len(in_new[view.index["id"]])
        assert all(len(t) <= 200 for t in in_new[view.index["id"]])


def test_file_replaced_during_reindex_keeps_the_new_version(hooks: Hooks) -> None:
    kb = new_base("reindex-replace", [("alpha.txt", doc_text("alpha", "MONDAY")),
                                      ("other.txt", doc_text("other", "OTHER"))])
    job_id = kbs.reindex(actor=SYSTEM, kb=kb.id, enqueue=False)
    hooks.on("MONDAY", lambda: ingest(kb.id, [("alpha.txt", doc_text("alpha", "THURSDAY"))]))
    job = run(job_id)
    assert job.status == "succeeded", job.error
    view = kbs.get_knowledge_base(actor=SYSTEM, kb=kb.id)
    assert check_statistics(kb.id) == [view.index["id"]]
    alpha = docs(kb.id)["alpha.txt"]
    texts = chunks_by_index(alpha.id)[view.index["id"]]
    assert all("THURSDAY" in t for t in texts) and not any("MONDAY" in t for t in texts)
    assert alpha.chunk_count == len(texts)
    assert not kbs.search(actor=SYSTEM, kb=kb.id, query="MONDAY", k=3, mode="keyword")


def test_documents_deleted_during_reindex_leave_no_chunks(hooks: Hooks) -> None:
    kb = new_base("reindex-delete-docs", [("a.txt", doc_text("first", "ALPHA")),
                                          ("b.txt", doc_text("second", "BRAVO")),
                                          ("c.txt", doc_text("third", "CHARLIE"))])
    before = docs(kb.id)
    job_id = kbs.reindex(actor=SYSTEM, kb=kb.id, enqueue=False)
    # a: deleted while the re-index embeds it (before its new chunks are written);
    # b: deleted once it is in the new index (while c is embedded)
    hooks.on("ALPHA", lambda: kbs.delete_document(actor=SYSTEM, kb=kb.id,
                                                  document_id=before["a.txt"].id))
    hooks.on("CHARLIE", lambda: kbs.delete_document(actor=SYSTEM, kb=kb.id,
                                                    document_id=before["b.txt"].id))
    job = run(job_id)
    assert job.status == "succeeded", job.error
    view = kbs.get_knowledge_base(actor=SYSTEM, kb=kb.id)
    assert check_statistics(kb.id) == [view.index["id"]]
    assert set(docs(kb.id)) == {"c.txt"}
    for gone in ("a.txt", "b.txt"):
        assert chunks_by_index(before[gone].id) == {}
    assert list(chunks_by_index(before["c.txt"].id)) == [view.index["id"]]
    assert not kbs.search(actor=SYSTEM, kb=kb.id, query="BRAVO ALPHA", k=3, mode="keyword")


def test_base_deleted_during_reindex_leaves_nothing(hooks: Hooks) -> None:
    kb = new_base("reindex-delete-base", [("a.txt", doc_text("first", "ALPHA")),
                                          ("b.txt", doc_text("second", "BRAVO"))])
    job_id = kbs.reindex(actor=SYSTEM, kb=kb.id, enqueue=False)
    # the base goes once the new index holds a's chunks, while b is embedded
    hooks.on("BRAVO", lambda: kbs.delete_knowledge_base(actor=SYSTEM, kb=kb.id))
    job = run(job_id)
    assert job.status == "failed" and "deleted" in (job.error or ""), job.error
    with session_scope() as s:
        assert s.execute(text("SELECT count(*) FROM kb_indexes WHERE kb_id = :k"),
                         {"k": kb.id}).scalar() == 0
        assert s.execute(text("SELECT count(*) FROM kb_documents WHERE kb_id = :k"),
                         {"k": kb.id}).scalar() == 0
        # no chunk, term or statistic of any index the base ever had
        leftovers = s.execute(text(
            "SELECT (SELECT count(*) FROM kb_chunks c LEFT JOIN kb_indexes i ON i.id = "
            "c.index_id WHERE i.id IS NULL OR i.kb_id = :k) + "
            "(SELECT count(*) FROM kb_chunk_terms t LEFT JOIN kb_indexes i ON i.id = "
            "t.index_id WHERE i.id IS NULL) + "
            "(SELECT count(*) FROM kb_term_stats t LEFT JOIN kb_indexes i ON i.id = "
            "t.index_id WHERE i.id IS NULL)"), {"k": kb.id}).scalar()
        assert leftovers == 0
