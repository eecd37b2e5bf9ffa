"""Writing and removing a document's chunks with their BM25 statistics and its document vector,
inside the caller's transaction (one document, one transaction: nothing half-indexed survives a
crash). Whoever changes chunks another way (``enabled``) calls ``refresh_document_vectors``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.orm import Session

from backend.knowledge.terms import term_counts
from backend.models.knowledge import (
    MIGRATED_HNSW_DIMS,
    ChunkTerm,
    KnowledgeChunk,
    KnowledgeIndex,
)


def vector_literal(vec: Sequence[float] | np.ndarray) -> str:
    values = vec.tolist() if isinstance(vec, np.ndarray) else [float(x) for x in vec]
    return "[" + ",".join(map("{:.7g}".format, values)) + "]"


def ensure_hnsw_index(session: Session, dim: int) -> None:
    """An HNSW index for chunks of this dimension (the 384 one comes with the migration)."""
    if dim in MIGRATED_HNSW_DIMS:
        return
    if not 1 <= dim <= 2000:
        return  # pgvector's HNSW stops at 2000 dimensions: exact search serves those
    session.execute(text(
        f"CREATE INDEX IF NOT EXISTS ix_kb_chunks_hnsw_{int(dim)} ON kb_chunks USING hnsw "
        f"((embedding::vector({int(dim)})) vector_cosine_ops) WHERE dim = {int(dim)}"
    ))


def write_chunks(session: Session, *, index: KnowledgeIndex, document_id: int,
                 texts: Sequence[str], embed_texts: Sequence[str], vectors: np.ndarray,
                 metas: Sequence[dict[str, Any]], start_ord: int = 0) -> list[int]:
    """Insert chunks, their term frequencies, and add to the index's statistics."""
    if not texts:
        return []
    counts = [term_counts(t, index.language) for t in embed_texts]
    lengths = [max(1, sum(c.values())) for c in counts]
    rows = [
        {"index_id": index.id, "document_id": document_id, "ord": start_ord + i,
         "text": texts[i], "dim": index.dim, "embedding": np.asarray(vectors[i], dtype=np.float32),
         "length": lengths[i], "meta": metas[i]}
        for i in range(len(texts))
    ]
    ids = list(session.execute(insert(KnowledgeChunk).returning(KnowledgeChunk.id), rows
                               ).scalars())
    _copy_terms(session, [(cid, term, index.id, tf, lengths[i])
                          for i, cid in enumerate(ids) for term, tf in counts[i].items()])
    df: Counter[str] = Counter()
    for c in counts:
        df.update(c.keys())
    _add_df(session, index.id, df)
    session.execute(update(KnowledgeIndex).where(KnowledgeIndex.id == index.id).values(
        n_chunks=KnowledgeIndex.n_chunks + len(ids),
        total_length=KnowledgeIndex.total_length + sum(lengths)))
    refresh_document_vectors(session, [(index.id, document_id)])
    return ids


def refresh_document_vectors(session: Session, pairs: Sequence[tuple[int, int]]) -> None:
    """Recompute the stored vector of each ``(index_id, document_id)`` from its enabled chunks
    (their sum: the direction of their mean) after its chunks changed; a document with no
    enabled chunk left has no row. Reads the chunks as this transaction sees them."""
    keys = sorted({(int(i), int(d)) for i, d in pairs})
    if not keys:
        return
    session.flush()  # chunk edits made through the ORM
    params = {"ix": [i for i, _ in keys], "docs": [d for _, d in keys]}
    keyed = "SELECT * FROM unnest(CAST(:ix AS bigint[]), CAST(:docs AS bigint[])) AS k(i, d)"
    session.execute(text(
        "INSERT INTO kb_document_vectors (index_id, document_id, dim, embedding, n_chunks) "
        "SELECT c.index_id, c.document_id, min(c.dim), sum(c.embedding), count(*) "
        f"FROM kb_chunks c JOIN ({keyed}) k ON c.index_id = k.i AND c.document_id = k.d "
        "WHERE c.enabled GROUP BY c.index_id, c.document_id ORDER BY 1, 2 "
        "ON CONFLICT (index_id, document_id) DO UPDATE SET dim = excluded.dim, "
        "embedding = excluded.embedding, n_chunks = excluded.n_chunks"), params)
    session.execute(text(
        f"DELETE FROM kb_document_vectors v USING ({keyed}) k "
        "WHERE v.index_id = k.i AND v.document_id = k.d AND NOT EXISTS ("
        "SELECT 1 FROM kb_chunks c WHERE c.index_id = k.i AND c.document_id = k.d "
        "AND c.enabled)"), params)


