"""Search at 100k chunks: latency of vector, keyword and hybrid search, and HNSW recall@10 against
exact search, on distinct real passages.

Corpus (bench/knowledge/passages.py): sentence windows (about 260 characters) of every page of
Debian's python3-doc, the man pages, the Python standard library's docstrings and the text files
under /usr/share/doc, deduplicated: ``--chunks`` distinct passages are indexed, and every 500th
passage of the corpus is held out. Each is embedded for real with the bundled MiniLM (the vectors
are cached under ``--cache`` in blocks of 2,048 passages, each keyed by the hash of its passages,
so a re-run, or a smaller run, skips the embedding) and bulk-loaded into one knowledge base as
the store writes chunks (the same term counts, BM25 document frequencies and lengths), with the
HNSW index built after the load.

Queries: the questions of bench/knowledge/questions*.json and the first sentence of each held-out
passage (text that is not in the index, whose neighbours are). Measured:
- HNSW recall@10 against the exact top 10 (a sequential scan) and the SQL latency, for each
  ``ef_search`` of ``--ef`` (the default one is the code's ``retrieval.EF_SEARCH``);
- the SQL of each mode alone (vector, keyword BM25, hybrid) with the query vector given;
- the query embedding alone;
- the CPU time of each mode's SQL and of the embedding (this process plus, read from
  /proc/<pid>/schedstat, the Postgres backend's): on a busy machine wall times grow with the
  load, CPU times far less, so they tell what a quiet machine would show;
- each mode through the service ``backend.services.knowledge.search`` (embedding included);
- hybrid through the service with a metadata filter (the written questions);
- hybrid's top 10 with its keyword list read within ``retrieval.HYBRID_POSTINGS`` against the
  exact list.

Run: ``python bench/search.py [--chunks 100000] [--ef 40,64,100,200]``; ``--chunks 5000`` for a
quick run. It starts its own embedded services under a temporary folder. The last line is a JSON
object (``p50_ms``/``p95_ms``: hybrid search through the service).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.knowledge import passages as corpus  # noqa: E402
from bench.knowledge.common import doc_root, machine, questions, setup_environment  # noqa: E402

HNSW_DDL = ("CREATE INDEX ix_kb_chunks_hnsw_384 ON kb_chunks USING hnsw "
            "((embedding::vector(384)) vector_cosine_ops) WHERE dim = 384")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(pct(values, 50), 2), "p95": round(pct(values, 95), 2),
            "mean": round(statistics.mean(values), 2)}


HOLD_OUT_EVERY = 500


def budget_agreement(info: Any, qs: list[str], qvecs: list[Any],
                     held_out: list[tuple[str, str]]) -> dict[str, Any]:
    """Hybrid's top 10 with its keyword list read within ``retrieval.HYBRID_POSTINGS`` against
    the same search with the exact BM25 list: how much of the top 10 is the same, and for the
    held-out sentences how soon a chunk of the page each came from is found (MRR@10, hit@10)."""
    from sqlalchemy import text

    from backend.db import session_scope
    from backend.knowledge import retrieval

    pool = retrieval.hybrid_pool(10)
    overlap: list[float] = []
    tops: dict[str, list[list[int]]] = {"exact": [], "budget": []}
    with session_scope() as s:
        for q, qv in zip(qs, qvecs, strict=True):
            for name, budget in (("exact", None), ("budget", retrieval.HYBRID_POSTINGS)):
                kw = retrieval.keyword_search(s, info, q, pool, budget=budget)
                tops[name].append([c.chunk_id for c in retrieval.search(
                    s, info, query=q, query_vec=qv, k=10, mode="hybrid", keyword=kw)][:10])
            a, b = tops["exact"][-1], tops["budget"][-1]
            overlap.append(len(set(a) & set(b)) / max(1, len(a)))
        ids = sorted({i for v in tops.values() for t in v for i in t})
        source = dict(s.execute(text("SELECT id, metadata->>'source' FROM kb_chunks "
                                     "WHERE id = ANY(:i)"), {"i": ids}).all())
    first = len(qs) - len(held_out)

    def found(name: str) -> tuple[float, float]:
        rr = []
        for (page, _), top in zip(held_out, tops[name][first:], strict=True):
            rank = next((r for r, i in enumerate(top, 1) if source.get(i) == page), 0)
            rr.append(1 / rank if rank else 0.0)
        return round(statistics.mean(rr), 4), round(sum(x > 0 for x in rr) / len(rr), 3)

    mrr, hit = found("budget")
    exact_mrr, exact_hit = found("exact")
    return {"postings": retrieval.HYBRID_POSTINGS,
            "top10_overlap": round(statistics.mean(overlap), 4),
            "held_out_mrr": mrr, "held_out_hit": hit,
            "exact_held_out_mrr": exact_mrr, "exact_held_out_hit": exact_hit}


def split_corpus(chunks: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``chunks`` passages to index, and the first sentence of every HOLD_OUT_EVERY-th passage of
    the corpus (not indexed) as a query, with the page it came from (whose other passages are
    indexed). The indexed passages of a smaller run are the first ones of a larger run, so the
    vector cache serves both."""
    total = chunks + chunks // (HOLD_OUT_EVERY - 1) + 1
    everything = corpus.build(total, doc_root())
    indexed, queries = [], []
    for i, (source, passage) in enumerate(everything):
        if i % HOLD_OUT_EVERY != HOLD_OUT_EVERY // 2:
            indexed.append((source, passage))
            continue
        sents = corpus.sentences(passage)
        first = sents[0] if sents else passage
        queries.append((source, first if len(first) >= 40 else passage[:160]))
    return indexed[:chunks], queries


