"""Ingest on a real Celery worker, killed in the middle: no half-indexed document survives, and
a retry finishes the rest without redoing the finished files."""

from __future__ import annotations

import signal
import time

import pytest
from sqlalchemy import text

from backend.accounts.actor import Actor
from backend.db import session_scope
from backend.services import jobs
from backend.services import knowledge as kbs

SYSTEM = Actor.system()
NAMES = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett", "kilo", "lima"]


def _consistent(kb_id: int) -> dict[str, kbs.DocumentView]:
    """Every document has exactly its recorded chunks: none for unfinished ones."""
    docs = {d.source: d for d in kbs.list_documents(actor=SYSTEM, kb=kb_id)}
    with session_scope() as s:
        counts = dict(s.execute(text(
            "SELECT document_id, count(*) FROM kb_chunks WHERE document_id = ANY(:d) "
            "GROUP BY document_id"), {"d": [d.id for d in docs.values()]}).all())
        index = kbs.get_knowledge_base(actor=SYSTEM, kb=kb_id).index
        n_terms = s.execute(text("SELECT count(DISTINCT chunk_id) FROM kb_chunk_terms "
                                 "WHERE index_id = :i"), {"i": index["id"]}).scalar()
    for d in docs.values():
        expected = d.chunk_count if d.status == "ready" else 0
        assert counts.get(d.id, 0) == expected, (d.source, d.status, counts.get(d.id))
    assert index["chunks"] == sum(counts.values()) == n_terms
    return docs


@pytest.mark.slow
def test_killed_worker_leaves_no_half_document_and_retry_finishes(worker_factory) -> None:
    kb = kbs.create_knowledge_base(actor=SYSTEM, name="killed-mid-ingest", chunk_size=300,
                                   chunk_overlap=0)
    uploads = []
    for i in range(12):
        paragraphs = [f"Document {i}, paragraph {p}: the maintenance schedule for machine "
                      f"{NAMES[i]} unit {p} requires oiling the bearings and checking belt tension {p} "
                      "times a quarter, logged in the plant register." for p in range(8)]
        uploads.append((f"doc-{i:02d}.txt", "\n\n".join(paragraphs).encode()))
    w = worker_factory("kb-killed", queues="cpu")
    job_id = kbs.ingest_files(actor=SYSTEM, kb=kb.id, uploads=uploads)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready = [d for d in kbs.list_documents(actor=SYSTEM, kb=kb.id) if d.status == "ready"]
        if len(ready) >= 2:
            break
        time.sleep(0.1)
    w.kill(signal.SIGKILL)
    docs = _consistent(kb.id)
    finished = {s: d for s, d in docs.items() if d.status == "ready"}
    assert 2 <= len(finished) < 12, "the kill should land in the middle of the ingest"
    # the job is marked interrupted once its heartbeat stops
    job = jobs.wait_for_job(actor=SYSTEM, job_id=job_id, timeout_s=60)
    assert job.status in ("interrupted", "failed"), job.status
    retry = jobs.retry_job(actor=SYSTEM, job_id=job_id)
    w2 = worker_factory("kb-retry", queues="cpu")
    done = jobs.wait_for_job(actor=SYSTEM, job_id=retry.id, timeout_s=240)
    w2.kill(signal.SIGTERM)
    assert done.status == "succeeded", done.error
    assert done.result is not None
    assert done.result["unchanged"] == len(finished)
    assert done.result["ingested"] == 12 - len(finished)
    docs = _consistent(kb.id)
    assert {d.status for d in docs.values()} == {"ready"} and len(docs) == 12
    for source, before in finished.items():  # finished files were not redone
        assert docs[source].job_id == job_id and docs[source].updated_at == before.updated_at
    hits = kbs.search(actor=SYSTEM, kb=kb.id, query="bearings of machine kilo", k=3)
    assert hits and hits[0].source == "doc-10.txt"


