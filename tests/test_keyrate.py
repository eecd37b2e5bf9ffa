"""An API key's rate is a sliding limit: at most N requests in any 60 s, across a minute
boundary too (a fixed per-minute window let 2N through in a few seconds). Real Redis."""

from __future__ import annotations

import random
import time
import uuid

import pytest

from backend.services import agents as agents_service


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _limit(rate: int) -> agents_service.KeyLimit:
    return agents_service.KeyLimit(api_key_id=int(uuid.uuid4().int % 10**9) + 10**9,
                                   agent_id=None, agent=None, rate_per_min=rate)


def _try(limit: agents_service.KeyLimit) -> int | None:
    try:
        agents_service.check_rate(limit)
    except agents_service.RateLimited as exc:
        return exc.retry_after_s
    return None


def test_a_minute_boundary_does_not_double_the_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    minute = (int(time.time()) // 60 + 10) * 60
    clock = Clock(minute + 57.0)  # 3 s before a minute boundary
    monkeypatch.setattr(time, "time", clock)
    limit = _limit(3)
    for second in (57.0, 58.0, 59.0):
        clock.now = minute + second
        assert _try(limit) is None
    clock.now = minute + 61.3  # 4.3 s later, in the next minute
    wait = _try(limit)
    assert wait is not None and 55 <= wait <= 56  # the first of the three leaves at +117
    clock.now = minute + 116.9
    assert _try(limit) is not None
    clock.now = minute + 117.0
    assert _try(limit) is None  # one place freed
    assert _try(limit) is not None  # refused requests were not counted: still 3 in 60 s


def test_never_more_than_n_in_any_60_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock((int(time.time()) // 60 + 20) * 60 + 0.5)
    monkeypatch.setattr(time, "time", clock)
    rng = random.Random(7)
    limit = _limit(5)
    served: list[float] = []
    for _ in range(400):
        clock.now += rng.expovariate(1 / 4.0)  # about 15 a minute, in bursts
        if _try(limit) is None:
            served.append(clock.now)
    assert len(served) > 60
    for i, t in enumerate(served):
        assert sum(1 for u in served[i:] if u < t + 60) <= 5
