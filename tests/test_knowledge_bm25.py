"""Keyword search is exact Okapi BM25: the statement ``retrieval.keyword_search`` sends (each
term's postings merged in chunk order and summed per chunk, shares rounded to 2^-30 so sums are
exact) returns the same top k, ids and scores, as BM25 worked out here from the stored postings
(and, up to the order of equal scores, as the plain statement that hashes every posting), on
the real Postgres.

The base is written by ``store.write_chunks`` (the path ingest takes) with skewed term
frequencies: a few words in nearly every chunk, a long tail of rare ones, words repeated up to
a dozen times, chunk lengths from 2 to 80 terms, runs of identical chunks (exact ties that cross
the cut-off), and the best chunks of a question disabled (the short list runs out, and the
statement that joins every scored chunk decides)."""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from backend.accounts.actor import Actor
from backend.db import read_scope, session_scope
from backend.knowledge import retrieval
from backend.knowledge.store import write_chunks
from backend.knowledge.terms import terms
from backend.models.knowledge import KnowledgeChunk, KnowledgeDocument, KnowledgeIndex
from backend.services import knowledge as kbs

SYSTEM = Actor.system()
VOCAB = [f"w{i}" for i in range(600)]
QUERIES = [
    "w0",  # in most chunks: thousands of exact ties
    "w0 w1 w2 w3 w5 w8 w13 w21 w34 w55 w89 w144 w233 w377",  # long, mostly common words
    "w590 w0 w1",  # one rare word beside common ones
    "w3 w3 w9 w9 w9 w40",  # query term frequencies
    "w17 nothingsuchhere w2",  # a word the base does not have
    "w7 w11",
    "w450 w451 w452 w453",  # rare words only
]


def chunk_texts(rng: random.Random) -> list[str]:
    weights = [1 / (r + 1) ** 1.05 for r in range(len(VOCAB))]
    out = []
    for _ in range(1400):
        n = rng.choice([2, 3, 5, 8, 12, 20, 30, 40, 60, 80])
        words = rng.choices(VOCAB, weights=weights, k=n)
        if rng.random() < 0.15:  # a word said again and again
            words += [rng.choice(words)] * rng.randint(2, 12)
        rng.shuffle(words)
        out.append(" ".join(words))
    # identical chunks, and the same words in another order: equal scores for every question
    twin = "w0 w1 w2 w3 w5 w8 w13 w21 w7 w11 w9 w3"
    out += [twin] * 25 + [" ".join(reversed(twin.split()))] * 15
    out += ["w0 w7 w11"] * 40
    rng.shuffle(out)
    return out


@dataclass
class Bm25Base:
    kb_id: int
    info: retrieval.IndexInfo