@pytest.mark.slow
def test_onnx_export_gives_the_same_vectors(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The bundled MiniLM exported to ONNX once under the data folder, checked against
    sentence-transformers: the same vectors, and the export is reused."""
    import numpy as np

    from backend.config import reset_settings
    from backend.knowledge import embedding
    from backend.llm.embeddings import LocalEmbedder

    monkeypatch.setenv("STUDIO_EMBEDDING_BACKEND", "onnx")
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path))
    reset_settings()
    try:
        onnx = embedding._onnx_embedder()
        assert isinstance(onnx, embedding.OnnxMiniLM)
        assert list(tmp_path.glob("cache/onnx/*/model.onnx"))
        texts = ["How do I read a file line by line?", "Der Zug fährt um acht Uhr.",
                 "员工出差的住宿费用每晚不超过五百元。", "x " * 400]
        ref = LocalEmbedder(None, device_preference="cpu").embed(texts)
        got = onnx.embed(texts)
        assert got.shape == ref.shape
        assert float(np.min(np.sum(ref * got, axis=1))) > 0.9999
        again = embedding._onnx_embedder()  # reuses the export
        assert again is not None and np.allclose(again.embed(texts[:1]), got[:1], atol=1e-5)
    finally:
        monkeypatch.undo()
        reset_settings()


@pytest.mark.slow
def test_int8_embedder_stays_close_to_float(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """STUDIO_EMBEDDING_BACKEND=onnx-int8 quantizes the export once; its vectors stay close to
    the float ones and rank a matching passage first."""
    import numpy as np

    from backend.config import reset_settings
    from backend.knowledge import embedding

    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path))
    try:
        monkeypatch.setenv("STUDIO_EMBEDDING_BACKEND", "onnx")
        reset_settings()
        fp32 = embedding._onnx_embedder()
        monkeypatch.setenv("STUDIO_EMBEDDING_BACKEND", "onnx-int8")
        reset_settings()
        int8 = embedding._onnx_embedder()
        assert fp32 is not None and int8 is not None
        assert list(tmp_path.glob("cache/onnx/*/model.int8.onnx"))
        texts = ["Employees get 25 days of paid vacation a year.",
                 "The server restarts every night at two.", "员工出差的住宿费用每晚不超过五百元。"]
        ref, got = fp32.embed(texts), int8.embed(texts)
        assert float(np.min(np.sum(ref * got, axis=1))) > 0.97
        query = int8.embed(["how many vacation days do I get"])[0]
        assert int(np.argmax(got @ query)) == 0
    finally:
        monkeypatch.undo()
        reset_settings()


def test_bf16_embedder_keeps_the_float_vectors(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """STUDIO_EMBEDDING_BACKEND=bf16 (auto's choice on CPUs with bfloat16 arithmetic): the
    matrix products in bfloat16, the vectors within cosine 0.9999 of sentence-transformers'
    float32 ones, so an index built with either keeps working with the other."""
    import numpy as np

    from backend.config import reset_settings
    from backend.knowledge import embedding
    from backend.llm.embeddings import LocalEmbedder

    monkeypatch.setattr(embedding, "_cached", None)
    monkeypatch.setenv("STUDIO_EMBEDDING_BACKEND", "bf16")
    reset_settings()
    try:
        emb = embedding.bundled_embedder()
        assert isinstance(emb, embedding.Bf16MiniLM) and emb.variant == "torch-bf16"
        texts = ["How do I read a file line by line?", "Der Zug fährt um acht Uhr.",
                 "员工出差的住宿费用每晚不超过五百元。", "x " * 400,
                 "os.walk(top, topdown=True) yields a 3-tuple (dirpath, dirnames, filenames) for "
                 "each directory in the tree rooted at top."]
        ref = LocalEmbedder(None, device_preference="cpu").embed(texts)
        got = embedding.PooledMiniLM.embed(emb, texts)  # the bfloat16 path itself
        assert got.shape == ref.shape and got.dtype == np.float32
        assert float(np.min(np.sum(ref * got, axis=1))) > embedding.BF16_MIN_COSINE
        # one text alone or in a batch of others (padding): the same vector
        alone = embedding.PooledMiniLM.embed(emb, texts[:1])
        assert float(alone[0] @ got[0]) > 0.99999
        assert emb.embed([]).shape == (0, 384)
        # a batch goes through bfloat16; a search's question or two through the ONNX export
        assert np.array_equal(emb.embed(texts * 2)[:len(texts)], got)
        small = emb.embed(texts[:2])
        assert isinstance(emb._small, embedding.OnnxMiniLM)
        assert float(np.min(np.sum(small * got[:2], axis=1))) > embedding.BF16_MIN_COSINE
    finally:
        monkeypatch.undo()
        reset_settings()


def test_auto_backend_takes_bf16_only_where_the_cpu_computes_it(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """auto: bfloat16 where the CPU has it in hardware (emulated bfloat16 is slower than float32);
    onnx and torch keep float32."""
    from backend.config import reset_settings
    from backend.knowledge import embedding

    made: list[str] = []
    monkeypatch.setattr(embedding, "_bf16_embedder", lambda: made.append("bf16") or "bf16")
    monkeypatch.setattr(embedding, "_onnx_embedder", lambda: made.append("onnx") or "onnx")
    try:
        for backend, native, want in [("auto", True, "bf16"), ("auto", False, "onnx"),
                                      ("bf16", False, "bf16"), ("onnx", True, "onnx")]:
            monkeypatch.setattr(embedding, "_cached", None)
            monkeypatch.setattr(embedding, "native_bf16", lambda n=native: n)
            monkeypatch.setenv("STUDIO_EMBEDDING_BACKEND", backend)
            reset_settings()
            assert embedding.bundled_embedder() == want, (backend, native)
        monkeypatch.setattr(embedding, "_cached", None)
        monkeypatch.setattr(embedding, "_bf16_embedder", lambda: None)  # probe failed
        monkeypatch.setenv("STUDIO_EMBEDDING_BACKEND", "auto")
        monkeypatch.setattr(embedding, "native_bf16", lambda: True)
        reset_settings()
        assert embedding.bundled_embedder() == "onnx"
    finally:
        monkeypatch.undo()
        reset_settings()


def test_warm_up_embeds_a_question_once_and_never_raises(monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """A cpu worker warms the bundled embedder up at start (on a bfloat16 CPU that makes the
    ONNX export questions use); a failure is logged for the first search to report."""
    from backend.knowledge import embedding

    calls: list[list[str]] = []

    class Recorder:
        def embed(self, texts: list[str]) -> object:
            calls.append(list(texts))
            return None

    monkeypatch.setattr(embedding, "bundled_embedder", lambda: Recorder())
    embedding.warm_up_in_background().join(timeout=30)
    assert calls == [["warm-up question"]]

    def broken() -> object:
        raise RuntimeError("no model here")

    monkeypatch.setattr(embedding, "bundled_embedder", broken)
    embedding.warm_up()
    assert "could not warm up the embedder" in caplog.text


def test_an_index_keeps_the_kind_of_vectors_it_was_built_with(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A base built under onnx-int8 records int8 vectors; after the setting goes back to float
    its questions and new chunks are still embedded with int8 (never mixed in one index), the
    view offers a re-index, and the re-index builds a float index."""
    import numpy as np

    from backend.config import reset_settings
    from backend.knowledge import embedding

    class Fake:
        def __init__(self, kind: str) -> None:
            self.kind = kind
            self.seen: list[str] = []

        def embed(self, texts: list[str]) -> np.ndarray:
            self.seen.extend(texts)
            out = np.zeros((len(texts), 384), dtype=np.float32)
            out[:, 0 if self.kind == "float" else 1] = 1.0
            return out

    int8, fp = Fake("int8"), Fake("float")
    monkeypatch.setattr(embedding, "_onnx_embedder",
                        lambda int8_=None, **kw: int8 if kw.get("int8", int8_) else fp)
    monkeypatch.setattr(embedding, "_others", {})
    try:
        monkeypatch.setenv("STUDIO_EMBEDDING_BACKEND", "onnx-int8")
        monkeypatch.setattr(embedding, "_cached", None)
        reset_settings()
        kb = kbs.create_knowledge_base(actor=SYSTEM, name="int8-base")
        assert kb.index["vectors"] == "int8" and not kb.reindex_needed

        monkeypatch.setenv("STUDIO_EMBEDDING_BACKEND", "onnx")
        monkeypatch.setattr(embedding, "_cached", None)
        reset_settings()
        assert embedding.bundled_embedder() is fp
        assert embedding.bundled_embedder("int8") is int8
        view = kbs.get_knowledge_base(actor=SYSTEM, kb=kb.id)
        assert view.index["vectors"] == "int8" and view.reindex_needed
        job = jobs.run_inline(actor=SYSTEM, job_id=kbs.ingest_files(
            actor=SYSTEM, kb=kb.id, uploads=[("note.txt", b"The printer is on floor two.")],
            enqueue=False))
        assert job.status == "succeeded", job.error
        assert any("printer" in t for t in int8.seen) and not fp.seen
        kbs.search(actor=SYSTEM, kb=kb.id, query="where is the printer", mode="vector")
        assert "where is the printer" in int8.seen and not fp.seen

        job = jobs.run_inline(actor=SYSTEM, job_id=kbs.reindex(actor=SYSTEM, kb=kb.id,
                                                                enqueue=False))
        assert job.status == "succeeded", job.error
        view = kbs.get_knowledge_base(actor=SYSTEM, kb=kb.id)
        assert view.index["vectors"] == "float" and not view.reindex_needed
        assert any("printer" in t for t in fp.seen)

        # an index from before kinds were recorded follows the setting, as it always did
        with session_scope() as s:
            s.execute(text("UPDATE kb_indexes SET vectors = NULL WHERE id = :i"),
                      {"i": view.index["id"]})
        monkeypatch.setenv("STUDIO_EMBEDDING_BACKEND", "onnx-int8")
        monkeypatch.setattr(embedding, "_cached", int8)
        reset_settings()
        view = kbs.get_knowledge_base(actor=SYSTEM, kb=kb.id)
        assert view.index["vectors"] is None and not view.reindex_needed
        kbs.search(actor=SYSTEM, kb=kb.id, query="printer floor", mode="vector")
        assert "printer floor" in int8.seen and "printer floor" not in fp.seen
    finally:
        monkeypatch.undo()
        reset_settings()


def test_tasks_start_after_the_warm_up(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A task on a worker just started waits for the embedder's warm-up thread (two threads
    resolving transformers' lazy classes at once could get a half-imported module)."""
    import threading
    import time

    from backend.worker import lifecycle

    warm = threading.Thread(target=time.sleep, args=(0.3,), daemon=True)
    monkeypatch.setitem(lifecycle._state, "warm_up", warm)
    warm.start()
    t = time.perf_counter()
    lifecycle._after_warm_up(task_id="x")
    assert not warm.is_alive() and time.perf_counter() - t >= 0.2
    t = time.perf_counter()
    lifecycle._after_warm_up(task_id="y")  # over: no wait
    assert time.perf_counter() - t < 0.1
