"""Retrieval quality on a real manual nobody here wrote: Debian's python3-doc HTML.

Questions in plain user language, each with the pages that answer it, in two sets:
bench/knowledge/questions.json (62, the *tuning* set: the hybrid weights and the splitting and
ranking choices were made on it) and bench/knowledge/questions_heldout.json (52, the *held-out* set,
written afterwards and not used for choosing anything). Figures are printed for each set and
for all questions; the JSON line's top-level figures are for all questions, with ``tuning`` and
``heldout`` beside them. The studio's knowledge base (heading-aware splitting, title and heading path with
each chunk, bundled MiniLM, BM25 in SQL) is searched in vector, keyword and hybrid mode; the
baseline is the plain LangChain recipe on the same pages: the page text (BeautifulSoup, as
LangChain's HTML loaders give it), RecursiveCharacterTextSplitter 1000/200, the same MiniLM
through sentence-transformers, cosine similarity.

Measured per question on pages (a chunk counts for the page it came from):
- hit@1: the first chunk is from an answering page;
- recall@5: share of the answering pages among the pages of the top 5 chunks;
- MRR@10: 1 / rank of the first chunk from an answering page (0 beyond 10).

Embeddings are cached by exact text under ~/.cache/llm-studio-bench (bench/knowledge/
embed_cache.py): a re-run embeds only chunks whose text changed; ``--no-embed-cache`` skips it.

Run: ``.venv/bin/python bench/retrieval.py [--full] [--threads 2]``; on a busy machine the two
halves can run in parallel (``--only studio --save a.json``, ``--only baseline --save b.json``,
then ``--merge a.json b.json``). It starts its own embedded
services under a temporary folder. ``--full`` indexes every page of the manual (slow on 2
cores); the default is the pages the questions need plus the tutorial, FAQ and HOWTOs
(``--distractors`` adds about 130 library pages that answer no question).
The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.knowledge.common import (  # noqa: E402
    copy_corpus,
    corpus_pages,
    doc_root,
    machine,
    questions,
    setup_environment,
)

MODES = ("vector", "keyword", "hybrid")


def score(ranked_pages: list[str], relevant: set[str]) -> tuple[float, float, float]:
    hit1 = 1.0 if ranked_pages[:1] and ranked_pages[0] in relevant else 0.0
    top5 = set(ranked_pages[:5])
    recall5 = len(top5 & relevant) / len(relevant)
    mrr = 0.0
    for rank, page in enumerate(ranked_pages[:10], 1):
        if page in relevant:
            mrr = 1.0 / rank
            break
    return hit1, recall5, mrr


def baseline(pages: list[str], qs: list[dict], threads: int, use_cache: bool = True
             ) -> tuple[list[list[str]], int, float]:
    """The plain LangChain recipe, top 10 pages (by chunk) per question."""
    import numpy as np
    import torch
    from bs4 import BeautifulSoup
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from sentence_transformers import SentenceTransformer

    from backend.llm.embeddings import default_model_path

    torch.set_num_threads(threads)
    started = time.perf_counter()
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    texts, owners = [], []
    root = doc_root()
    for rel in pages:
        text = BeautifulSoup((root / rel).read_text(encoding="utf-8"), "html.parser").get_text()
        for chunk in splitter.split_text(text):
            texts.append(chunk)
            owners.append(rel)
    model = SentenceTransformer(default_model_path(), device="cpu")

    def encode(batch: list[str]) -> np.ndarray:
        return np.asarray(model.encode(batch, batch_size=64, normalize_embeddings=True,
                                       convert_to_numpy=True), dtype=np.float32)

    if use_cache:
        from bench.knowledge.embed_cache import EmbeddingCache

        cache = EmbeddingCache(f"baseline|SentenceTransformer|{default_model_path()}|cpu|"
                               f"max_len={model.max_seq_length}")
        vecs = cache.embed(texts, encode)
        qv = cache.embed([str(q["q"]) for q in qs], encode)
        print(f"baseline: embedding cache {cache.hits} hits, {cache.misses} embedded",
              file=sys.stderr)
    else:
        vecs = encode(texts)
        qv = encode([str(q["q"]) for q in qs])
    seconds = time.perf_counter() - started
    sims = qv @ vecs.T
    ranked = []
    for row in sims:
        order = np.argsort(-row)[:10]
        ranked.append([owners[i] for i in order])
    return ranked, len(texts), seconds


def studio_results(args: argparse.Namespace, qs: list[dict], pages: list[str],
                   data_dir: Path) -> dict[str, list[tuple[float, float, float]]]:
    from backend.accounts.actor import Actor
    from backend.services import jobs
    from backend.services import knowledge as kbs

    actor = Actor.system()
    cached = None
    if args.embed_cache:
        from bench.knowledge.embed_cache import install_studio_cache

        cached = install_studio_cache()
    existing = {k.name: k for k in kbs.list_knowledge_bases(actor=actor)}
    if "python-docs" in existing and args.reuse:
        kb_id = existing["python-docs"].id
        print("studio: reusing the knowledge base already built in the data folder",
              file=sys.stderr)
    else:
        corpus = copy_corpus(data_dir.parent / "python-docs", pages)
        kb_id = kbs.create_knowledge_base(actor=actor, name="python-docs").id
        t0 = time.perf_counter()
        job = jobs.run_inline(actor=actor, job_id=kbs.ingest_files(
            actor=actor, kb=kb_id, paths=[corpus], enqueue=False))
        assert job.status == "succeeded", job.error
        print(f"studio: ingest took {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    view = kbs.get_knowledge_base(actor=actor, kb=kb_id)
    print(f"studio: {view.chunks} chunks of {view.documents} pages (failed files: "
          f"{view.failed})", file=sys.stderr)
    if cached is not None:
        print(f"studio: embedding cache {cached.cache.hits} hits, {cached.cache.misses} "
              "embedded", file=sys.stderr)
    results: dict[str, list[tuple[float, float, float]]] = {m: [] for m in MODES}
    latencies: dict[str, list[float]] = {m: [] for m in MODES}
    for q in qs:
        relevant = set(q["pages"])  # type: ignore[arg-type]
        for mode in MODES:
            t = time.perf_counter()
            hits = kbs.search(actor=actor, kb=kb_id, query=str(q["q"]), k=10, mode=mode)
            latencies[mode].append((time.perf_counter() - t) * 1000)
            results[mode].append(score([h.source for h in hits], relevant))
    for mode in MODES:
        lat = sorted(latencies[mode])
        print(f"search latency {mode}: p50 {lat[len(lat) // 2]:.0f} ms", file=sys.stderr)
    return results


def table(results: dict[str, list[tuple[float, float, float]]], idx: list[int], title: str
          ) -> dict[str, dict[str, float]]:
    """Print the figures of the questions ``idx`` and return them."""
    figs: dict[str, dict[str, float]] = {"recall_at_5": {}, "mrr": {}, "hit_at_1": {}}
    print(f"\n{title}")
    print(f"{'method':<10} {'hit@1':>7} {'recall@5':>9} {'MRR@10':>7}")
    for method, rows in results.items():
        sel = [rows[i] for i in idx]
        h1 = statistics.mean(r[0] for r in sel)
        r5 = statistics.mean(r[1] for r in sel)
        mrr = statistics.mean(r[2] for r in sel)
        figs["hit_at_1"][method] = round(h1, 4)
        figs["recall_at_5"][method] = round(r5, 4)
        figs["mrr"][method] = round(mrr, 4)
        print(f"{method:<10} {h1:>7.3f} {r5:>9.3f} {mrr:>7.3f}")
    return figs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="index every page of the manual")
    ap.add_argument("--distractors", action="store_true",
                    help="add about 130 library pages that answer no question")
    ap.add_argument("--threads", type=int, default=2, help="torch / onnxruntime threads")
    ap.add_argument("--only", choices=("studio", "baseline"),
                    help="measure one side only and save it with --save (run both halves in "
                         "parallel, then --merge)")
    ap.add_argument("--save", type=Path, help="where --only writes its per-question scores")
    ap.add_argument("--merge", type=Path, nargs="+", help="print the figures of saved halves")
    ap.add_argument("--data-dir", type=Path, help="use this data folder (kept) instead of a "
                                                  "temporary one")
    ap.add_argument("--reuse", action="store_true",
                    help="with --data-dir: search the python-docs base already built there")
    ap.add_argument("--sets", nargs="+", choices=("tuning", "heldout"),
                    default=["tuning", "heldout"],
                    help="which question sets to ask (the corpus is the same either way)")
    ap.add_argument("--no-embed-cache", dest="embed_cache", action="store_false",
                    help="embed everything afresh (no cache under ~/.cache/llm-studio-bench)")
    args = ap.parse_args()
    os.environ["STUDIO_TORCH_THREADS"] = str(args.threads)
    qs = questions(tuple(args.sets))
    pages = corpus_pages(full=args.full, distractors=args.distractors)
    results: dict[str, list[tuple[float, float, float]]] = {}
    if args.merge:
        for path in args.merge:
            results.update({k: [tuple(r) for r in v]  # type: ignore[misc]
                            for k, v in json.loads(path.read_text()).items()})
    else:
        print(f"corpus: {len(pages)} pages of {doc_root()}; {len(qs)} questions; "
              f"{machine()}", file=sys.stderr)
        if args.only != "baseline":
            with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
                data_dir = args.data_dir or Path(tmp) / "data"
                setup_environment(data_dir)
                results.update(studio_results(args, qs, pages, data_dir))
                from backend.db import dispose_engines

                dispose_engines()
        if args.only != "studio":
            ranked, n_base, base_s = baseline(pages, qs, args.threads, args.embed_cache)
            results["baseline"] = [score(r, set(q["pages"]))  # type: ignore[arg-type]
                                   for r, q in zip(ranked, qs, strict=True)]
            print(f"baseline: {n_base} chunks embedded in {base_s:.0f} s", file=sys.stderr)
        if args.only:
            if args.save:
                args.save.write_text(json.dumps(results))
            print(json.dumps({"saved": str(args.save), "methods": sorted(results)}))
            return 0
    sets = {"tuning": [i for i, q in enumerate(qs) if q["set"] == "tuning"],
            "heldout": [i for i, q in enumerate(qs) if q["set"] == "heldout"],
            "all": list(range(len(qs)))}
    per_set = {name: table(results, idx, f"{name} ({len(idx)} questions)")
               for name, idx in sets.items() if idx}
    # the contract: figures for all questions at the top level, each set beside them
    figures: dict[str, object] = {**per_set.pop("all"), **per_set}
    figures["pages"] = {"corpus": len(pages), "questions": len(qs),
                        "tuning": len(sets["tuning"]), "heldout": len(sets["heldout"])}
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
