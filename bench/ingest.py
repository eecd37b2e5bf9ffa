"""Ingest speed: the studio's whole ingest against ``SentenceTransformer.encode`` alone.

The studio path is the ``kb_ingest`` job run in this process on pages of Debian's python3-doc
HTML: parse and clean, split with heading paths, embed (the bundled MiniLM; ONNX unless
STUDIO_EMBEDDING_BACKEND=torch), store chunks, vectors and BM25 statistics, one transaction per
page. The baseline encodes exactly the same chunk texts with sentence-transformers (batch 64)
and does nothing else. Both get the same number of threads.

- ingest_ratio: studio chunks/s over the whole ingest / encode-only chunks/s (goal >= 0.85)
- chunks_per_s: the studio's chunks/s, wall_s: the studio's wall time for the pages
- per_1000_pages_s: wall_s scaled to 1,000 pages of the same size (python-docs pages are long:
  about 19,000 characters each, several printed pages)

Run: ``.venv/bin/python bench/ingest.py [--pages 40] [--threads 2] [--full]``. It starts its
own embedded services under a temporary folder. The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
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
    setup_environment,
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pages", type=int, default=40, help="pages to ingest (spread evenly)")
    ap.add_argument("--full", action="store_true", help="every page of the manual")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ["STUDIO_TORCH_THREADS"] = str(args.threads)
    all_pages = corpus_pages(full=True)
    step = max(1, len(all_pages) // max(1, args.pages))
    pages = all_pages if args.full else all_pages[::step][:args.pages]
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        setup_environment(Path(tmp) / "data")
        import torch
        from sentence_transformers import SentenceTransformer

        from backend.accounts.actor import Actor
        from backend.knowledge.embedding import bundled_embedder
        from backend.knowledge.ingest import prepare
        from backend.llm.embeddings import default_model_path
        from backend.services import jobs
        from backend.services import knowledge as kbs

        torch.set_num_threads(args.threads)
        actor = Actor.system()
        corpus = copy_corpus(Path(tmp) / "docs", pages)
        chars = sum(len((doc_root() / p).read_bytes()) for p in pages)
        print(f"{len(pages)} pages ({chars / 1e6:.1f} MB of HTML); {machine()}", file=sys.stderr)
        emb = bundled_embedder()
        emb.embed(["warm up"])  # model load (and the one-time ONNX export) not timed
        kb = kbs.create_knowledge_base(actor=actor, name="ingest-bench")
        t = time.perf_counter()
        job = jobs.run_inline(actor=actor, job_id=kbs.ingest_files(
            actor=actor, kb=kb.id, paths=[corpus], enqueue=False))
        wall_s = time.perf_counter() - t
        assert job.status == "succeeded", job.error
        n = kbs.get_knowledge_base(actor=actor, kb=kb.id).chunks
        texts: list[str] = []
        for rel in pages:
            doc, drafts = prepare(corpus / rel, "html", rel, chunk_size=1000, chunk_overlap=150,
                                  splitter="heading")
            texts += [d.embed_text(doc.title) for d in drafts]
        model = SentenceTransformer(default_model_path(), device="cpu")
        model.encode(["warm up"])
        t = time.perf_counter()
        model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
        encode_s = time.perf_counter() - t
        from backend.db import dispose_engines

        dispose_engines()
    ratio = (n / wall_s) / (len(texts) / encode_s)
    figures = {"ingest_ratio": round(ratio, 3), "chunks_per_s": round(n / wall_s, 2),
               "wall_s": round(wall_s, 1), "encode_chunks_per_s": round(len(texts) / encode_s, 2),
               "pages": len(pages), "chunks": n,
               "per_1000_pages_s": round(wall_s / len(pages) * 1000, 0),
               "embedder": type(emb).__name__}
    print(f"studio ingest: {n} chunks in {wall_s:.1f} s = {n / wall_s:.1f} chunks/s; "
          f"SentenceTransformer.encode alone: {len(texts) / encode_s:.1f} chunks/s; "
          f"ratio {ratio:.2f}; 1,000 such pages: {wall_s / len(pages) * 1000 / 60:.1f} min")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
