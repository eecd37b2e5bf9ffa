"""Ingest speed: the studio's whole ingest against ``SentenceTransformer.encode`` alone.

The studio path is the ``kb_ingest`` job run in this process on pages of Debian's python3-doc
HTML: parse and clean, split with heading paths, embed (the bundled MiniLM as the studio runs it:
``auto`` is bfloat16 on CPUs with bfloat16 arithmetic, else the ONNX float32 export; set
STUDIO_EMBEDDING_BACKEND=onnx|bf16|torch to compare), store chunks, vectors and BM25 statistics,
one transaction per page (the store of a group of pages overlaps the embedding of the next). The
baseline encodes exactly the same chunk texts with sentence-transformers (float32, batch 64)
and does nothing else. Both get the same number of threads.

- ingest_ratio: studio chunks/s over the whole ingest / encode-only chunks/s (goal >= 0.85)
- chunks_per_s: the studio's chunks/s, wall_s: the studio's wall time for the pages
- per_1000_pages_s: wall_s scaled to 1,000 pages of the same size (python-docs pages are long:
  about 19,000 characters of text each, several printed pages)
- langchain_s / vs_langchain: the plain LangChain recipe on the same pages (BeautifulSoup page
  text, RecursiveCharacterTextSplitter 1000/200, sentence-transformers MiniLM, batch 64), and
  the studio's wall time over it. The issue's goal ("a 1,000-page manual in at most 4 minutes,
  where the plain LangChain recipe takes about 6") is vs_langchain <= 0.67.
- printed_1000_pages_s: wall_s scaled to 1,000 printed pages of 3,000 characters of text

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


def langchain_recipe(model: object, files: list[Path]) -> tuple[float, int]:
    """The plain LangChain recipe, timed end to end (parse, split, embed; nothing stored)."""
    from bs4 import BeautifulSoup
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    t = time.perf_counter()
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    texts: list[str] = []
    for path in files:
        text = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser").get_text()
        texts += splitter.split_text(text)
    model.encode(texts, batch_size=64, normalize_embeddings=True,  # type: ignore[attr-defined]
                 convert_to_numpy=True)
    return time.perf_counter() - t, len(texts)


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
        t = time.perf_counter()
        emb.embed(texts)
        embed_only_s = time.perf_counter() - t
        text_chars = sum(len(d.text) for rel in pages for d in prepare(
            corpus / rel, "html", rel, chunk_size=1000, chunk_overlap=150, splitter="heading")[1])
        model = SentenceTransformer(default_model_path(), device="cpu")
        model.encode(["warm up"])
        t = time.perf_counter()
        model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
        encode_s = time.perf_counter() - t
        langchain_s, langchain_chunks = langchain_recipe(model, [corpus / p for p in pages])
        from backend.db import dispose_engines

        dispose_engines()
    ratio = (n / wall_s) / (len(texts) / encode_s)
    printed_pages = text_chars / 3000
    figures = {"ingest_ratio": round(ratio, 3), "chunks_per_s": round(n / wall_s, 2),
               "wall_s": round(wall_s, 1), "encode_chunks_per_s": round(len(texts) / encode_s, 2),
               "embed_only_s": round(embed_only_s, 1), "pages": len(pages), "chunks": n,
               "text_chars": text_chars, "per_1000_pages_s": round(wall_s / len(pages) * 1000, 0),
               "printed_1000_pages_s": round(wall_s / printed_pages * 1000, 0),
               "langchain_s": round(langchain_s, 1), "langchain_chunks": langchain_chunks,
               "vs_langchain": round(wall_s / langchain_s, 3),
               "embedder": getattr(emb, "variant", "") or type(emb).__name__, "load": round(os.getloadavg()[0], 1)}
    print(f"studio ingest: {n} chunks in {wall_s:.1f} s = {n / wall_s:.1f} chunks/s "
          f"(embedding alone {embed_only_s:.1f} s); SentenceTransformer.encode alone: "
          f"{len(texts) / encode_s:.1f} chunks/s; ratio {ratio:.2f}")
    print(f"plain LangChain recipe on the same pages: {langchain_chunks} chunks in "
          f"{langchain_s:.1f} s; studio / LangChain = {wall_s / langchain_s:.2f} "
          f"(goal <= 0.67: 4 min where LangChain takes 6)")
    print(f"1,000 such HTML pages: {wall_s / len(pages) * 1000 / 60:.1f} min; 1,000 printed pages "
          f"({printed_pages:.0f} here at 3,000 characters): "
          f"{wall_s / printed_pages * 1000 / 60:.1f} min")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
