"""Chats wait their turn for a gpu worker (issue 9): twenty concurrent streaming clients on the
tiny model through one real worker (two chats at a time) all get their answer; 503 with
``Retry-After`` comes only when the wait queue is full or a chat waited past the limit.
Structured output travels to the worker too."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jsonschema
import pytest

from backend.accounts.actor import Actor
from backend.config import reset_settings
from backend.llm.channel import join_queue, leave_queue, waiting_count
from backend.llm.errors import InferenceBusy
from backend.services import chat as chat_service
from tests import test_api_chat as _chat
from tests.test_api_chat import HELLO, World

api_url, world = _chat.api_url, _chat.world
fake_upstream, broken_upstream = _chat.fake_upstream, _chat.broken_upstream


@pytest.fixture
def setting() -> Iterator[Any]:
    """Change STUDIO_* settings for one test (this process serves the API)."""
    saved: dict[str, str | None] = {}

    def set_(name: str, value: str) -> None:
        saved.setdefault(name, os.environ.get(name))
        os.environ[name] = value
        reset_settings()

    yield set_
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    reset_settings()


def _stream(api_url: str, key: str, body: dict[str, Any]) -> tuple[int, str, dict[str, str]]:
    with httpx.stream("POST", f"{api_url}/chat/completions", json=body, timeout=180,
                      headers={"Authorization": f"Bearer {key}"}) as resp:
        lines = [ln for ln in resp.iter_lines() if ln]
        return resp.status_code, "\n".join(lines), dict(resp.headers)


def test_twenty_concurrent_streaming_clients_all_get_answers(api_url: str, world: World,
                                                             worker: Any) -> None:
    assert chat_service.gpu_worker_alive()
    r = chat_service.channel_redis()
    most_waiting = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal most_waiting
        while not done.is_set():
            most_waiting = max(most_waiting, waiting_count(r))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    body = {"model": world.model, "messages": HELLO, "max_tokens": 16, "temperature": 0,
            "stream": True}
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda _: _stream(api_url, world.key_a, body), range(20)))
    done.set()
    watcher.join()
    errors = [(status, text[-300:]) for status, text, _ in results
              if status != 200 or not text.endswith("data: [DONE]") or '"error"' in text]
    assert errors == [], errors
    assert all(h["x-studio-placement"] == "worker" for _, _, h in results)
    answers = {"".join(json.loads(ln[6:])["choices"][0]["delta"].get("content") or ""
                       for ln in text.splitlines() if ln.startswith("data: {")
                       and json.loads(ln[6:])["choices"]) for _, text, _ in results}
    assert len(answers) == 1  # greedy: every client got the same, whole answer
    assert most_waiting > 2, "the worker took them all at once: nothing was queued"
    assert waiting_count(r) == 0


def test_a_full_queue_is_a_503_with_retry_after(api_url: str, world: World, worker: Any,
                                                setting: Any) -> None:
    setting("STUDIO_INFERENCE_QUEUE_SIZE", "0")
    setting("STUDIO_INFERENCE_RETRY_AFTER_S", "7")
    res = httpx.post(f"{api_url}/chat/completions", timeout=30,
                     headers={"Authorization": f"Bearer {world.key_a}"},
                     json={"model": world.model, "messages": HELLO, "max_tokens": 3})
    assert res.status_code == 503, res.text
    assert res.headers["retry-after"] == "7"
    err = res.json()["error"]
    assert err["code"] == "server_busy" and "already wait" in err["message"]


def test_a_chat_that_waits_too_long_gives_up_with_retry_after(world: World, worker: Any,
                                                              setting: Any) -> None:
    setting("STUDIO_INFERENCE_ACCEPT_TIMEOUT_S", "1.5")
    actor = Actor.system(world.ws_a)
    long = {"max_new_tokens": 4000, "temperature": 0}
    busy = [chat_service.stream_chat(world.model, HELLO, long, actor=actor, placement="worker")
            for _ in range(2)]  # the worker's two slots
    running = [iter(s) for s in busy]
    try:
        for it in running:
            next(it)  # generating
        started = time.monotonic()
        waiting = chat_service.stream_chat(world.model, HELLO, {"max_new_tokens": 3},
                                           actor=actor, placement="worker")
        with pytest.raises(InferenceBusy, match="within 2 s") as err:
            waiting.collect()
        assert 1.4 < time.monotonic() - started < 10
        assert err.value.retry_after_s >= 1
    finally:
        for s in busy:
            s.stop()
    # and the worker serves again; the request that gave up was dropped, not run late
    time.sleep(1)
    again = chat_service.chat(world.model, HELLO, {"max_new_tokens": 3}, actor=actor,
                              placement="worker")
    assert again.usage is not None and again.usage.completion_tokens == 3


def test_the_wait_queue_is_bounded_and_forgets_what_expired() -> None:
    r = chat_service.channel_redis()
    ids = [f"q{i}-{time.time_ns()}" for i in range(3)]
    join_queue(r, ids[0], max_waiting=2, wait_s=30, retry_after_s=3)
    join_queue(r, ids[1], max_waiting=2, wait_s=30, retry_after_s=3)
    with pytest.raises(InferenceBusy) as busy:
        join_queue(r, ids[2], max_waiting=2, wait_s=30, retry_after_s=3)
    assert busy.value.retry_after_s == 3
    leave_queue(r, ids[0])
    join_queue(r, ids[2], max_waiting=2, wait_s=0.2, retry_after_s=3)
    time.sleep(0.3)  # ids[2] waited past its limit: it no longer counts
    join_queue(r, ids[0], max_waiting=2, wait_s=30, retry_after_s=3)
    for i in ids:
        leave_queue(r, i)


def test_structured_output_through_the_worker(api_url: str, world: World, worker: Any) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"},
                                               "score": {"type": "integer"}},
              "required": ["answer", "score"], "additionalProperties": False}
    res = httpx.post(f"{api_url}/chat/completions", timeout=120,
                     headers={"Authorization": f"Bearer {world.key_a}"},
                     json={"model": world.model, "messages": HELLO, "max_tokens": 40,
                           "temperature": 1.0, "seed": 5,
                           "response_format": {"type": "json_schema", "json_schema": {
                               "name": "scored", "schema": schema}}})
    assert res.status_code == 200, res.text
    assert res.headers["x-studio-placement"] == "worker"
    jsonschema.validate(json.loads(res.json()["choices"][0]["message"]["content"]), schema)
