"""Reranking with a local cross-encoder or reranker (a sequence-classification model that reads
the question and a passage together and scores their relevance)."""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

_lock = threading.Lock()


@lru_cache(maxsize=2)
def _cross_encoder(source: str) -> Any:
    from sentence_transformers import CrossEncoder

    with _lock:
        try:
            return CrossEncoder(source, device="cpu")
        except Exception as exc:  # noqa: BLE001 - one readable line
            raise ValueError(f"Cannot load the reranker {source!r} as a cross-encoder: "
                             f"{type(exc).__name__}: {exc}") from exc


def rerank_scores(source: str, query: str, passages: list[str]) -> list[float]:
    if not passages:
        return []
    model = _cross_encoder(source)
    scores = model.predict([(query, p) for p in passages], show_progress_bar=False)
    out = []
    for s in scores:
        try:
            out.append(float(s))
        except TypeError:  # several labels: take the last (relevant) one
            out.append(float(list(s)[-1]))
    return out
