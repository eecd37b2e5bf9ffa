"""The stored document vectors (``kb_document_vectors``) hybrid search reads, on the real
Postgres + pgvector and the bundled MiniLM: after every way chunks change (ingest, edit,
disable/enable, a replaced file, a deleted document, a re-index) each document's row is the sum
of its enabled chunks' vectors (so its direction is their mean's), and the migration fills it
for chunks stored before it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from backend import migrate
from backend.accounts.actor import Actor
from backend.db import session_scope
from backend.services import jobs
from backend.services import knowledge as kbs

SYSTEM = Actor.system()


def _vec(v: object) -> np.ndarray:
    if isinstance(v, str):
        v = json.loads(v)
    return np.asarray(v, dtype=np.float64)


def ingest(kb: int, uploads: list[tuple[str, bytes]]) -> None:
    job = jobs.run_inline(actor=SYSTEM, job_id=kbs.ingest_files(
        actor=SYSTEM, kb=kb, uploads=uploads, enqueue=False))
    assert job.status == "succeeded", job.error


def note(topic: str, n: int) -> bytes:
    return "\n\n".join(f"Part {i} about {topic}: the {topic} crew writes down item {i} with care "
                       f"and a long sentence so that every part is its own chunk here."
                       for i in range(n)).encode()


def check(conn_or_session: object, kb_id: int | None = None) -> dict[tuple[int, int], int]:
    """Every stored row against the enabled chunks it stands for; {(index, doc): n_chunks}."""
    where = "WHERE index_id IN (SELECT id FROM kb_indexes WHERE kb_id = :kb)" if kb_id else ""
    params = {"kb": kb_id} if kb_id else {}
    chunks = conn_or_session.execute(text(  # type: ignore[attr-defined]
        f"SELECT index_id, document_id, embedding FROM kb_chunks {where} "
        f"{'AND' if where else 'WHERE'} enabled"), params).all()
    stored = {(int(r[0]), int(r[1])): (_vec(r[2]), int(r[3]), int(r[4]))
              for r in conn_or_session.execute(text(  # type: ignore[attr-defined]
                  f"SELECT index_id, document_id, embedding, n_chunks, dim "
                  f"FROM kb_document_vectors {where}"), params).all()}
    groups: dict[tuple[int, int], list[np.ndarray]] = {}
    for i, d, e in chunks:
        groups.setdefault((int(i), int(d)), []).append(_vec(e))
    assert set(stored) == set(groups)
    for key, vecs in groups.items():
        mean = np.mean(vecs, axis=0)
        got, n, dim = stored[key]
        assert n == len(vecs) and dim == len(mean)
        assert got / np.linalg.norm(got) == pytest.approx(mean / np.linalg.norm(mean), abs=1e-5)
    return {k: v[1] for k, v in stored.items()}


def test_stored_vectors_follow_every_chunk_change() -> None:
    kb = kbs.create_knowledge_base(actor=SYSTEM, name="docvec-changes", chunk_size=200,
                                   chunk_overlap=0)
    ingest(kb.id, [("boats.txt", note("sailing boats", 6)), ("bread.txt", note("baking", 4))])
    docs = {d.source: d.id for d in kbs.list_documents(actor=SYSTEM, kb=kb.id)}
    with session_scope() as s:
        rows = check(s, kb.id)
    index_id = kbs.get_knowledge_base(actor=SYSTEM, kb=kb.id).index["id"]
    n_boats = rows[(index_id, docs["boats.txt"])]
    assert n_boats >= 3 and rows[(index_id, docs["bread.txt"])] >= 2
    before = rows

    # an edited chunk is re-embedded: its document's vector moves
    chunk = next(c for c in kbs.list_chunks(actor=SYSTEM, kb=kb.id) if c.source == "boats.txt")
    with session_scope() as s:
        old = _vec(s.execute(text("SELECT embedding FROM kb_document_vectors WHERE "
                                  "document_id = :d"), {"d": docs["boats.txt"]}).scalar())
    kbs.update_chunk(actor=SYSTEM, kb=kb.id, chunk_id=chunk.id,
                     text="Quantum chromodynamics of gluons, nothing about boats at all.")
    with session_scope() as s:
        assert check(s, kb.id) == before
        new = _vec(s.execute(text("SELECT embedding FROM kb_document_vectors WHERE "
                                  "document_id = :d"), {"d": docs["boats.txt"]}).scalar())
    assert np.abs(new - old).max() > 1e-3

    # disable / enable: out of the mean and back in
    kbs.update_chunk(actor=SYSTEM, kb=kb.id, chunk_id=chunk.id, enabled=False)
    with session_scope() as s:
        assert check(s, kb.id)[(index_id, docs["boats.txt"])] == n_boats - 1
    kbs.update_chunk(actor=SYSTEM, kb=kb.id, chunk_id=chunk.id, enabled=True)
    with session_scope() as s:
        assert check(s, kb.id) == before
    # every chunk of a document disabled: no row, and hybrid search still answers
    bread = [c.id for c in kbs.list_chunks(actor=SYSTEM, kb=kb.id) if c.source == "bread.txt"]
    for cid in bread:
        kbs.update_chunk(actor=SYSTEM, kb=kb.id, chunk_id=cid, enabled=False)
    with session_scope() as s:
        assert (index_id, docs["bread.txt"]) not in check(s, kb.id)
    assert kbs.search(actor=SYSTEM, kb=kb.id, query="sailing boats crew", mode="hybrid")
    for cid in bread:
        kbs.update_chunk(actor=SYSTEM, kb=kb.id, chunk_id=cid, enabled=True)
    with session_scope() as s:
        assert check(s, kb.id) == before

    # a replaced file: the row is its new chunks'
    ingest(kb.id, [("bread.txt", note("sourdough baking", 2))])
    with session_scope() as s:
        rows = check(s, kb.id)
    assert rows[(index_id, docs["bread.txt"])] == 2

    # hybrid search's document scores are the stored vectors' cosines
    q = "how does the sailing boats crew write things down"
    qvec = kbs.embedder_for_index(SYSTEM, None).embed([q])[0]
    with session_scope() as s:
        stored = {int(d): _vec(e) for d, e in s.execute(text(
            "SELECT document_id, embedding FROM kb_document_vectors WHERE index_id = :i"),
            {"i": index_id}).all()}
    hits = kbs.search(actor=SYSTEM, kb=kb.id, query=q, mode="hybrid", k=5)
    assert hits and hits[0].source == "boats.txt"
    for h in hits:
        v = stored[h.document_id]
        cos = float(v @ qvec / np.linalg.norm(v) / np.linalg.norm(qvec))
        assert h.metadata["scores"]["document"] == pytest.approx(cos, abs=1e-5)

    # a re-index: the new index has its own rows, the old one's are gone with it
    kbs.update_knowledge_base(actor=SYSTEM, kb=kb.id, chunk_size=120, chunk_overlap=0)
    job = jobs.run_inline(actor=SYSTEM, job_id=kbs.reindex(actor=SYSTEM, kb=kb.id,
                                                           enqueue=False))
    assert job.status == "succeeded", job.error
    new_index = kbs.get_knowledge_base(actor=SYSTEM, kb=kb.id).index["id"]
    assert new_index != index_id
    with session_scope() as s:
        rows = check(s, kb.id)
    assert {k[0] for k in rows} == {new_index} and len(rows) == 2

    # a deleted document: its row is gone
    kbs.delete_document(actor=SYSTEM, kb=kb.id, document_id=docs["boats.txt"])
    with session_scope() as s:
        assert set(check(s, kb.id)) == {(new_index, docs["bread.txt"])}
    kbs.delete_knowledge_base(actor=SYSTEM, kb=kb.id)
    with session_scope() as s:
        assert s.execute(text("SELECT count(*) FROM kb_document_vectors WHERE document_id = "
                              "ANY(:d)"), {"d": list(docs.values())}).scalar() == 0


def test_migration_fills_the_vectors_of_stored_chunks(empty_database: str) -> None:
    url = empty_database
    migrate.upgrade("0010_finetune", url=url)
    engine = create_engine(url)
    rng = np.random.default_rng(7)
    vecs = {(d, o): rng.normal(size=4) for d in (1, 2) for o in range(3)}
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO knowledge_bases (id, name) OVERRIDING SYSTEM VALUE "
                          "VALUES (1, 'old')"))
        conn.execute(text(
            "INSERT INTO kb_indexes (id, kb_id, status, dim, chunk_size, chunk_overlap, "
            "splitter, language) VALUES (1, 1, 'active', 4, 500, 0, 'recursive', 'en')"))
        for d in (1, 2, 3):
            conn.execute(text(
                "INSERT INTO kb_documents (id, kb_id, source, file_type, sha256, size, "
                "stored_path, status) VALUES (:d, 1, :s, 'txt', :s, 1, '/x', 'ready')"),
                {"d": d, "s": f"doc{d}.txt"})
        for (d, o), v in vecs.items():
            # doc 2's last chunk disabled, doc 3 has only a disabled chunk
            conn.execute(text(
                "INSERT INTO kb_chunks (index_id, document_id, ord, text, dim, embedding, "
                "length, enabled) VALUES (1, :d, :o, 't', 4, CAST(:e AS vector), 1, :en)"),
                {"d": d, "o": o, "e": json.dumps(v.tolist()), "en": not (d == 2 and o == 2)})
        conn.execute(text(
            "INSERT INTO kb_chunks (index_id, document_id, ord, text, dim, embedding, length, "
            "enabled) VALUES (1, 3, 0, 't', 4, '[1,2,3,4]', 1, false)"))
    migrate.upgrade("head", url=url)
    with engine.connect() as conn:
        rows = check(conn)
    engine.dispose()
    assert rows == {(1, 1): 3, (1, 2): 2}
