"""A bench-only embedding cache: vectors kept by the exact text embedded and the embedder's
identity, so a re-run of a benchmark embeds only the chunks whose text changed.

It cannot change results: a hit returns the float32 vector that the same embedder (same class,
model folder, export version, sequence limit) produced for exactly that text in an earlier run;
a miss is embedded by the real embedder and stored. Delete the file (or pass
``--no-embed-cache`` to the benchmark) to start afresh. Kept in ``~/.cache/llm-studio-bench``
(``LLM_STUDIO_BENCH_CACHE`` overrides), never inside the studio's data.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def cache_path() -> Path:
    root = Path(os.environ.get("LLM_STUDIO_BENCH_CACHE")
                or Path.home() / ".cache" / "llm-studio-bench")
    root.mkdir(parents=True, exist_ok=True)
    return root / "embeddings.sqlite"


class EmbeddingCache:
    PART = 512

    def __init__(self, model_id: str, path: Path | None = None) -> None:
        self.model_id = model_id
        self.path = path or cache_path()
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=60)
        self._db.execute("CREATE TABLE IF NOT EXISTS vecs (key TEXT PRIMARY KEY, dim INTEGER, "
                         "vec BLOB)")
        self._db.commit()
        self.hits = 0
        self.misses = 0

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.model_id}\0{text}".encode()).hexdigest()

    def embed(self, texts: Sequence[str], compute: Callable[[list[str]], np.ndarray]
              ) -> np.ndarray:
        texts = list(texts)
        keys = [self._key(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                part = keys[start:start + 500]
                marks = ",".join("?" * len(part))
                for key, dim, blob in self._db.execute(
                        f"SELECT key, dim, vec FROM vecs WHERE key IN ({marks})", part):
                    found[key] = np.frombuffer(blob, dtype=np.float32, count=int(dim))
        missing = [i for i, k in enumerate(keys) if k not in found]
        # each distinct missing text once
        todo: dict[str, int] = {}
        for i in missing:
            todo.setdefault(keys[i], i)
        pending = list(todo.items())
        # in parts, each stored at once: an interrupted run keeps what it embedded
        for start in range(0, len(pending), self.PART):
            part = pending[start:start + self.PART]
            vecs = np.asarray(compute([texts[i] for _, i in part]), dtype=np.float32)
            with self._lock:
                self._db.executemany(
                    "INSERT OR REPLACE INTO vecs (key, dim, vec) VALUES (?, ?, ?)",
                    [(k, int(v.shape[0]), v.tobytes())
                     for (k, _), v in zip(part, vecs, strict=True)])
                self._db.commit()
            for (k, _), v in zip(part, vecs, strict=True):
                found[k] = v
        self.misses += len(todo)
        self.hits += len(texts) - len(missing)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32)


class CachedEmbedder:
    """Wraps a studio embedder (``embed(texts) -> ndarray``) with the cache."""

    def __init__(self, inner: Any, model_id: str) -> None:
        self.inner = inner
        self.cache = EmbeddingCache(model_id)
        self.name = getattr(inner, "name", model_id)

    def dimension(self) -> int:
        return int(self.inner.dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.cache.embed(texts, lambda todo: np.asarray(self.inner.embed(todo)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def studio_model_id(inner: Any) -> str:
    """What makes the bundled embedder's vectors what they are."""
    from backend.knowledge import embedding

    kind = type(inner).__name__
    parts = [kind, str(getattr(inner, "name", "")), f"max_len={getattr(inner, 'max_len', '')}"]
    if kind == "OnnxMiniLM":
        parts.append(f"export=v{embedding.EXPORT_VERSION}")
    if getattr(inner, "variant", ""):  # onnx-fp32 / onnx-int8 / torch-bf16: different vectors
        parts.append(f"variant={inner.variant}")
    model = getattr(inner, "model_path", None) or getattr(inner, "source", None)
    if model:
        parts.append(str(model))
    if getattr(inner, "device", None):
        parts.append(f"device={inner.device}")
    return "|".join(parts)


def install_studio_cache() -> CachedEmbedder:
    """Make the studio's bundled embedder (ingest and queries) go through the cache."""
    from backend.knowledge import embedding

    inner = embedding.bundled_embedder()
    if isinstance(inner, CachedEmbedder):
        return inner
    cached = CachedEmbedder(inner, studio_model_id(inner))
    with embedding._lock:
        embedding._cached = cached
    return cached
