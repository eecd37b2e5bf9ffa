"""Search latency at 100k chunks and HNSW recall against exact search.

Real text: passages of Debian's python3-doc HTML (about 200 characters each), embedded with the
bundled MiniLM; repeated with variations up to ``--chunks`` (each copy's vector moved by a small
random offset and re-normalised, its text given a variant word), stored as one knowledge base
with its BM25 statistics (COPY, to build it quickly). Then, for real questions:
- p50/p95 latency of vector and hybrid search through ``backend.services.knowledge.search``
  (query embedding included), and of the SQL alone;
- HNSW recall@10: the share of the exact top 10 (a sequential scan) that the HNSW index returns
  at the chosen ef_search.

Run: ``.venv/bin/python bench/search.py [--chunks 100000] [--base 3000]``. It starts its own
embedded services under a temporary folder. The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.knowledge.common import (  # noqa: E402
    corpus_pages,
    doc_root,
    machine,
    questions,
    setup_environment,
)


def passages(n: int) -> list[tuple[str, str]]:
    """(page, passage) pairs: sentences of the manual packed to about 200 characters."""
    from backend.knowledge.loaders import load

    out: list[tuple[str, str]] = []
    root = doc_root()
    for rel in corpus_pages(distractors=True):
        doc = load(root / rel, "html", rel)
        for section in doc.sections:
            buf = ""
            for sentence in section.text.replace("\n", " ").split(". "):
                buf = f"{buf}. {sentence}" if buf else sentence
                if len(buf) >= 200:
                    out.append((rel, buf[:400]))
                    buf = ""
                    if len(out) >= n:
                        return out
    return out


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--base", type=int, default=3000, help="real passages embedded")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--queries", type=int, default=62)
    args = ap.parse_args()
    os.environ["STUDIO_TORCH_THREADS"] = str(args.threads)
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        setup_environment(Path(tmp) / "data")
        from sqlalchemy import text

        from backend.accounts.actor import Actor
        from backend.db import get_engine, session_scope
        from backend.knowledge import retrieval
        from backend.knowledge.embedding import bundled_embedder
        from backend.knowledge.store import vector_literal
        from backend.knowledge.terms import term_counts
        from backend.services import knowledge as kbs

        actor = Actor.system()
        print(f"{machine()}", file=sys.stderr)
        base = passages(args.base)
        emb = bundled_embedder()
        t = time.perf_counter()
        vecs = emb.embed([p for _, p in base])
        print(f"{len(base)} real passages embedded in {time.perf_counter() - t:.0f} s",
              file=sys.stderr)
        kb = kbs.create_knowledge_base(actor=actor, name="search-bench")
        index_id = kb.index["id"]
        rng = np.random.default_rng(0)
        copies = (args.chunks + len(base) - 1) // len(base)
        t = time.perf_counter()
        with session_scope() as s:
            doc_id = s.execute(text(
                "INSERT INTO kb_documents (kb_id, source, file_type, sha256, size, stored_path, "
                "status, chunk_count) VALUES (:k, 'python-docs', 'html', '-', 0, '', 'ready', 0) "
                "RETURNING id"), {"k": kb.id}).scalar()
        raw = get_engine().raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("SELECT nextval(pg_get_serial_sequence('kb_chunks', 'id'))")
            first_id = int(cur.fetchone()[0]) + 1
            chunk_buf, term_buf = io.StringIO(), io.StringIO()
            df: Counter[str] = Counter()
            total_len = 0
            n = 0
            for c in range(copies):
                noise = rng.normal(0, 0.02, size=vecs.shape).astype(np.float32) if c else 0
                v = vecs + noise
                v /= np.linalg.norm(v, axis=1, keepdims=True)
                for i, (page, passage) in enumerate(base):
                    if n >= args.chunks:
                        break
                    body = passage if c == 0 else f"{passage} (variant {c})"
                    counts = term_counts(body)
                    length = max(1, sum(counts.values()))
                    total_len += length
                    df.update(counts.keys())
                    cid = first_id + n
                    meta = json.dumps({"source": page, "title": page, "heading": "",
                                       "heading_path": [], "file_type": "html"})
                    row = [str(cid), str(index_id), str(doc_id), str(n), body, "384",
                           vector_literal(v[i]), str(length), meta]
                    chunk_buf.write("\t".join(x.replace("\\", "\\\\").replace("\t", " ")
                                              .replace("\n", " ") for x in row) + "\n")
                    for term, tf in counts.items():
                        term_buf.write(f"{cid}\t{term}\t{index_id}\t{tf}\t{length}\n")
                    n += 1
            with cur.copy("COPY kb_chunks (id, index_id, document_id, ord, text, dim, "
                          "embedding, length, metadata) FROM STDIN") as cp:
                cp.write(chunk_buf.getvalue())
            with cur.copy("COPY kb_chunk_terms (chunk_id, term, index_id, tf, dl) "
                          "FROM STDIN") as cp:
                cp.write(term_buf.getvalue())
            with cur.copy("COPY kb_term_stats (index_id, term, df) FROM STDIN") as cp:
                cp.write("".join(f"{index_id}\t{t_}\t{d}\n" for t_, d in df.items()))
            cur.execute("SELECT setval(pg_get_serial_sequence('kb_chunks', 'id'), %s)",
                        (first_id + n,))
            cur.execute("UPDATE kb_indexes SET n_chunks = %s, total_length = %s WHERE id = %s",
                        (n, total_len, index_id))
            raw.commit()
            load_s = time.perf_counter() - t
            t = time.perf_counter()
            cur.execute("REINDEX INDEX ix_kb_chunks_hnsw_384")
            cur.execute("ANALYZE kb_chunks")
            cur.execute("ANALYZE kb_chunk_terms")
            cur.execute("ANALYZE kb_term_stats")
            raw.commit()
            index_s = time.perf_counter() - t
        finally:
            raw.close()
        print(f"{n} chunks stored in {load_s:.0f} s; HNSW index built in {index_s:.0f} s",
              file=sys.stderr)
        qs = [str(q["q"]) for q in questions()][:args.queries]
        qvecs = emb.embed(qs)
        info = retrieval.IndexInfo(id=index_id, dim=384, language="en", n_chunks=n,
                                   total_length=total_len)
        recalls, sql_ms = [], []
        for qv in qvecs:
            with session_scope() as s:
                t = time.perf_counter()
                approx = [c.chunk_id for c in retrieval.vector_search(s, info, qv, 10)]
                sql_ms.append((time.perf_counter() - t) * 1000)
                exact = list(s.execute(text(
                    "SELECT id FROM kb_chunks WHERE index_id = :i ORDER BY embedding <=> "
                    "CAST(:q AS vector) LIMIT 10"), {"i": index_id, "q": vector_literal(qv)}
                ).scalars())
            recalls.append(len(set(approx) & set(exact)) / 10)
        with session_scope() as s:
            plan = "\n".join(r[0] for r in s.execute(text(
                "EXPLAIN SELECT c.id FROM kb_chunks c WHERE c.dim = 384 AND c.index_id = :i "
                "AND c.enabled ORDER BY (c.embedding::vector(384)) <=> CAST(:q AS vector(384)) "
                "LIMIT 10"), {"i": index_id, "q": vector_literal(qvecs[0])}))
        uses_hnsw = "ix_kb_chunks_hnsw_384" in plan
        lat: dict[str, list[float]] = {"vector": [], "hybrid": [], "keyword": []}
        for _ in range(2):
            for q in qs:
                for mode in lat:
                    t = time.perf_counter()
                    kbs.search(actor=actor, kb=kb.id, query=q, k=10, mode=mode)
                    lat[mode].append((time.perf_counter() - t) * 1000)
        from backend.db import dispose_engines

        dispose_engines()
    figures = {
        "chunks": n,
        "p50_ms": round(pct(lat["hybrid"], 50), 1), "p95_ms": round(pct(lat["hybrid"], 95), 1),
        "vector_p50_ms": round(pct(lat["vector"], 50), 1),
        "vector_p95_ms": round(pct(lat["vector"], 95), 1),
        "keyword_p50_ms": round(pct(lat["keyword"], 50), 1),
        "keyword_p95_ms": round(pct(lat["keyword"], 95), 1),
        "vector_sql_p50_ms": round(pct(sql_ms, 50), 1),
        "hnsw_recall_at_10": round(statistics.mean(recalls), 4),
        "ef_search": retrieval.EF_SEARCH, "hnsw_used": uses_hnsw,
    }
    print(f"chunks {n}; hybrid p50 {figures['p50_ms']} ms p95 {figures['p95_ms']} ms; vector "
          f"p50 {figures['vector_p50_ms']} ms p95 {figures['vector_p95_ms']} ms; keyword p50 "
          f"{figures['keyword_p50_ms']} ms; HNSW recall@10 {figures['hnsw_recall_at_10']} at "
          f"ef_search {retrieval.EF_SEARCH} (index used: {uses_hnsw})")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