def _copy_terms(session: Session, rows: Sequence[tuple[int, str, int, int, int]]) -> None:
    """Term rows ``(chunk_id, term, index_id, tf, dl)`` by COPY on the session's own psycopg
    connection (same transaction; the settings only accept psycopg URLs): a multi-row INSERT of
    thousands of rows costs more to build than to run."""
    if not rows:
        return
    conn = session.connection().connection.driver_connection
    with conn.cursor() as cur, cur.copy(  # type: ignore[union-attr]
            "COPY kb_chunk_terms (chunk_id, term, index_id, tf, dl) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _add_df(session: Session, index_id: int, df: Counter[str]) -> None:
    if not df:
        return
    # in term order, so concurrent writers take row locks in one order (no deadlock)
    items = sorted(df.items())
    session.execute(text(
        "INSERT INTO kb_term_stats (index_id, term, df)"
        " SELECT :index_id, t.term, t.n FROM unnest(CAST(:terms AS text[]),"
        " CAST(:dfs AS integer[])) AS t(term, n) ORDER BY t.term"
        " ON CONFLICT (index_id, term) DO UPDATE SET df = kb_term_stats.df + excluded.df"),
        {"index_id": index_id, "terms": [t for t, _ in items], "dfs": [n for _, n in items]})


def remove_chunks(session: Session, *, chunk_ids: Sequence[int]) -> int:
    """Delete chunks and take them out of the statistics of their index."""
    if not chunk_ids:
        return 0
    ids = list(chunk_ids)
    # lock their indexes first, in id order, as every writer does (no deadlock with a re-index
    # writing into the index it builds)
    session.execute(select(KnowledgeIndex.id).where(KnowledgeIndex.id.in_(
        select(KnowledgeChunk.index_id).where(KnowledgeChunk.id.in_(ids)).distinct()
    )).order_by(KnowledgeIndex.id).with_for_update()).all()
    docs = [(int(i), int(d)) for i, d in session.execute(
        select(KnowledgeChunk.index_id, KnowledgeChunk.document_id)
        .where(KnowledgeChunk.id.in_(ids)).distinct()).all()]
    per_index = session.execute(
        select(KnowledgeChunk.index_id, text("count(*)"), text("coalesce(sum(length), 0)"))
        .where(KnowledgeChunk.id.in_(ids)).group_by(KnowledgeChunk.index_id)).all()
    session.execute(text(
        "UPDATE kb_term_stats s SET df = s.df - c.n FROM ("
        " SELECT index_id, term, count(*) AS n FROM kb_chunk_terms WHERE chunk_id = ANY(:ids)"
        " GROUP BY index_id, term ORDER BY index_id, term) c"
        " WHERE s.index_id = c.index_id AND s.term = c.term"), {"ids": ids})
    for index_id, n, total in per_index:
        session.execute(update(KnowledgeIndex).where(KnowledgeIndex.id == index_id).values(
            n_chunks=KnowledgeIndex.n_chunks - int(n),
            total_length=KnowledgeIndex.total_length - int(total)))
    session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.id.in_(ids)))
    refresh_document_vectors(session, docs)
    return len(ids)


def remove_document_chunks(session: Session, *, document_id: int,
                           index_id: int | None = None) -> int:
    stmt = select(KnowledgeChunk.id).where(KnowledgeChunk.document_id == document_id)
    if index_id is not None:
        stmt = stmt.where(KnowledgeChunk.index_id == index_id)
    return remove_chunks(session, chunk_ids=list(session.execute(stmt).scalars()))


def rewrite_chunk(session: Session, *, chunk: KnowledgeChunk, index: KnowledgeIndex,
                  new_text: str, embed_text: str, vector: np.ndarray) -> None:
    """An edited chunk: new text, new embedding, new term statistics."""
    old = Counter(dict(session.execute(
        select(ChunkTerm.term, ChunkTerm.tf).where(ChunkTerm.chunk_id == chunk.id)).all()))
    new = term_counts(embed_text, index.language)
    length = max(1, sum(new.values()))
    session.execute(delete(ChunkTerm).where(ChunkTerm.chunk_id == chunk.id))
    _copy_terms(session, [(chunk.id, t, index.id, tf, length) for t, tf in new.items()])
    gone = sorted(set(old) - set(new))
    if gone:
        session.execute(text("UPDATE kb_term_stats SET df = df - 1 WHERE index_id = :i AND "
                             "term = ANY(:t)"), {"i": index.id, "t": gone})
    _add_df(session, index.id, Counter({t: 1 for t in set(new) - set(old)}))
    session.execute(update(KnowledgeIndex).where(KnowledgeIndex.id == index.id).values(
        total_length=KnowledgeIndex.total_length - chunk.length + length))
    chunk.text = new_text
    chunk.length = length
    chunk.embedding = np.asarray(vector, dtype=np.float32)
    chunk.edited = True
    refresh_document_vectors(session, [(chunk.index_id, chunk.document_id)])