BLOCK = 2048


def embeddings(texts: list[str], emb: Any, cache: Path, model: str) -> Any:
    """Vectors of ``texts``, embedded in blocks of BLOCK passages; each block is cached as a .npy
    file named by the hash of its passages and the model, so an interrupted or smaller run
    reuses what was embedded."""
    import numpy as np

    folder = cache / "vectors"
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    parts = []
    embedded = 0
    for start in range(0, len(texts), BLOCK):
        block = texts[start:start + BLOCK]
        path = folder / f"{corpus.corpus_hash([('', x) for x in block], model)}.npy"
        if path.exists():
            vecs = np.load(path)
            if vecs.shape == (len(block), 384):
                parts.append(vecs)
                continue
        vecs = np.asarray(emb.embed(block), dtype=np.float32)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, vecs)
        os.replace(tmp, path)
        parts.append(vecs)
        embedded += len(block)
        rate = embedded / (time.perf_counter() - t)
        left = len(texts) - start - len(block)
        log(f"embedded {start + len(block)}/{len(texts)} ({rate:.0f}/s, about "
            f"{left / max(rate, 1e-9) / 60:.0f} min left)")
    log(f"vectors of {len(texts)} passages: {len(texts) - embedded} from the cache "
        f"({folder}), {embedded} embedded in {time.perf_counter() - t:.0f} s")
    return np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)


def copy_field(x: str) -> str:
    return x.replace("\\", "\\\\").replace("\t", " ").replace("\n", " ").replace("\r", " ")