@pytest.fixture(scope="module")
def bm25_base() -> Iterator[Bm25Base]:
    kb = kbs.create_knowledge_base(actor=SYSTEM, name="bm25-exact")
    index_id = int(kb.index["id"])
    rng = random.Random(7)
    texts = chunk_texts(rng)
    vectors = np.random.default_rng(7).standard_normal((len(texts), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with session_scope() as s:
        ix = s.get(KnowledgeIndex, index_id)
        assert ix is not None
        for d, part in enumerate(range(0, len(texts), 500)):
            doc = KnowledgeDocument(kb_id=kb.id, source=f"part{d}.txt", file_type="txt",
                                    sha256=hashlib.sha256(str(d).encode()).hexdigest(),
                                    stored_path="", status="ready")
            s.add(doc)
            s.flush()
            batch = texts[part:part + 500]
            write_chunks(s, index=ix, document_id=doc.id, texts=batch, embed_texts=batch,
                         vectors=vectors[part:part + 500],
                         metas=[{"source": doc.source, "file_type": "txt"}] * len(batch))
    with session_scope() as s:
        row = s.get(KnowledgeIndex, index_id)
        assert row is not None
        info = retrieval.IndexInfo(id=index_id, dim=384, language="en",
                                   n_chunks=int(row.n_chunks),
                                   total_length=int(row.total_length))
    yield Bm25Base(kb.id, info)
    kbs.delete_knowledge_base(actor=SYSTEM, kb=kb.id)


def reference(info: retrieval.IndexInfo, query: str, n: int) -> list[tuple[int, float]]:
    """BM25 of every enabled chunk from its stored postings, summed exactly (math.fsum)."""
    q = Counter(terms(query))
    with session_scope() as s:
        rows = s.execute(text(
            "SELECT ct.chunk_id, ct.term, ct.tf, ct.dl FROM kb_chunk_terms ct JOIN kb_chunks c "
            "ON c.id = ct.chunk_id WHERE ct.index_id = :i AND ct.term = ANY(:t) AND c.enabled"),
            {"i": info.id, "t": list(q)}).all()
        dfs = dict(s.execute(text("SELECT term, df FROM kb_term_stats WHERE index_id = :i AND "
                                  "term = ANY(:t)"), {"i": info.id, "t": list(q)}).all())
        lengths = s.execute(text("SELECT count(*), sum(length) FROM kb_chunks WHERE index_id "
                                 "= :i"), {"i": info.id}).one()
    assert (info.n_chunks, info.total_length) == (lengths[0], lengths[1])
    avgdl = info.total_length / info.n_chunks
    shares: dict[int, list[float]] = {}
    for cid, term, tf, dl in rows:
        df = dfs[term]
        idf = math.log(1 + (info.n_chunks - df + 0.5) / (df + 0.5))
        shares.setdefault(cid, []).append(
            idf * q[term] * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * dl / avgdl)))
    scores = {cid: math.fsum(v) for cid, v in shares.items()}
    return sorted(scores.items(), key=lambda x: (-x[1], x[0]))[:n]


def full_scoring_sql(info: retrieval.IndexInfo, query: str, n: int) -> list[tuple[int, float]]:
    """The plain statement: every posting scored and hashed per chunk, then sorted."""
    q = Counter(terms(query))
    with session_scope() as s:
        rows = s.execute(text(
            "WITH q AS (SELECT * FROM unnest(CAST(:t AS text[]), CAST(:qtf AS int[])) "
            "AS q(term, qtf)), st AS (SELECT s.term, q.qtf, ln(1 + (:N - s.df + 0.5) / "
            "(s.df + 0.5)) AS idf FROM kb_term_stats s JOIN q ON q.term = s.term "
            "WHERE s.index_id = :i AND s.df > 0), sc AS (SELECT ct.chunk_id, sum(st.idf * "
            "st.qtf * ct.tf * 2.2 / (ct.tf + 1.2 * (0.25 + 0.75 * ct.dl / :avgdl))) AS score "
            "FROM kb_chunk_terms ct JOIN st ON st.term = ct.term WHERE ct.index_id = :i "
            "GROUP BY ct.chunk_id) SELECT sc.chunk_id, sc.score FROM sc JOIN kb_chunks c ON "
            "c.id = sc.chunk_id WHERE c.enabled ORDER BY sc.score DESC, sc.chunk_id LIMIT :n"),
            {"t": list(q), "qtf": list(q.values()), "N": float(info.n_chunks), "i": info.id,
             "avgdl": info.total_length / info.n_chunks, "n": n}).all()
    return [(int(a), float(b)) for a, b in rows]


def fast(info: retrieval.IndexInfo, query: str, n: int) -> list[tuple[int, float]]:
    with session_scope() as s:
        got = [(c.chunk_id, c.score) for c in retrieval.keyword_search(s, info, query, n)]
        # the planner settings are put back for the rest of the transaction
        assert s.execute(text("SELECT current_setting('enable_hashagg')")).scalar() == "on"
    return got


