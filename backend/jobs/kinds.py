"""Job kinds: a name, the queue it runs on, and the plain function that does the work.

A kind's function has the signature ``fn(ctx: JobContext, params: dict) -> dict | None``; the dict
it returns is stored as the job's result. Modules that define kinds are listed in ``KIND_MODULES``
so the worker (and ``load_all``) registers them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backend.jobs.context import JobContext

JobFunction = Callable[[JobContext, dict[str, Any]], dict[str, Any] | None]

# Modules that register kinds with @job_kind. Add yours here.
KIND_MODULES: list[str] = [
    "backend.jobs.demo",
    "backend.services.prompt_eval",
    "backend.services.pretrain",
    "backend.services.knowledge_jobs",
    "backend.services.finetune",
    "backend.services.datasets",
]


@dataclass(frozen=True)
class JobKind:
    name: str
    queue: str
    fn: JobFunction
    title: str


_KINDS: dict[str, JobKind] = {}


def job_kind(name: str, *, queue: str = "cpu", title: str = "") -> Callable[[JobFunction], JobFunction]:
    if queue not in ("cpu", "gpu"):
        raise ValueError(f"queue must be 'cpu' or 'gpu', not {queue!r}")

    def register(fn: JobFunction) -> JobFunction:
        _KINDS[name] = JobKind(name=name, queue=queue, fn=fn, title=title or name)
        return fn

    return register


def load_all() -> dict[str, JobKind]:
    for module in KIND_MODULES:
        importlib.import_module(module)
    return dict(_KINDS)


def get_kind(name: str) -> JobKind:
    if name not in _KINDS:
        load_all()
    try:
        return _KINDS[name]
    except KeyError:
        raise KeyError(f"Unknown job kind {name!r}; known kinds: {', '.join(sorted(_KINDS))}") from None
