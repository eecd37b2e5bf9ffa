"""Retrieval over one index: vector (pgvector cosine, HNSW), keyword (BM25 scored in SQL from the
statistics kept at ingest) and hybrid (reciprocal rank fusion of the two).

Scores: vector = cosine similarity; keyword = BM25; hybrid = the weighted RRF sum
(``weight / (RRF_K + rank)`` per list; the keyword list counts 0.3). Before fusing, hybrid
re-orders both lists with the *document vector* of each chunk's document (the mean of the
document's enabled chunk vectors, kept per index in ``kb_document_vectors`` by every chunk
write and read by key for the documents in the lists): the vector
list by cosine + ``DOC_VECTOR_WEIGHT`` x the cosine of the question to the document vector,
the keyword list by BM25 / the list's best BM25 + ``KEYWORD_DOC_WEIGHT`` x that cosine. A
chunk of a page that is about the question as a whole moves up; one that only shares some words
or phrasing with it moves down. Hybrid's keyword list reads at most about ``HYBRID_POSTINGS``
postings: on a long question the rarest terms choose the candidates and the most common ones
only add their shares to them (``keyword_search``; keyword mode itself is always exact).

bench/retrieval.py, MRR@10 over 158 python3-doc pages (6,143 chunks): hybrid 0.761 -> 0.812 on
all 114 questions (tuning 0.775 -> 0.837, held-out 0.745 -> 0.781), against vector alone
0.744, keyword alone 0.491 and the plain LangChain recipe 0.692. The weights were chosen on
the 62 tuning questions and confirmed on the 52 held-out ones. This replaced an earlier
"document support" (a chunk gained a tenth of the fused score of its document's best other
chunk), which adds nothing on top of the document vector.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.db import HNSW_EF_SEARCH
from backend.knowledge.store import vector_literal
from backend.knowledge.terms import terms as cut_terms

MODES = ("hybrid", "vector", "keyword")
RRF_K = 20
WEIGHTS = {"vector": 1.0, "keyword": 0.3}
# hybrid: before fusion the vector list is re-ordered by cosine + DOC_VECTOR_WEIGHT x the
# cosine of the question to the chunk's document vector, the keyword list by BM25 / the list's
# best BM25 + KEYWORD_DOC_WEIGHT x that cosine
DOC_VECTOR_WEIGHT = 0.8
KEYWORD_DOC_WEIGHT = 1.0
BM25_K1 = 1.2
BM25_B = 0.75
# (every connection starts with it: backend.db)
EF_SEARCH = HNSW_EF_SEARCH
# an exact scan below this many chunks (about as fast as HNSW there: it costs 3-4 us a chunk,
# 14-20 ms at 5,000 chunks against HNSW's 4 ms at recall@10 0.996 in bench/search.py), or below
# this share of the dimension's chunks (other bases' chunks in the same graph would crowd the
# base's own out of HNSW's candidates)
EXACT_MAX_CHUNKS = 2000
# below this many chunks HNSW looks at SMALL_EF_SEARCH candidates (recall@10 1.0 at 5,000 chunks
# in bench/search.py, against 0.996 at 100; 1 ms more)
SMALL_INDEX_CHUNKS = 20000
SMALL_EF_SEARCH = 200
# a filtered search takes this many times the candidates it wants from HNSW, and from the best
# BM25 scores, before filtering (enough when a quarter of the chunks near the question pass;
# with fewer the exact scan / the full join decides), at most pgvector's ef_search limit.
# bench/search.py's 100k chunks, 60 questions: a filter every chunk passes, hybrid p50 280 ->
# 35 ms; a heading filter a third pass, p50 220 -> 44 ms (p95 stays about 230 ms: questions
# whose neighbours hold too few such chunks fall back to the exact scan)
FILTERED_EF_FACTOR = 4
MAX_EF_SEARCH = 1000
EXACT_MIN_SHARE = 0.5


@dataclass
class IndexInfo:
    id: int
    dim: int
    language: str
    n_chunks: int
    total_length: int
    # chunks of this dimension in every index (the HNSW graph's size); None: looked up
    same_dim_chunks: int | None = None


@dataclass
class Candidate:
    chunk_id: int
    score: float
    ranks: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    document_id: int | None = None
    # the chunk's row when the search read it (``details``): text, metadata, place in document
    row: ChunkRow | None = None
    # cosine of the question to the chunk, where known (vector search's own score)
    similarity: float | None = None


class ChunkRow(NamedTuple):
    text: str
    # the metadata as Postgres prints it: parsed only for the candidates that become hits
    metadata_json: str | None
    ord: int

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(json.loads(self.metadata_json)) if self.metadata_json else {}


# what ``details`` adds to a search statement's columns (``c``: kb_chunks)
ROW_COLUMNS = ", c.text, c.metadata::text, c.ord"


def _candidate(r: Any, details: bool, similarity: bool = False) -> Candidate:
    """A candidate from a row ``(chunk id, score, document id[, text, metadata, ord])``."""
    c = Candidate(int(r[0]), float(r[1]), document_id=int(r[2]))
    if details:
        c.row = ChunkRow(str(r[3]), r[4], int(r[5]))
    if similarity:
        c.similarity = c.score
    return c


@dataclass
class Filters:
    sources: list[str] = field(default_factory=list)
    heading: str = ""
    file_types: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Filters:
        d = d or {}
        unknown = set(d) - {"source", "sources", "heading", "file_type", "file_types"}
        if unknown:
            raise ValueError(f"Unknown filter {', '.join(sorted(unknown))}: use source, heading "
                             "or file_type.")

        def as_list(v: Any) -> list[str]:
            if v is None or v == "":
                return []
            return [str(x) for x in (v if isinstance(v, list | tuple | set) else [v])]

        return cls(sources=as_list(d.get("sources")) + as_list(d.get("source")),
                   heading=str(d.get("heading") or ""),
                   file_types=[f.lower().lstrip(".") for f in
                               as_list(d.get("file_types")) + as_list(d.get("file_type"))])

    @property
    def active(self) -> bool:
        return bool(self.sources or self.heading or self.file_types)

    def sql(self, alias: str = "c") -> tuple[str, dict[str, Any]]:
        parts: list[str] = []
        params: dict[str, Any] = {}
        if self.sources:
            parts.append(f"{alias}.metadata->>'source' = ANY(:f_sources)")
            params["f_sources"] = self.sources
        if self.heading:
            parts.append(f"({alias}.metadata->>'heading' ILIKE :f_heading OR "
                         f"{alias}.metadata->>'title' ILIKE :f_heading)")
            params["f_heading"] = f"%{self.heading}%"
        if self.file_types:
            parts.append(f"{alias}.metadata->>'file_type' = ANY(:f_types)")
            params["f_types"] = self.file_types
        return (" AND " + " AND ".join(parts)) if parts else "", params


def vector_search(session: Session, index: IndexInfo, query_vec: np.ndarray, n: int,
                  filters: Filters | None = None, *, details: bool = False,
                  documents: bool = False) -> list[Candidate]:
    """The ``n`` nearest enabled chunks (that pass ``filters``) by cosine: HNSW when the index is
    large, else exact. With filters, HNSW looks at ``FILTERED_EF_FACTOR`` times as many
    candidates and keeps those that pass; if too few do (a narrow filter), the exact scan
    decides. ``details``: each with its row (``Candidate.row``); ``documents``: and the cosine
    of the question to its document's vector (``scores['document']``), read in the same
    statement."""
    filters = filters or Filters()
    where, params = filters.sql()
    q = vector_literal(query_vec)
    dim = int(index.dim)
    same_dim = index.same_dim_chunks
    if same_dim is None:
        same_dim = session.execute(text("SELECT coalesce(sum(n_chunks), 0) FROM kb_indexes "
                                        "WHERE dim = :d"), {"d": dim}).scalar() or 0
    use_hnsw = (index.n_chunks > EXACT_MAX_CHUNKS and dim <= 2000
                and index.n_chunks >= EXACT_MIN_SHARE * int(same_dim))
    params.update({"q": q, "i": index.id, "n": n, "d": dim})
    cols = ROW_COLUMNS if details else ""

    def statement(nearest: str) -> Any:
        if not documents:
            return text(nearest)
        # the nearest first, then their documents' vectors by key
        return text(
            "SELECT v.*, 1 - (dv.embedding <=> CAST(:q AS vector)) AS doc_sim FROM ("
            + nearest + ") v LEFT JOIN kb_document_vectors dv ON dv.index_id = :i AND "
            "dv.document_id = v.document_id AND dv.dim = :d")

    def candidates(rows: Any) -> list[Candidate]:
        out = []
        for r in rows:
            c = _candidate(r, details, similarity=True)
            if documents and r[-1] is not None:
                c.scores["document"] = float(r[-1])
            out.append(c)
        if documents:
            # (the join may return them in another order)
            out.sort(key=lambda c: -c.score)
        return out

    if use_hnsw:
        ef = max(n, SMALL_EF_SEARCH if index.n_chunks < SMALL_INDEX_CHUNKS else 0)
        if filters.active:
            ef = max(ef, min(MAX_EF_SEARCH, FILTERED_EF_FACTOR * n))
        want = min(n, index.n_chunks) * 0.9
        # a heading filter alone: the planner cannot tell how many chunks pass (_hnsw_rows)
        post = bool(filters.heading) and not (filters.sources or filters.file_types)
        rows = _hnsw_rows(session, statement, dim, cols, where, params, ef, post)
        if len(rows) < want and filters.active and ef < MAX_EF_SEARCH \
                and len(rows) * MAX_EF_SEARCH / ef >= want:
            # as many of the most candidates HNSW gives as passed of these would be enough:
            # look at those before scanning every chunk (a filter that a third of the chunks
            # pass, questions whose neighbours mostly do not)
            rows = _hnsw_rows(session, statement, dim, cols, where, params, MAX_EF_SEARCH, post)
        if len(rows) >= want:
            return candidates(rows)
    # exact: order by an expression the HNSW index does not cover
    rows = list(session.execute(statement(
        f"SELECT c.id, 1 - (c.embedding <=> CAST(:q AS vector)) AS score, c.document_id{cols} "
        f"FROM kb_chunks c WHERE c.index_id = :i AND c.dim = :d AND c.enabled{where} "
        "ORDER BY c.embedding <=> CAST(:q AS vector) LIMIT :n"), params).all())
    return candidates(rows)


def _hnsw_rows(session: Session, statement: Callable[[str], Any], dim: int, cols: str,
               where: str, params: dict[str, Any], ef: int, post_filter: bool = False
               ) -> list[Any]:
    """The HNSW index's ``:n`` nearest of ``ef`` candidates that are this index's, enabled and
    pass the filters (``where``). ``post_filter``: the ``ef`` candidates are taken first and
    filtered after, spelled out. For a heading filter (``ILIKE`` on JSON) the planner expects a
    handful of rows where a third of the chunks may pass, and left to itself scans every chunk
    (140 ms at 100k chunks; bench/search.py's heading filter, vector p95 185-219 -> 72 ms); a
    filter on source or file type it judges well (their indexes' statistics), and there it may
    rightly read a page's chunks by key instead."""
    a = "h" if post_filter else "c"  # (the candidates' alias)
    expr = f"({a}.embedding::vector({dim}))"
    nearest = (f"SELECT {a}.id, 1 - ({expr} <=> CAST(:q AS vector({dim}))) AS score, "
               f"{a}.document_id{'' if post_filter else cols} FROM kb_chunks {a} WHERE "
               f"{a}.dim = {dim} AND {a}.index_id = :i AND {a}.enabled"
               f"{'' if post_filter else where} ORDER BY {expr} <=> CAST(:q AS vector({dim})) "
               f"LIMIT {':ef' if post_filter else ':n'}")
    if post_filter:
        nearest = (f"SELECT c.id, nn.score, c.document_id{cols} FROM ({nearest}) nn JOIN "
                   f"kb_chunks c ON c.id = nn.id WHERE TRUE{where} ORDER BY nn.score DESC, c.id "
                   "LIMIT :n")
    # (within a transaction a larger ef_search stays to its end, as SET LOCAL did)
    with (_plan(session, {"hnsw.ef_search": str(ef)}, restore=False) if ef > EF_SEARCH
          else nullcontext(session.connection())) as conn:
        # (HNSW looks at ef_search candidates whatever the limit: all of them are filtered)
        return list(conn.execute(statement(nearest).execution_options(prepare=False),
                                 {**params, "ef": max(ef, EF_SEARCH)}).all())


# BM25 shares are summed as whole multiples of 1 / BM25_SCALE (exact in float8 below 2^53)
BM25_SCALE = 1 << 30
# planner settings for the BM25 statement (then put back): group the merged postings in chunk
# order rather than hash them, and no parallel workers (on a small machine they only wait for
# the query embedding that hybrid search runs at the same time)
BM25_PLAN = {"enable_hashagg": "off", "max_parallel_workers_per_gather": "0"}
# the same as libpq options: the service's keyword searches run on connections that start with
# them (``db.read_scope(BM25_OPTIONS)``), so they need no statement to set and put them back
BM25_OPTIONS = " ".join(f"-c {k}={v}" for k, v in BM25_PLAN.items())
# hybrid search's keyword list reads at most about this many postings: the rarest terms of the
# question up to it choose the candidates, the rest only add their shares (keyword_search).
# bench/search.py, 100k chunks, 314 questions and pasted sentences: exact BM25 read up to 80k
# postings at p95 (50 ms). Budget -> hybrid top 10 the same chunks as with the exact list, BM25
# p95 (one run): 30k 0.995, 25.5 ms; 20k 0.988, 20.2 ms; 10k 0.972, 15.0 ms; the held-out
# sentences' own pages found as often as with the exact list at each (MRR@10 0.511-0.519
# against 0.514)
HYBRID_POSTINGS = 20000
# a filter on source or file type that at most this many enabled chunks pass is scored chunk
# by chunk (keyword_search): one descent of the (chunk, term) key each, about 14 us a chunk.
# bench/search.py's 100k chunks, keyword search p50: one page 77 -> 6 ms (hybrid 61 -> 16);
# a page of 1,556 chunks 90 -> 22 ms
NARROW_FILTER_CHUNKS = 2000
RESCORE_DEPTH = 200


class QueryTerm(NamedTuple):
    term: str
    # idf * qtf * (k1 + 1)
    weight: float
    # chunks that hold the term (its postings)
    df: int


def bm25_weights(session: Session, index: IndexInfo, query: str) -> list[QueryTerm]:
    """The question's terms found in the index, each with its BM25 weight
    ``idf * qtf * (k1 + 1)`` (idf ln(1 + (N - df + .5)/(df + .5))) and document frequency,
    rarest term first.

    Worked out here once per term, not per posting: the SQL then only multiplies each posting's
    ``tf / (tf + k1 * (1 - b + b * dl / avgdl))`` by a constant."""
    counts = Counter(cut_terms(query, index.language))
    if not counts or index.n_chunks <= 0:
        return []
    rows = session.execute(text(
        "SELECT term, df FROM kb_term_stats WHERE index_id = :i AND term = ANY(:t) AND df > 0 "
        "ORDER BY df, term"), {"i": index.id, "t": list(counts)}).all()
    n = float(index.n_chunks)
    return [QueryTerm(str(term), math.log(1 + (n - df + 0.5) / (df + 0.5)) * counts[term]
                      * (BM25_K1 + 1), int(df)) for term, df in rows]


def within_budget(weights: list[QueryTerm], budget: int | None, at_least: int = 0
                  ) -> tuple[list[QueryTerm], list[QueryTerm]]:
    """The rarest terms whose postings together stay within ``budget``, and the rest (the most
    common words of a long question): see ``keyword_search``. The rarest term is always kept,
    and so are more terms until their postings reach ``at_least`` (the candidates wanted)."""
    if not budget or sum(w.df for w in weights) <= budget:
        return weights, []
    total, keep = 0, 0
    for w in weights:
        if keep and total + w.df > budget and total >= at_least:
            break
        total += w.df
        keep += 1
    return weights[:keep], weights[keep:]


def _bm25_params(index: IndexInfo) -> dict[str, Any]:
    """The index and its length normalisation for ``_bm25_share``: ``k1 * (1 - b)`` and
    ``k1 * b / avgdl``."""
    avgdl = max(1.0, index.total_length / max(1, index.n_chunks))
    return {"i": index.id, "bm25_c1": BM25_K1 * (1 - BM25_B),
            "bm25_c2": BM25_K1 * BM25_B / avgdl}


def _bm25_share(weight: str) -> str:
    """SQL of one posting's (``ct``: kb_chunk_terms) share of a chunk's score, given its term's
    scaled weight: rounded to a whole number, the same way wherever a share is summed, so that
    every way of scoring a chunk gives the same score."""
    return (f"round({weight} * ct.tf / (ct.tf + CAST(:bm25_c1 AS float8) + "
            "CAST(:bm25_c2 AS float8) * ct.dl))")


def bm25_scores_sql(weights: list[QueryTerm], params: dict[str, Any],
                    index: IndexInfo, scaled: bool = False) -> str:
    """SQL of ``(chunk_id, score)``: every chunk that holds a term of ``weights``, with its
    Okapi BM25 score (exact: every posting of every term counted).

    One index range per term (``ix_kb_chunk_terms_index_id_term`` returns a term's postings in
    chunk order), merged in chunk order and summed per chunk as they stream by: with
    ``BM25_PLAN`` set, Postgres groups the merged postings without a hash table, which at
    100k chunks took half the time of hashing the tens of thousands of chunks a question's
    common words match.

    Each term's share is rounded to a multiple of ``1 / BM25_SCALE`` (2^-30, about 1e-9), so the
    shares are whole numbers in float8 and their sum is exact in whatever order the merge
    delivers them: chunks whose scores are equal tie exactly (then the chunk id decides), as
    they did when every chunk's shares were added in the same order. ``scaled``: the score is
    left in those units (not divided by ``BM25_SCALE``)."""
    params.update(_bm25_params(index))
    parts = []
    for j, (term, weight, _df) in enumerate(weights):
        # (the weight comes scaled: multiplying by a power of two first rounds the same)
        params[f"bm25_t{j}"], params[f"bm25_w{j}"] = term, weight * BM25_SCALE
        parts.append(
            f"(SELECT ct.chunk_id, {_bm25_share(f'CAST(:bm25_w{j} AS float8)')} AS v "
            f"FROM kb_chunk_terms ct WHERE ct.index_id = :i AND ct.term = :bm25_t{j} "
            "ORDER BY ct.chunk_id)")
    total = "sum(p.v)" if scaled else f"sum(p.v) / {BM25_SCALE}"
    return (f"SELECT p.chunk_id, {total} AS score FROM ("
            + " UNION ALL ".join(parts) + ") p GROUP BY p.chunk_id")


def _autocommit(conn: Any) -> bool:
    return bool(getattr(conn.connection.dbapi_connection, "autocommit", False))


def _set_plan(conn: Any, settings: dict[str, str]) -> dict[str, str]:
    """Set planner settings for the rest of the transaction (on a connection in autocommit, for
    the session: the caller puts them back); returns the previous values (one round trip: the
    old values are read before the new ones are set, left to right)."""
    names = list(settings)
    params = {f"k{j}": k for j, k in enumerate(names)}
    params.update({f"v{j}": settings[k] for j, k in enumerate(names)})
    local = "false" if _autocommit(conn) else "true"
    cols = [f"current_setting(:k{j})" for j in range(len(names))] + [
        f"set_config(:k{j}, :v{j}, {local})" for j in range(len(names))]
    row = conn.execute(text("SELECT " + ", ".join(cols)), params).one()
    return {k: str(row[j]) for j, k in enumerate(names)}


@contextmanager
def _plan(session: Session, settings: dict[str, str], restore: bool = True) -> Iterator[Any]:
    """The session's connection with ``settings`` in force: none to set on a connection that
    started with them (``db.read_scope(options)``); else set for the transaction and put back
    after (``restore`` False: not, on a transaction that ends now; on a connection in autocommit
    they are always put back)."""
    conn = session.connection()
    words = str(session.info.get("connection_options", "")).split()
    started = dict(w.split("=", 1) for flag, w in zip(words[::2], words[1::2], strict=False)
                   if flag == "-c" and "=" in w)
    if all(started.get(k) == v for k, v in settings.items()):
        yield conn
        return
    # (a failed statement ends the transaction, and these settings with it)
    old = _set_plan(conn, settings)
    try:
        yield conn
    finally:
        if restore or _autocommit(conn):
            _set_plan(conn, old)


def keyword_search(session: Session, index: IndexInfo, query: str, n: int,
                   filters: Filters | None = None, *, restore_plan: bool = True,
                   budget: int | None = None, details: bool = False) -> list[Candidate]:
    """Okapi BM25 (k1 1.2, b 0.75, idf ln(1 + (N - df + .5)/(df + .5))) over the index: the
    ``n`` best enabled chunks (that pass ``filters``), by score then chunk id, each with its
    document. ``restore_plan``: False on a session that ends after this search (one round trip
    less). ``details``: each with its row (``Candidate.row``).

    ``budget`` (hybrid search's keyword list, ``HYBRID_POSTINGS``): when the question's terms
    together have more postings than that, only the rarest terms within it choose the
    candidates (the best ``RESCORE_DEPTH`` chunks by them; more terms are read if the rarest
    ones hold fewer chunks than that); each candidate's score then adds
    the shares of the other, most common terms, read by key for those chunks alone, so every
    chunk returned carries its exact BM25 score. What this can miss is a chunk that would rank
    only by the most common words of a long question. Without ``budget``, every posting of
    every term is read (exact).

    A filter on source or file type that at most ``NARROW_FILTER_CHUNKS`` enabled chunks pass
    (one page, a few files) scores just those chunks, each chunk's postings of the question's
    terms read by key: exact whatever the budget, and not every posting of every term read
    only to be filtered out."""
    weights = bm25_weights(session, index, query)
    if not weights:
        return []
    cols = ROW_COLUMNS if details else ""
    filters = filters or Filters()
    where, params = filters.sql()
    if _few_pass(session, index, filters, where, params):
        with _plan(session, BM25_PLAN, restore_plan) as conn:
            rows = _narrow_rows(conn, index, weights, where, params, n, cols)
        return [_candidate(r, details) for r in rows]
    chosen, rest = within_budget(weights, budget, _depth(n))
    scored = "WITH sc AS (" + bm25_scores_sql(chosen, params, index, scaled=bool(rest)) + ") "
    params["n"] = n
    with _plan(session, BM25_PLAN, restore_plan) as conn:
        rows = _keyword_rows(conn, scored, params, where, rest, n, cols)
    return [_candidate(r, details) for r in rows]


def _keyword_rows(conn: Any, scored: str, params: dict[str, Any], where: str,
                  rest: list[QueryTerm], n: int, cols: str) -> list[Any]:
    """``keyword_search``'s ``n`` best from the scores ``scored`` (a ``WITH sc`` clause); with
    ``rest`` (within a budget), the best ``RESCORE_DEPTH`` by the chosen terms, each with the
    shares of the ``rest`` of the terms added (looked up by the chunk's key), the ``n`` best of
    them by that full score."""
    if not rest:
        return _best_enabled(conn, scored, params, where, cols, n * 2 + 10, n,
                             "SELECT * FROM top ORDER BY score DESC, chunk_id LIMIT :n")
    params.update({"rest_t": [w.term for w in rest],
                   "rest_w": [w.weight * BM25_SCALE for w in rest]})
    rescore = (
        f"SELECT top.chunk_id, (top.score + coalesce((SELECT sum({_bm25_share('r.w')}) "
        "FROM kb_chunk_terms ct "
        "JOIN unnest(CAST(:rest_t AS text[]), CAST(:rest_w AS float8[])) r(term, w) ON "
        "r.term = ct.term WHERE ct.chunk_id = top.chunk_id AND ct.term = ANY(CAST(:rest_t AS "
        f"text[]))), 0)) / {BM25_SCALE} AS score, top.document_id{cols.replace('c.', 'top.')} "
        "FROM top ORDER BY 2 DESC, 1 LIMIT :n")
    return _best_enabled(conn, scored, params, where, cols, _depth(n), _depth(n), rescore)


def _best_enabled(conn: Any, scored: str, params: dict[str, Any], where: str, cols: str,
                  first: int, keep: int, result: str) -> list[Any]:
    """The ``keep`` best scored chunks that are enabled and pass the filters, as ``top``
    (chunk_id, score, document_id[, row]), and ``result`` (a statement on ``top``) read from
    them. The ``first`` best scores (with filters, ``FILTERED_EF_FACTOR`` times as many) come
    first and only their rows are looked up (disabled chunks and those the filters leave out
    dropped); if ``result`` then has fewer than ``n`` rows, every scored chunk is joined with its
    row and that decides."""
    params.update(first=first * (FILTERED_EF_FACTOR if where else 1), keep=keep)
    top = ("top AS (SELECT {s}.chunk_id, {s}.score, c.document_id" + cols + " FROM {s} JOIN "
           "kb_chunks c ON c.id = {s}.chunk_id WHERE c.enabled" + where + " ORDER BY {s}.score "
           "DESC, {s}.chunk_id LIMIT :keep) ")
    rows = list(conn.execute(text(
        scored + ", best AS (SELECT chunk_id, score FROM sc ORDER BY score DESC, chunk_id LIMIT "
        ":first), " + top.format(s="best") + result), params).all())
    if len(rows) < params["n"]:
        rows = list(conn.execute(text(scored + ", " + top.format(s="sc") + result), params).all())
    return rows


def _few_pass(session: Session, index: IndexInfo, filters: Filters, where: str,
              params: dict[str, Any]) -> bool:
    """Whether at most ``NARROW_FILTER_CHUNKS`` enabled chunks pass a filter on source or file
    type (counted by their indexes, ``ix_kb_chunks_source`` / ``_file_type``, no further than
    one past that). A heading filter alone is not counted: its ``ILIKE`` reads every chunk."""
    if not (filters.sources or filters.file_types):
        return False
    found = session.execute(text(
        f"SELECT count(*) FROM (SELECT 1 FROM kb_chunks c WHERE c.index_id = :i AND c.enabled"
        f"{where} LIMIT :cap) x"), {**params, "i": index.id, "cap": NARROW_FILTER_CHUNKS + 1}
    ).scalar_one()
    return int(found) <= NARROW_FILTER_CHUNKS


def _narrow_rows(conn: Any, index: IndexInfo, weights: list[QueryTerm], where: str,
                 params: dict[str, Any], n: int, cols: str) -> list[Any]:
    """The ``n`` best of the chunks that pass the filter, each scored from its own postings of
    the question's terms (primary key (chunk, term)): the same shares, rounded the same way,
    as ``bm25_scores_sql``, so the same scores and order as reading every posting."""
    params = {**params, **_bm25_params(index), "n": n, "nt": [w.term for w in weights],
              "nw": [w.weight * BM25_SCALE for w in weights]}
    return list(conn.execute(text(
        f"WITH f AS (SELECT c.id FROM kb_chunks c WHERE c.index_id = :i AND c.enabled{where}), "
        f"sc AS (SELECT ct.chunk_id, sum({_bm25_share('w.w')}) AS score FROM f JOIN "
        "kb_chunk_terms ct ON "
        "ct.chunk_id = f.id AND ct.term = ANY(CAST(:nt AS text[])) JOIN unnest(CAST(:nt AS "
        "text[]), CAST(:nw AS float8[])) w(term, w) ON w.term = ct.term GROUP BY ct.chunk_id) "
        f"SELECT sc.chunk_id, sc.score / {BM25_SCALE} AS score, c.document_id{cols} FROM sc "
        "JOIN kb_chunks c ON c.id = sc.chunk_id ORDER BY sc.score DESC, sc.chunk_id LIMIT :n"),
        params).all())


def _depth(n: int) -> int:
    """How many candidates the chosen terms of a budgeted keyword search put forward."""
    return max(RESCORE_DEPTH, 3 * n)


def fuse(lists: dict[str, list[Candidate]], k: int = RRF_K,
         weights: dict[str, float] | None = None) -> list[Candidate]:
    """Weighted reciprocal rank fusion: each list adds weight / (k + rank) for every chunk it
    returned (a chunk's document similarity, row and similarity, where a list has them, are
    carried along)."""
    weights = WEIGHTS if weights is None else weights
    fused: dict[int, Candidate] = {}
    for mode, cands in lists.items():
        w = weights.get(mode, 1.0)
        for rank, c in enumerate(cands, 1):
            f = fused.setdefault(c.chunk_id, Candidate(c.chunk_id, 0.0))
            f.score += w / (k + rank)
            f.ranks[mode] = rank
            f.scores[mode] = c.score
            if c.document_id is not None:
                f.document_id = c.document_id
            if "document" in c.scores:
                f.scores["document"] = c.scores["document"]
            if c.row is not None:
                f.row = c.row
            if c.similarity is not None:
                f.similarity = c.similarity
    return sorted(fused.values(), key=lambda c: (-c.score, min(c.ranks.values())))


# (document id, cosine of the question :q to the document's vector) for the documents :docs
_DOCUMENT_SIMILARITY = ("v.document_id, 1 - (v.embedding <=> CAST(:q AS vector)) FROM "
                        "kb_document_vectors v WHERE v.index_id = :i AND v.document_id = "
                        "ANY(:docs) AND v.dim = :d")


def document_similarity(session: Session, index: IndexInfo, query_vec: np.ndarray,
                        document_ids: list[int]) -> dict[int, float]:
    """Cosine of the question to each document's vector: the mean of the vectors of all its
    enabled chunks in this index. ``kb_document_vectors`` keeps their sum (the mean's direction;
    the cosine distance normalises it) up to date on every chunk write, so this reads one row per
    candidate document by key rather than summing chunks at query time."""
    if not document_ids:
        return {}
    rows = session.execute(text("SELECT " + _DOCUMENT_SIMILARITY), {
        "q": vector_literal(query_vec), "i": index.id, "d": int(index.dim),
        "docs": sorted(set(document_ids))}).all()
    return {int(r[0]): float(r[1]) for r in rows if r[1] is not None}


def similarities(session: Session, index: IndexInfo, query_vec: np.ndarray,
                 cands: list[Candidate]) -> None:
    """Fill in, in one statement, the cosine of the question to each candidate
    (``similarity``) and to its document's vector (``scores['document']``): what hybrid search
    needs of the keyword list, worked out beside the vector search (the service's keyword
    half does it once the question is embedded)."""
    if not cands:
        return
    rows = session.execute(text(
        "SELECT 0, c.id, 1 - (c.embedding <=> CAST(:q AS vector)) FROM kb_chunks c "
        "WHERE c.id = ANY(:ids) UNION ALL SELECT 1, " + _DOCUMENT_SIMILARITY),
        {"q": vector_literal(query_vec), "i": index.id, "d": int(index.dim),
         "ids": [c.chunk_id for c in cands],
         "docs": sorted({c.document_id for c in cands if c.document_id is not None})}).all()
    chunk_sim = {int(r[1]): float(r[2]) for r in rows if r[0] == 0 and r[2] is not None}
    doc_sim = {int(r[1]): float(r[2]) for r in rows if r[0] == 1 and r[2] is not None}
    for c in cands:
        if c.chunk_id in chunk_sim:
            c.similarity = chunk_sim[c.chunk_id]
        if c.document_id in doc_sim:
            c.scores["document"] = doc_sim[c.document_id]


def document_rescore(cands: list[Candidate], doc_sim: dict[int, float],
                     weight: float = DOC_VECTOR_WEIGHT, normalise: bool = False
                     ) -> list[Candidate]:
    """Re-order a list by its own score (``normalise``: divided by the list's best) +
    ``weight`` x the similarity of the chunk's document to the question (kept in
    ``scores['document']``); each chunk keeps its own score."""
    if weight <= 0 or not cands:
        return cands
    top = max((c.score for c in cands), default=0.0) if normalise else 1.0
    scale = 1.0 / top if top > 0 else 1.0
    for c in cands:
        if c.document_id is not None and c.document_id in doc_sim:
            c.scores["document"] = doc_sim[c.document_id]
    return sorted(cands, key=lambda c: (
        -(c.score * scale + weight * c.scores.get("document", 0.0)), c.chunk_id))


def hybrid_pool(n: int) -> int:
    """How many candidates hybrid search takes from each of vector and keyword search."""
    return max(60, 4 * n)


def search(session: Session, index: IndexInfo, *, query: str, query_vec: np.ndarray | None,
           k: int, mode: str, filters: Filters | None = None, candidates: int | None = None,
           keyword: list[Candidate] | Callable[[], list[Candidate]] | None = None,
           pool: int | None = None, details: bool = False) -> list[Candidate]:
    """Top candidates of the mode (``candidates`` of them, default ``k``). ``keyword``: for
    hybrid, the BM25 list (``keyword_search`` with ``hybrid_pool(n)`` and the
    ``HYBRID_POSTINGS`` budget), or a function that
    waits for it: the service runs it on other connections while the question is embedded and
    the vector search runs, and it is asked for only after the vector list. ``pool``: how
    many candidates hybrid takes from each list (default ``hybrid_pool`` of the candidates).
    ``details``: the candidates carry their rows (``Candidate.row``) where the searches read
    them."""
    if mode not in MODES:
        raise ValueError(f"Unknown search mode {mode!r}: use {', '.join(MODES)}.")
    n = candidates or k
    if mode == "keyword":
        out = keyword_search(session, index, query, n, filters, details=details)
        for rank, c in enumerate(out, 1):
            c.ranks["keyword"], c.scores["keyword"] = rank, c.score
        return out
    assert query_vec is not None
    if mode == "vector":
        out = vector_search(session, index, query_vec, n, filters, details=details)
        for rank, c in enumerate(out, 1):
            c.ranks["vector"], c.scores["vector"] = rank, c.score
        return out
    pool = pool or hybrid_pool(n)
    documents = DOC_VECTOR_WEIGHT > 0 or KEYWORD_DOC_WEIGHT > 0
    vec = vector_search(session, index, query_vec, pool, filters, details=details,
                        documents=documents)
    if keyword is None:
        kw = keyword_search(session, index, query, pool, filters, budget=HYBRID_POSTINGS,
                            details=details)
    else:
        kw = keyword() if callable(keyword) else keyword
    if documents and (vec or kw):
        # (both lists name each chunk's document; the vector list, and a keyword list made
        # beside it, already carry their documents' similarity: only the others are read)
        doc_sim = {c.document_id: c.scores["document"] for c in [*vec, *kw]
                   if c.document_id is not None and "document" in c.scores}
        missing = [c.document_id for c in kw
                   if c.document_id is not None and c.document_id not in doc_sim]
        if missing:
            doc_sim.update(document_similarity(session, index, query_vec, missing))
        vec = document_rescore(vec, doc_sim, DOC_VECTOR_WEIGHT)
        kw = document_rescore(kw, doc_sim, KEYWORD_DOC_WEIGHT, normalise=True)
    return fuse({"vector": vec, "keyword": kw})[:n]


T = TypeVar("T")

# every mode: at most this many chunks of one document lead the results; the rest follow in
# order (bench/retrieval.py, hybrid, all 114 questions: recall@5 of answering pages 0.705 ->
# 0.825, MRR@10 0.812 -> 0.826; vector 0.723 -> 0.762; keyword 0.526 -> 0.558)
PER_DOCUMENT = 2


def diversify(items: list[T], document_of: Callable[[T], int | None],
              per_document: int = PER_DOCUMENT) -> list[T]:
    """Keep the order, except that a document's chunks past its first ``per_document`` move
    behind every chunk that is not (in their own order): the top of the list shows more
    sources instead of one page's neighbouring chunks. The best chunk of each document keeps
    its place relative to the others; ``per_document`` 0 changes nothing."""
    if per_document <= 0:
        return items
    seen: dict[int | None, int] = {}
    lead: list[T] = []
    rest: list[T] = []
    for item in items:
        doc = document_of(item)
        n = seen.get(doc, 0)
        seen[doc] = n + 1
        (lead if doc is None or n < per_document else rest).append(item)
    return lead + rest