def assert_same(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> None:
    assert [c for c, _ in got] == [c for c, _ in want]
    for (_, a), (_, b) in zip(got, want, strict=True):
        assert a == pytest.approx(b, rel=1e-9, abs=2e-8)


def assert_same_up_to_ties(got: list[tuple[int, float]], want: list[tuple[int, float]]
                           ) -> None:
    """The plain statement adds a chunk's shares in the order its plan reads them (here the
    chunk's own word order), so two chunks with equal scores may differ in the last bit and
    swap places: the same scores, and the same chunks within each run of equal scores (the
    last run may be cut anywhere)."""
    assert len(got) == len(want)
    for (_, a), (_, b) in zip(got, want, strict=True):
        assert a == pytest.approx(b, rel=1e-9, abs=2e-8)
    runs: list[list[int]] = []
    for i, (_, score) in enumerate(want):
        if runs and abs(want[runs[-1][0]][1] - score) < 1e-9:
            runs[-1].append(i)
        else:
            runs.append([i])
    for run in runs[:-1]:
        assert {got[i][0] for i in run} == {want[i][0] for i in run}


def test_skewed_base_has_common_words_ties_and_repeats(bm25_base: Bm25Base) -> None:
    info = bm25_base.info
    with session_scope() as s:
        dfs = dict(s.execute(text("SELECT term, df FROM kb_term_stats WHERE index_id = :i"),
                             {"i": info.id}).all())
        max_tf = s.execute(text("SELECT max(tf) FROM kb_chunk_terms WHERE index_id = :i"),
                           {"i": info.id}).scalar()
    assert dfs["w0"] > info.n_chunks * 0.6 and dfs["w590"] < 10
    assert max_tf >= 10
    top = reference(info, "w0 w7 w11", 60)
    assert len({round(sc, 9) for _, sc in top}) < len(top) - 30  # runs of exact ties


@pytest.mark.parametrize("query", QUERIES)
def test_keyword_top_k_equals_full_scoring(bm25_base: Bm25Base, query: str) -> None:
    info = bm25_base.info
    for n in (1, 10, 60, 300):
        want = reference(info, query, n)
        got = fast(info, query, n)
        assert_same(got, want)
        assert_same_up_to_ties(full_scoring_sql(info, query, n), want)
        if "w0" in query:
            assert len(got) == n


def test_disabled_best_chunks_fall_back_to_the_exact_enabled_top_k(bm25_base: Bm25Base) -> None:
    info = bm25_base.info
    query = "w0 w1 w2 w3 w5 w8 w13 w21 w34 w55 w89 w144 w233 w377"
    n = 10
    best = [c for c, _ in reference(info, query, 2 * n + 10 + 5)]
    with session_scope() as s:
        s.execute(text("UPDATE kb_chunks SET enabled = false WHERE id = ANY(:ids)"),
                  {"ids": best})
    try:
        want = reference(info, query, n)
        assert not set(best) & {c for c, _ in want}
        got = fast(info, query, n)
        assert len(got) == n
        assert_same(got, want)
        # with a filter, the same statement that joins every scored chunk
        with session_scope() as s:
            flt = retrieval.Filters(file_types=["txt"])
            assert_same([(c.chunk_id, c.score) for c in
                         retrieval.keyword_search(s, info, query, n, flt)], want)
    finally:
        with session_scope() as s:
            s.execute(text("UPDATE kb_chunks SET enabled = true WHERE id = ANY(:ids)"),
                      {"ids": best})


def test_hybrid_runs_bm25_beside_the_embedding_with_the_same_result(bm25_base: Bm25Base
                                                                    ) -> None:
    """The service runs the keyword half on a second connection while it embeds the question;
    the fused list is the one the sequential search gives."""
    query = "w0 w7 w11 w3"
    hits = kbs.search(actor=SYSTEM, kb=bm25_base.kb_id, query=query, k=40, mode="hybrid",
                      per_document=0)
    qvec = kbs.embedder_for_index(SYSTEM, None).embed([query])[0]
    with session_scope() as s:
        info = bm25_base.info
        info.same_dim_chunks = None
        seq = retrieval.search(s, info, query=query, query_vec=qvec, k=40, mode="hybrid")
        n_chunks = s.query(KnowledgeChunk).filter(KnowledgeChunk.index_id == info.id).count()
    assert n_chunks == info.n_chunks
    assert [h.chunk_id for h in hits] == [c.chunk_id for c in seq]
    assert [h.score for h in hits] == pytest.approx([c.score for c in seq])
    assert any("keyword" in h.metadata["ranks"] for h in hits)


def test_keyword_hits_carry_their_documents(bm25_base: Bm25Base) -> None:
    """The BM25 list names each chunk's document (hybrid needs it for the document vectors, so
    it costs no second lookup)."""
    info = bm25_base.info
    with session_scope() as s:
        cands = retrieval.keyword_search(s, info, "w0 w7 w11 w3", 40)
        docs = dict(s.execute(text("SELECT id, document_id FROM kb_chunks WHERE id = ANY(:ids)"),
                              {"ids": [c.chunk_id for c in cands]}).all())
    assert len(cands) == 40
    assert all(c.document_id == docs[c.chunk_id] for c in cands)


def test_hybrid_asks_for_the_keyword_list_after_the_vector_search(
        bm25_base: Bm25Base, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given a function for the BM25 list, hybrid search runs its vector search first (the
    service's BM25 statement meanwhile runs on another connection) and fuses the same lists."""
    query = "w0 w7 w11 w3"
    info = bm25_base.info
    qvec = kbs.embedder_for_index(SYSTEM, None).embed([query])[0]
    order: list[str] = []
    vector_search = retrieval.vector_search

    def recorded(*a: object, **kw: object) -> list[retrieval.Candidate]:
        order.append("vector")
        return vector_search(*a, **kw)  # type: ignore[arg-type]

    with session_scope() as s:
        want = retrieval.search(s, info, query=query, query_vec=qvec, k=20, mode="hybrid")
        pool = retrieval.hybrid_pool(20)
        kw = retrieval.keyword_search(s, info, query, pool)
        monkeypatch.setattr(retrieval, "vector_search", recorded)

        def later() -> list[retrieval.Candidate]:
            order.append("keyword")
            return kw

        got = retrieval.search(s, info, query=query, query_vec=qvec, k=20, mode="hybrid",
                               keyword=later)
    assert order == ["vector", "keyword"]
    assert [c.chunk_id for c in got] == [c.chunk_id for c in want]


def test_within_budget_keeps_the_rarest_terms() -> None:
    terms_ = [retrieval.QueryTerm(t, 1.0, df) for t, df in
              [("a", 5), ("b", 40), ("c", 300), ("d", 900), ("e", 950)]]
    assert retrieval.within_budget(terms_, None) == (terms_, [])
    assert retrieval.within_budget(terms_, 10_000) == (terms_, [])
    assert retrieval.within_budget(terms_, 400) == (terms_[:3], terms_[3:])
    # the rarest term is always read, even past the budget
    assert retrieval.within_budget(terms_[3:], 100) == (terms_[3:4], terms_[4:])
    # and more, until they hold the candidates wanted
    assert retrieval.within_budget(terms_, 100, at_least=200) == (terms_[:3], terms_[3:])
    assert retrieval.within_budget(terms_, 400, at_least=1000) == (terms_[:4], terms_[4:])


@pytest.mark.parametrize("query", [QUERIES[1], QUERIES[2], QUERIES[3]])
def test_budgeted_keyword_list_carries_exact_scores(bm25_base: Bm25Base, query: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Within a postings budget the rarest terms choose the candidates and the common ones add
    their shares: every chunk returned has its exact BM25 score, in order; with a budget that
    covers every posting the list is the exact one."""
    info = bm25_base.info
    every = dict(reference(info, query, 10**6))
    with session_scope() as s:
        weights = retrieval.bm25_weights(s, info, query)
        total = sum(w.df for w in weights)
        kept, rest = retrieval.within_budget(weights, total // 4)
        assert kept and rest
        n = 60
        got = [(c.chunk_id, c.score) for c in
               retrieval.keyword_search(s, info, query, n, budget=total // 4)]
        assert s.execute(text("SELECT current_setting('enable_hashagg')")).scalar() == "on"
        whole = [(c.chunk_id, c.score) for c in
                 retrieval.keyword_search(s, info, query, n, budget=total)]
        # a filter every chunk passes: the same budgeted list (on a base this small, only when
        # narrow filters are not scored chunk by chunk; then it is the exact list)
        flt = retrieval.Filters(file_types=["txt"])
        narrow = [(c.chunk_id, c.score) for c in
                  retrieval.keyword_search(s, info, query, n, flt, budget=total // 4)]
        monkeypatch.setattr(retrieval, "NARROW_FILTER_CHUNKS", 0)
        filtered = [(c.chunk_id, c.score) for c in
                    retrieval.keyword_search(s, info, query, n, flt, budget=total // 4)]
    assert len(got) == n
    for cid, score in got:
        assert score == pytest.approx(every[cid], rel=1e-9, abs=2e-8)
    assert [sc for _, sc in got] == sorted((sc for _, sc in got), reverse=True)
    assert_same(whole, reference(info, query, n))
    assert_same(filtered, got)
    assert_same(narrow, whole)
    # not a different search: most of the exact top 60 is there
    assert len({c for c, _ in got} & {c for c, _ in reference(info, query, n)}) >= n * 0.6


def test_keyword_search_in_autocommit_and_on_bm25_connections(bm25_base: Bm25Base) -> None:
    """Read in autocommit the search sets BM25's planner settings for the session and puts them
    back (the pool hands the connection on); on a connection that starts with them
    (``BM25_OPTIONS``) it sets nothing. The same list every way."""
    info, query = bm25_base.info, QUERIES[1]

    def hashagg(s: Session) -> str:
        return str(s.execute(text("SHOW enable_hashagg")).scalar_one())

    with session_scope() as s:
        want = [(c.chunk_id, c.score) for c in retrieval.keyword_search(s, info, query, 20)]
    with read_scope() as s:
        got = [(c.chunk_id, c.score) for c in
               retrieval.keyword_search(s, info, query, 20, restore_plan=False)]
        assert hashagg(s) == "on"
    assert got == want
    with read_scope(retrieval.BM25_OPTIONS) as s:
        assert hashagg(s) == "off"
        seen: list[str] = []
        event.listen(s.connection(), "before_cursor_execute",
                     lambda *a: seen.append(str(a[2])))
        got = [(c.chunk_id, c.score) for c in retrieval.keyword_search(s, info, query, 20)]
    assert got == want
    assert not any("set_config" in sql for sql in seen) and len(seen) == 2  # terms, BM25
    with session_scope() as s:
        assert hashagg(s) == "on"  # the ordinary pool's connections are not touched


def test_budgeted_keyword_list_skips_disabled_chunks(bm25_base: Bm25Base) -> None:
    info = bm25_base.info
    query = QUERIES[1]
    with session_scope() as s:
        total = sum(w.df for w in retrieval.bm25_weights(s, info, query))
        first = [c.chunk_id for c in
                 retrieval.keyword_search(s, info, query, 400, budget=total // 4)]
    best = first[:retrieval.RESCORE_DEPTH]
    with session_scope() as s:
        s.execute(text("UPDATE kb_chunks SET enabled = false WHERE id = ANY(:ids)"),
                  {"ids": best})
    try:
        with session_scope() as s:
            got = retrieval.keyword_search(s, info, query, 10, budget=total // 4)
        assert len(got) == 10 and not {c.chunk_id for c in got} & set(best)
        every = dict(reference(info, query, 10**6))
        assert all(c.score == pytest.approx(every[c.chunk_id], rel=1e-9, abs=2e-8) for c in got)
    finally:
        with session_scope() as s:
            s.execute(text("UPDATE kb_chunks SET enabled = true WHERE id = ANY(:ids)"),
                      {"ids": best})


def test_vector_search_through_hnsw_brings_rows_and_document_similarity(
        bm25_base: Bm25Base, monkeypatch: pytest.MonkeyPatch) -> None:
    """The HNSW path (here forced on a small base) finds what the exact scan finds, asks for a
    wider search when more than ``EF_SEARCH`` chunks are wanted, and with ``details`` /
    ``documents`` brings each chunk's row and its document's similarity in the same
    statement."""
    info = bm25_base.info
    info.same_dim_chunks = None
    qvec = kbs.embedder_for_index(SYSTEM, None).embed(["w3 w7 w11"])[0]
    def ef(s: Session) -> int:
        return int(s.execute(text("SHOW hnsw.ef_search")).scalar_one())

    with session_scope() as s:
        exact = retrieval.vector_search(s, info, qvec, 150)
        monkeypatch.setattr(retrieval, "EXACT_MAX_CHUNKS", 0)
        few = retrieval.vector_search(s, info, qvec, 20, details=True, documents=True)
        # a small index: a wider search (still cheap) for exact-like recall, set for the rest
        # of the transaction
        assert ef(s) == 200
    monkeypatch.setattr(retrieval, "SMALL_INDEX_CHUNKS", 0)
    with session_scope() as s:
        retrieval.vector_search(s, info, qvec, 20)
        assert ef(s) == retrieval.EF_SEARCH  # the connection's own
        many = retrieval.vector_search(s, info, qvec, 150)
        assert ef(s) == 150
    with read_scope() as s:
        # in autocommit the wider search is put back at once (the pool hands the connection on)
        assert [c.chunk_id for c in retrieval.vector_search(s, info, qvec, 150)] == \
            [c.chunk_id for c in many]
        assert ef(s) == retrieval.EF_SEARCH
    with session_scope() as s:
        docs = retrieval.document_similarity(s, info, qvec, [c.document_id for c in few
                                                             if c.document_id is not None])
        rows = dict(s.execute(text("SELECT id, text FROM kb_chunks WHERE id = ANY(:i)"),
                              {"i": [c.chunk_id for c in few]}).all())
    # (the HNSW graph also holds other bases' chunks, and deleted ones until a vacuum: what
    # the scan finds of this base may fall short of 150, by at most the 10% it accepts)
    assert 0.9 * 150 <= len(many) <= 150
    assert len({c.chunk_id for c in many} & {c.chunk_id for c in exact}) >= 0.9 * len(many)
    assert [c.score for c in few] == sorted((c.score for c in few), reverse=True)
    for c in few:
        assert c.row is not None and c.row.text == rows[c.chunk_id]
        assert c.similarity == c.score
        assert c.scores["document"] == pytest.approx(docs[c.document_id])


def test_hybrid_hits_carry_rows_and_similarities_read_beside_the_search(
        bm25_base: Bm25Base) -> None:
    """The service's hybrid hits come with the rows and similarities the two searches read
    (the keyword half reads its chunks' similarities once the question is embedded): the same
    text, metadata and cosine as reading the hits afterwards."""
    query = "w0 w7 w11 w3 w590"
    hits = kbs.search(actor=SYSTEM, kb=bm25_base.kb_id, query=query, k=200, mode="hybrid",
                      per_document=0)
    qvec = kbs.embedder_for_index(SYSTEM, None).embed([query])[0]
    with session_scope() as s:
        rows = {r[0]: r for r in s.execute(text(
            "SELECT id, text, metadata, ord, 1 - (embedding <=> CAST(:q AS vector)) "
            "FROM kb_chunks WHERE id = ANY(:i)"),
            {"q": retrieval.vector_literal(qvec), "i": [h.chunk_id for h in hits]}).all()}
    assert len(hits) == 200 and any(set(h.metadata["ranks"]) == {"keyword"} for h in hits)
    for h in hits:
        _, chunk_text, meta, ord_, sim = rows[h.chunk_id]
        assert h.text == chunk_text and h.metadata["ord"] == ord_
        assert h.metadata["source"] == meta["source"]
        assert h.metadata["similarity"] == pytest.approx(sim, abs=1e-5)
        assert "document" in h.metadata["scores"]


def _sources(ids: list[int]) -> dict[int, str]:
    with session_scope() as s:
        return {int(a): str(b) for a, b in s.execute(text(
            "SELECT id, metadata->>'source' FROM kb_chunks WHERE id = ANY(:i)"), {"i": ids}).all()}


@pytest.mark.parametrize("source", ["part0.txt", "part2.txt"])
def test_filtered_keyword_search_is_exact(bm25_base: Bm25Base, source: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A filter few chunks pass (here a file's 500) scores just those chunks by key. Else the
    best scores are looked up first and filtered; when too few of them pass (made so here by
    taking fewer first), every scored chunk is joined. Every way the exact filtered top n, and
    the narrow way exact within hybrid's postings budget too."""
    info = bm25_base.info
    query = QUERIES[1]
    everything = reference(info, query, 10**6)
    src = _sources([c for c, _ in everything])
    flt = retrieval.Filters(sources=[source])
    with session_scope() as s:
        assert retrieval._few_pass(s, info, flt, *flt.sql())
        total = sum(w.df for w in retrieval.bm25_weights(s, info, query))
    for narrow, factor in ((retrieval.NARROW_FILTER_CHUNKS, 1), (0, retrieval.FILTERED_EF_FACTOR),
                           (0, 1)):
        monkeypatch.setattr(retrieval, "NARROW_FILTER_CHUNKS", narrow)
        monkeypatch.setattr(retrieval, "FILTERED_EF_FACTOR", factor)
        for n in (5, 60, 200):
            want = [(c, sc) for c, sc in everything if src[c] == source][:n]
            with session_scope() as s:
                got = [(c.chunk_id, c.score) for c in retrieval.keyword_search(s, info, query, n,
                                                                               flt)]
                budgeted = [(c.chunk_id, c.score) for c in retrieval.keyword_search(
                    s, info, query, n, flt, budget=total // 4)]
            assert_same(got, want)
            if narrow:
                assert_same(budgeted, want)
    with session_scope() as s:  # a heading filter alone is not counted (it reads every chunk)
        assert not retrieval._few_pass(s, info, retrieval.Filters(heading="x"), "", {})


def test_filtered_vector_search_through_hnsw(bm25_base: Bm25Base,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """On a large index a filtered search takes more candidates from HNSW and keeps those that
    pass; when too few pass, the exact scan decides."""
    info = bm25_base.info
    info.same_dim_chunks = None
    qvec = kbs.embedder_for_index(SYSTEM, None).embed(["w5 w8 w13"])[0]
    flt = retrieval.Filters(sources=["part2.txt"])
    with session_scope() as s:
        exact = [c.chunk_id for c in retrieval.vector_search(s, info, qvec, 100, flt)]
    monkeypatch.setattr(retrieval, "EXACT_MAX_CHUNKS", 0)
    monkeypatch.setattr(retrieval, "SMALL_INDEX_CHUNKS", 0)
    with session_scope() as s:
        wide = [c.chunk_id for c in retrieval.vector_search(s, info, qvec, 100, flt)]
        assert s.execute(text("SHOW hnsw.ef_search")).scalar() == "400"
    # (HNSW through the shared graph may fall short by the 10% vector_search accepts; seen in
    # a full run: 97 of 100)
    assert 90 <= len(wide) <= 100 and set(_sources(wide).values()) == {"part2.txt"}
    assert len(set(wide) & set(exact)) >= 0.9 * len(wide)
    # HNSW's 100 nearest hold too few chunks of part2 (a third of the base): the exact scan
    monkeypatch.setattr(retrieval, "FILTERED_EF_FACTOR", 1)
    with session_scope() as s:
        assert [c.chunk_id for c in retrieval.vector_search(s, info, qvec, 100, flt)] == exact


def test_heading_filtered_vector_search_takes_hnsws_candidates_then_filters(
        bm25_base: Bm25Base, monkeypatch: pytest.MonkeyPatch) -> None:
    """A heading filter (which the planner cannot estimate) through HNSW: the candidates first,
    filtered after; when too few pass but the most candidates HNSW gives would hold enough,
    those are looked at before the exact scan. Close to the exact filtered list either way."""
    info = bm25_base.info
    info.same_dim_chunks = None
    qvec = kbs.embedder_for_index(SYSTEM, None).embed(["w5 w8 w13"])[0]
    flt = retrieval.Filters(heading="second part")
    with session_scope() as s:
        s.execute(text("UPDATE kb_chunks SET metadata = metadata || '{\"heading\": \"The "
                       "Second Part\"}' WHERE index_id = :i AND metadata->>'source' = "
                       "'part1.txt'"), {"i": info.id})
    try:
        with session_scope() as s:
            exact = [c.chunk_id for c in retrieval.vector_search(s, info, qvec, 60, flt)]
        assert set(_sources(exact).values()) == {"part1.txt"} and len(exact) == 60
        monkeypatch.setattr(retrieval, "EXACT_MAX_CHUNKS", 0)
        monkeypatch.setattr(retrieval, "SMALL_INDEX_CHUNKS", 0)
        efs: list[int] = []
        real = retrieval._hnsw_rows

        def spied(*a: Any) -> list[Any]:
            efs.append(int(a[6]))
            assert a[7] is True  # candidates first, filtered after
            return real(*a)

        monkeypatch.setattr(retrieval, "_hnsw_rows", spied)
        for factor, tries in ((retrieval.FILTERED_EF_FACTOR, [240]), (1, [60, 1000])):
            monkeypatch.setattr(retrieval, "FILTERED_EF_FACTOR", factor)
            efs.clear()
            with session_scope() as s:
                got = [c.chunk_id for c in retrieval.vector_search(s, info, qvec, 60, flt)]
            assert efs == tries
            assert len(got) >= 54 and set(_sources(got).values()) == {"part1.txt"}
            assert len(set(got) & set(exact)) >= 0.9 * len(got)
    finally:
        with session_scope() as s:
            s.execute(text("UPDATE kb_chunks SET metadata = metadata - 'heading' WHERE index_id "
                           "= :i"), {"i": info.id})


def test_chunks_are_indexed_by_the_metadata_filters_use() -> None:
    with session_scope() as s:
        names = set(s.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = "
                                   "'kb_chunks'")).scalars())
        assert {"ix_kb_chunks_source", "ix_kb_chunks_file_type"} <= names
        # on the filters' own expressions, so the planner can use them
        s.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(s.execute(text(
            "EXPLAIN SELECT id FROM kb_chunks WHERE index_id = 1 AND "
            "metadata->>'source' = ANY(ARRAY['x']) AND enabled")).scalars())
    assert "ix_kb_chunks_source" in plan


def test_highlights_are_every_word_whose_stem_the_question_has() -> None:
    """``matches`` stems only words that begin as a question's term does: the same spans as
    stemming every word (``stem`` keeps a word's first two letters), CJK words by substring."""
    from backend.knowledge.terms import _WORD, highlight_terms, matches, stem

    rng = random.Random(7)
    words = ["flies", "fly", "axes", "ax", "copied", "copy", "running", "run", "Tested", "tests",
             "classes", "class", "quickly", "quick", "hopping", "hop", "is", "a", "I", "déjà",
             "naïve", "x86", "ies", "bus", "buses", "wishes", "dizzy", "studied", "读取文件"]
    for word in words:
        assert stem(word.lower())[:2] == word.lower()[:2]
    for _ in range(200):
        text = " ".join(rng.choice(words) for _ in range(30))
        query = " ".join(rng.choice(words) for _ in range(4))
        wanted = set(highlight_terms(query))
        naive = [(m.start(), m.end()) for m in _WORD.finditer(text)
                 if not any("\u4e00" <= ch <= "\u9fff" for ch in m.group(0))
                 and stem(m.group(0).lower()) in wanted]
        got = matches(text, highlight_terms(query))
        assert [s for s in got if text[s[0]] < "\u4e00" or text[s[0]] > "\u9fff"] == naive