def bulk_load(kb_id: int, index_id: int, passages: list[tuple[str, str]], vecs: Any) -> int:
    """Documents (one per source), chunks with their term counts, document frequencies, the
    index's totals and the document vectors, by COPY / one aggregate; the HNSW index is dropped
    for the load and built after it."""
    from backend.db import get_engine
    from backend.knowledge.store import vector_literal
    from backend.knowledge.terms import term_counts

    raw = get_engine().raw_connection()
    try:
        cur = raw.cursor()
        sources = list(dict.fromkeys(s for s, _ in passages))
        cur.execute("SELECT nextval(pg_get_serial_sequence('kb_documents', 'id'))")
        first_doc = int(cur.fetchone()[0]) + 1
        doc_ids = {s: first_doc + i for i, s in enumerate(sources)}
        cur.execute("SELECT nextval(pg_get_serial_sequence('kb_chunks', 'id'))")
        first_id = int(cur.fetchone()[0]) + 1
        docs, chunks, terms = io.StringIO(), io.StringIO(), io.StringIO()
        df: Counter[str] = Counter()
        per_doc: Counter[str] = Counter()
        chars: Counter[str] = Counter()
        total_len = 0
        for n, (source, text) in enumerate(passages):
            counts = term_counts(text)
            length = max(1, sum(counts.values()))
            total_len += length
            df.update(counts.keys())
            cid = first_id + n
            meta = json.dumps({"source": source, "title": source, "heading": "",
                               "heading_path": [], "file_type": "txt",
                               "document_id": doc_ids[source]})
            chunks.write("\t".join(copy_field(x) for x in (
                str(cid), str(index_id), str(doc_ids[source]), str(per_doc[source]), text,
                "384", vector_literal(vecs[n]), str(length), meta)) + "\n")
            per_doc[source] += 1
            chars[source] += len(text)
            for term, tf in counts.items():
                terms.write(f"{cid}\t{copy_field(term)}\t{index_id}\t{tf}\t{length}\n")
        for s in sources:
            sha = hashlib.sha256(s.encode()).hexdigest()
            docs.write("\t".join(copy_field(x) for x in (
                str(doc_ids[s]), str(kb_id), s, "txt", sha, "0", "", "ready", s[:500],
                str(per_doc[s]), str(chars[s]))) + "\n")
        cur.execute("DROP INDEX IF EXISTS ix_kb_chunks_hnsw_384")
        with cur.copy("COPY kb_documents (id, kb_id, source, file_type, sha256, size, "
                      "stored_path, status, title, chunk_count, char_count) FROM STDIN") as cp:
            cp.write(docs.getvalue())
        with cur.copy("COPY kb_chunks (id, index_id, document_id, ord, text, dim, embedding, "
                      "length, metadata) FROM STDIN") as cp:
            cp.write(chunks.getvalue())
        with cur.copy("COPY kb_chunk_terms (chunk_id, term, index_id, tf, dl) FROM STDIN") as cp:
            cp.write(terms.getvalue())
        with cur.copy("COPY kb_term_stats (index_id, term, df) FROM STDIN") as cp:
            cp.write("".join(f"{index_id}\t{copy_field(t)}\t{d}\n" for t, d in df.items()))
        cur.execute("SELECT setval(pg_get_serial_sequence('kb_documents', 'id'), %s)",
                    (first_doc + len(sources),))
        cur.execute("SELECT setval(pg_get_serial_sequence('kb_chunks', 'id'), %s)",
                    (first_id + len(passages),))
        cur.execute("UPDATE kb_indexes SET n_chunks = %s, total_length = %s WHERE id = %s",
                    (len(passages), total_len, index_id))
        # each document's vector, as backend.knowledge.store keeps it on write
        cur.execute("INSERT INTO kb_document_vectors (index_id, document_id, dim, embedding, "
                    "n_chunks) SELECT index_id, document_id, min(dim), sum(embedding), count(*) "
                    "FROM kb_chunks WHERE index_id = %s AND enabled "
                    "GROUP BY index_id, document_id", (index_id,))
        raw.commit()
        t = time.perf_counter()
        cur.execute("SET maintenance_work_mem = '1GB'")
        cur.execute(HNSW_DDL)
        raw.commit()
        # as autovacuum leaves a table after a large insert: visibility map set (index-only
        # scans of the BM25 postings), statistics current
        raw.driver_connection.autocommit = True
        for table in ("kb_documents", "kb_chunks", "kb_chunk_terms", "kb_term_stats",
                      "kb_document_vectors"):
            cur.execute(f"VACUUM ANALYZE {table}")
        raw.driver_connection.autocommit = False
        log(f"HNSW index built in {time.perf_counter() - t:.0f} s")
        return total_len
    finally:
        raw.close()


