"""The bundled MiniLM for knowledge bases: the sentence-transformers model, or (faster on CPU,
same vectors) an ONNX export of it made once under the data folder."""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)

_lock = threading.Lock()
_cached: Any = None


def bundled_embedder() -> Any:
    """The embedder for indexes built with the bundled all-MiniLM-L6-v2."""
    global _cached
    with _lock:
        if _cached is None:
            from backend.config import get_settings
            from backend.llm.embeddings import LocalEmbedder

            s = get_settings()
            _cached = LocalEmbedder(None, batch_size=s.embedding_batch_size,
                                    device_preference=s.inference_device)
        return _cached
