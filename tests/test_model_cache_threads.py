"""Two models loading at once in one worker (two playground columns on two models) both load:
transformers' loading is not thread-safe, so the model cache loads one model at a time."""

from __future__ import annotations

import threading
from pathlib import Path

from backend.llm.local_hf import ModelCache
from backend.llm.tiny import build_tiny_model


def test_different_models_requested_at_once_all_load(tmp_path: Path) -> None:
    sources = [str(build_tiny_model(tmp_path / f"m{i}", seed=i)) for i in range(3)]
    cache = ModelCache(max_models=8, max_gb=10, device_preference="cpu")
    errors: list[BaseException] = []

    def get(source: str) -> None:
        try:
            cache.get(source)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=get, args=(s,)) for s in sources * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(lm.source for lm in cache.loaded()) == sorted(sources)