def backend_cpu_ns(pid: int) -> int | None:
    """CPU time a local Postgres backend has run (Linux: /proc/<pid>/schedstat), or None."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def stop_services() -> None:
    """Stop this run's embedded Postgres and Redis before their folder is removed."""
    from backend.config import get_settings
    from backend.db import dispose_engines
    from backend.embedded import stop_services_if_unused

    dispose_engines()
    stop_services_if_unused(get_settings())


def explain(info: Any, query: str, qvec: Any, hnsw_sql: str) -> None:
    """EXPLAIN ANALYZE of the statements hybrid search sends for one query (to stderr)."""
    import re

    from sqlalchemy import event

    from backend.db import get_engine, session_scope
    from backend.knowledge import retrieval

    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *a: Any) -> None:
        sent.append((statement, parameters))

    event.listen(get_engine(), "before_cursor_execute", capture)
    with session_scope() as s:
        retrieval.search(s, info, query=query, query_vec=qvec, k=10, mode="hybrid")
    event.remove(get_engine(), "before_cursor_execute", capture)
    raw = get_engine().raw_connection()
    try:
        cur = raw.cursor()
        for statement, parameters in sent:
            if statement.lstrip().upper().startswith("SET"):
                cur.execute(statement, parameters)
                continue
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            plan = "\n".join(r[0] for r in cur.fetchall())
            log(re.sub(r"'\[[-0-9.e,]+\]'", "'[query vector]'", plan) + "\n")
        raw.rollback()
    finally:
        raw.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--ef", default="40,64,100,200", help="ef_search values to sweep")
    ap.add_argument("--threads", type=int, default=2, help="threads for the bulk embedding")
    ap.add_argument("--rounds", type=int, default=2, help="passes over the queries per mode")
    ap.add_argument("--cache", type=Path, default=Path(
        os.environ.get("LLM_STUDIO_BENCH_CACHE") or Path.home() / ".cache" / "llm-studio-bench"))
    ap.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of the SQL")
    ap.add_argument("--embed-only", action="store_true",
                    help="fill the vector cache and stop (no database)")
    args = ap.parse_args()
    efs = [int(x) for x in args.ef.split(",") if x.strip()]

    started = time.perf_counter()
    t = time.perf_counter()
    passages, held_out = split_corpus(args.chunks)
    held = [q for _, q in held_out]
    qs = [str(q["q"]) for q in questions()] + held
    n_questions = len(qs) - len(held)
    log(f"{machine()}; corpus: {len(passages)} distinct passages "
        f"({dict(Counter(s.split('/')[0] for s, _ in passages))}) and {len(qs)} queries "
        f"({len(qs) - len(held)} questions, {len(held)} held-out sentences) in "
        f"{time.perf_counter() - t:.0f} s")

    with tempfile.TemporaryDirectory(prefix="bench-search-", ignore_cleanup_errors=True) as tmp:
        os.environ["STUDIO_TORCH_THREADS"] = str(args.threads)
        setup_environment(Path(tmp) / "data")
        from sqlalchemy import text

        from backend.accounts.actor import Actor
        from backend.config import get_settings, reset_settings
        from backend.db import session_scope
        from backend.knowledge import embedding, retrieval
        from backend.knowledge.store import vector_literal
        from backend.services import knowledge as kbs

        # the ONNX export of the MiniLM is made once and kept beside the vectors
        onnx_rel = Path("cache") / "onnx" / f"{embedding.ONNX_NAME}-v{embedding.EXPORT_VERSION}"
        kept = args.cache / "onnx" / onnx_rel.name / "model.onnx"
        target = get_settings().data_dir / onnx_rel / "model.onnx"
        if kept.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(kept, target)
        emb = embedding.bundled_embedder()
        log(f"embedder: {type(emb).__name__}")
        if target.exists() and not kept.exists():
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target, kept)
        if hasattr(emb, "batch_size"):
            emb.batch_size = 16  # short passages: small batches ran faster here
        model_id = f"{emb.name}-v{embedding.EXPORT_VERSION}"
        backend = get_settings().embedding_backend
        if type(emb).__name__ != "OnnxMiniLM" or backend not in ("auto", "onnx"):
            model_id += f"-{type(emb).__name__}-{backend}"  # other vectors, other cache
        vecs = embeddings([p for _, p in passages], emb, args.cache, model_id)
        if args.embed_only:
            stop_services()
            return 0

        actor = Actor.system()
        kb = kbs.create_knowledge_base(actor=actor, name="search-bench")
        index_id = int(kb.index["id"])
        t = time.perf_counter()
        total_len = bulk_load(kb.id, index_id, passages, vecs)
        n = len(passages)
        log(f"{n} chunks loaded with their BM25 statistics in {time.perf_counter() - t:.0f} s")

        # searching: the embedder as a worker or the studio runs it (one thread)
        os.environ["STUDIO_TORCH_THREADS"] = "1"
        reset_settings()
        embedding._cached = None
        emb = embedding.bundled_embedder()
        first = time.perf_counter()
        emb.embed(["the first query after start-up"])
        first_embed_ms = (time.perf_counter() - first) * 1000
        embed_ms, embed_cpu_ms = [], []
        qvecs = []
        for q in qs:
            t, c = time.perf_counter(), time.process_time()
            qvecs.append(emb.embed([q])[0])
            embed_ms.append((time.perf_counter() - t) * 1000)
            embed_cpu_ms.append((time.process_time() - c) * 1000)
        info = retrieval.IndexInfo(id=index_id, dim=384, language="en", n_chunks=n,
                                   total_length=total_len)

        # exact top 10: a sequential scan ordering by the un-indexed expression
        exact: list[list[int]] = []
        exact_ms = []
        with session_scope() as s:
            s.execute(text("SET LOCAL enable_indexscan = off"))
            for qv in qvecs:
                t = time.perf_counter()
                exact.append(list(s.execute(text(
                    "SELECT id FROM kb_chunks WHERE index_id = :i ORDER BY embedding <=> "
                    "CAST(:q AS vector) LIMIT 10").execution_options(prepare=False),
                    {"i": index_id, "q": vector_literal(qv)}).scalars()))
                exact_ms.append((time.perf_counter() - t) * 1000)
        hnsw_sql = ("SELECT c.id FROM kb_chunks c WHERE c.dim = 384 AND c.index_id = :i AND "
                    "c.enabled ORDER BY (c.embedding::vector(384)) <=> CAST(:q AS vector(384)) "
                    "LIMIT 10")
        with session_scope() as s:
            plan = "\n".join(r[0] for r in s.execute(text("EXPLAIN " + hnsw_sql),
                                                     {"i": index_id,
                                                      "q": vector_literal(qvecs[0])}))
        uses_hnsw = "ix_kb_chunks_hnsw_384" in plan
        sweep: dict[int, dict[str, float]] = {}
        for ef in efs:
            recalls, ms = [], []
            for _ in range(args.rounds):
                recalls = []
                for qv, ex in zip(qvecs, exact, strict=True):
                    with session_scope() as s:
                        conn = s.connection()
                        conn.exec_driver_sql(f"SET LOCAL hnsw.ef_search = {ef}")
                        t = time.perf_counter()
                        got = list(conn.execute(text(hnsw_sql).execution_options(prepare=False),
                                                {"i": index_id, "q": vector_literal(qv)}
                                                ).scalars())
                        ms.append((time.perf_counter() - t) * 1000)
                    recalls.append(len(set(got) & set(ex)) / max(1, len(ex)))
            sweep[ef] = {"recall_at_10": round(statistics.mean(recalls), 4),
                         "min_recall": round(min(recalls), 2), **summary(ms)}
            log(f"ef_search {ef:>4}: recall@10 {sweep[ef]['recall_at_10']:.4f} (worst query "
                f"{sweep[ef]['min_recall']}), SQL p50 {sweep[ef]['p50']} ms p95 "
                f"{sweep[ef]['p95']} ms")

        # each mode's SQL alone, as the service runs it (the code's ef_search)
        # and the CPU time they take (this process + the Postgres backend), which a busy
        # machine inflates far less than the wall time
        sql_ms: dict[str, list[float]] = {"vector": [], "keyword": [], "hybrid": []}
        cpu_ms: dict[str, list[float]] = {"vector": [], "keyword": [], "hybrid": []}
        for _ in range(args.rounds):
            for q, qv in zip(qs, qvecs, strict=True):
                for mode in sql_ms:
                    with session_scope() as s:
                        pid = int(s.execute(text("SELECT pg_backend_pid()")).scalar() or 0)
                        b0, c0 = backend_cpu_ns(pid), time.process_time()
                        t = time.perf_counter()
                        retrieval.search(s, info, query=q, query_vec=qv, k=10, mode=mode)
                        sql_ms[mode].append((time.perf_counter() - t) * 1000)
                        b1, c1 = backend_cpu_ns(pid), time.process_time()
                        if b0 is not None and b1 is not None:
                            cpu_ms[mode].append((c1 - c0) * 1000 + (b1 - b0) / 1e6)
        if args.explain:
            explain(info, qs[0], qvecs[0], hnsw_sql)
        agreement = budget_agreement(info, qs, qvecs, held_out)

        # statements each mode sends through the service (each a round trip to Postgres)
        from sqlalchemy import Engine, event

        sent: list[str] = []

        def count(*a: Any) -> None:
            sent.append(a[2])

        # (every engine: keyword searches run on a pool of their own)
        event.listen(Engine, "before_cursor_execute", count)
        statements = {}
        for mode in ("vector", "keyword", "hybrid"):
            sent.clear()
            kbs.search(actor=actor, kb=kb.id, query=qs[0], k=10, mode=mode)
            statements[mode] = len(sent)
        event.remove(Engine, "before_cursor_execute", count)

        # through the service: the query is embedded, the hits are loaded with their text
        svc_ms: dict[str, list[float]] = {"vector": [], "keyword": [], "hybrid": []}
        for _ in range(args.rounds):
            for q in qs:
                for mode in svc_ms:
                    t = time.perf_counter()
                    kbs.search(actor=actor, kb=kb.id, query=q, k=10, mode=mode)
                    svc_ms[mode].append((time.perf_counter() - t) * 1000)
        # with a metadata filter (the written questions): one every chunk passes, one on the
        # heading (the manual's pages: about a third of the chunks), one page's chunks
        filtered_ms: dict[str, list[float]] = {"every chunk": [], "a third": [], "one page": []}
        for name, flt in (("every chunk", {"file_type": "txt"}),
                          ("a third", {"heading": "python-doc"}),
                          ("one page", {"source": passages[0][0]})):
            for q in qs[:n_questions]:
                t = time.perf_counter()
                kbs.search(actor=actor, kb=kb.id, query=q, k=10, mode="hybrid", filters=flt)
                filtered_ms[name].append((time.perf_counter() - t) * 1000)
        stop_services()

    default_ef = retrieval.EF_SEARCH
    chosen = sweep.get(default_ef) or sweep[max(sweep)]
    figures: dict[str, Any] = {
        "chunks": n, "queries": len(qs),
        "p50_ms": round(pct(svc_ms["hybrid"], 50), 1),
        "p95_ms": round(pct(svc_ms["hybrid"], 95), 1),
        "hnsw_recall_at_10": chosen["recall_at_10"], "ef_search": default_ef,
        "service_ms": {m: summary(v) for m, v in svc_ms.items()},
        # the same runs by kind of query: the written questions, then the held-out sentences
        # (longer: more BM25 postings, more tokens to embed)
        "service_ms_by_query": {m: {
            "questions": summary([x for i, x in enumerate(v) if i % len(qs) < n_questions]),
            "sentences": summary([x for i, x in enumerate(v) if i % len(qs) >= n_questions]),
        } for m, v in svc_ms.items()},
        "sql_ms": {m: summary(v) for m, v in sql_ms.items()},
        "sql_cpu_ms": {m: summary(v) for m, v in cpu_ms.items() if v},
        "embed_ms": summary(embed_ms), "embed_cpu_ms": summary(embed_cpu_ms),
        "first_embed_ms": round(first_embed_ms, 1),
        "exact_scan_ms": summary(exact_ms),
        "ef_sweep": {str(k): v for k, v in sweep.items()},
        "keyword_budget": agreement,
        "hybrid_filtered_ms": {k: summary(v) for k, v in filtered_ms.items()},
        "statements_per_search": statements, "hnsw_used": uses_hnsw, "load": round(os.getloadavg()[0], 2),
        "wall_s": round(time.perf_counter() - started),
    }
    log("")
    print(f"{n} distinct chunks, {len(qs)} queries ({machine()})")
    for ef, v in sweep.items():
        mark = "  <- default" if ef == default_ef else ""
        print(f"  ef_search {ef:>4}: HNSW recall@10 {v['recall_at_10']:.4f}, SQL p50 {v['p50']} "
              f"ms p95 {v['p95']} ms{mark}")
    print(f"  exact scan: p50 {figures['exact_scan_ms']['p50']} ms")
    print(f"  query embedding: p50 {figures['embed_ms']['p50']} ms p95 "
          f"{figures['embed_ms']['p95']} ms (first call {figures['first_embed_ms']} ms); CPU "
          f"p50 {figures['embed_cpu_ms']['p50']} / p95 {figures['embed_cpu_ms']['p95']} ms")
    for mode in ("vector", "keyword", "hybrid"):
        a, b = figures["sql_ms"][mode], figures["service_ms"][mode]
        cpu = figures["sql_cpu_ms"].get(mode)
        print(f"  {mode:>7}: SQL p50 {a['p50']} / p95 {a['p95']} ms"
              + (f" (CPU p50 {cpu['p50']} / p95 {cpu['p95']} ms)" if cpu else "")
              + f"; service p50 {b['p50']} / p95 {b['p95']} ms")
    for mode in ("vector", "hybrid"):
        by = figures["service_ms_by_query"][mode]
        print(f"  {mode:>7} through the service: {n_questions} questions p50 "
              f"{by['questions']['p50']} / p95 {by['questions']['p95']} ms; "
              f"{len(qs) - n_questions} held-out sentences p50 {by['sentences']['p50']} / p95 "
              f"{by['sentences']['p95']} ms")
    a = figures["keyword_budget"]
    print(f"  hybrid's keyword list within {a['postings']} postings, against the exact list: "
          f"the same top 10 chunks {a['top10_overlap']:.3f} of the time; held-out sentences' "
          f"own pages found (MRR@10 / hit@10) {a['held_out_mrr']:.4f} / {a['held_out_hit']:.3f}"
          f" against {a['exact_held_out_mrr']:.4f} / {a['exact_held_out_hit']:.3f}")
    f = figures["hybrid_filtered_ms"]
    print(f"  hybrid with a filter ({n_questions} questions): every chunk passes p50 "
          f"{f['every chunk']['p50']} / p95 {f['every chunk']['p95']} ms; a third pass p50 "
          f"{f['a third']['p50']} / p95 {f['a third']['p95']} ms; one page p50 "
          f"{f['one page']['p50']} / p95 {f['one page']['p95']} ms")
    print("  SQL statements per search (read in autocommit: no BEGIN or COMMIT; a connection "
          f"idle for over 0.5 s is pinged first): {statements}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
