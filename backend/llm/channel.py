"""The wire between a chat's caller and the worker that runs it: one Redis stream per request.

The worker appends events (``accepted``, ``loading``, ``delta``, ``tool_call``, ``done``,
``error``) with XADD; the caller reads them with XREAD BLOCK as they come. Stopping is a key the
worker polls. Keys expire, so an abandoned request leaves nothing behind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

import redis

from backend.llm.errors import (
    InferenceBusy,
    InferenceTimeout,
    InvalidChatRequest,
    LLMError,
)
from backend.llm.types import ChatEvent, ToolCall, Usage

KEY_TTL_S = 900
READ_SLICE_S = 1.0  # a blocked read wakes this often to check that its worker lives


def events_key(request_id: str) -> str:
    return f"studio:chat:{request_id}:events"


def stop_key(request_id: str) -> str:
    return f"studio:chat:{request_id}:stop"


WAITING_KEY = "studio:chat:waiting"  # sorted set: request id -> the time it stops waiting


def join_queue(r: redis.Redis, request_id: str, *, max_waiting: int, wait_s: float,
               retry_after_s: float) -> None:
    """Count a chat among those waiting for a gpu worker, or raise InferenceBusy when
    ``max_waiting`` already wait. Atomic across processes; entries past their time drop out."""
    now = time.time()
    pipe = r.pipeline(transaction=True)
    pipe.zremrangebyscore(WAITING_KEY, "-inf", now)
    pipe.zadd(WAITING_KEY, {request_id: now + wait_s})
    pipe.zcard(WAITING_KEY)
    pipe.expire(WAITING_KEY, int(wait_s) + KEY_TTL_S)
    waiting = int(pipe.execute()[2])
    if waiting > max_waiting:
        r.zrem(WAITING_KEY, request_id)
        raise InferenceBusy(
            f"All gpu workers are busy and {max_waiting} chats already wait for one. Try again "
            f"in {retry_after_s:.0f} s, or start more workers with `studio worker --queues gpu`.",
            retry_after_s=retry_after_s)


def leave_queue(r: redis.Redis, request_id: str) -> None:
    r.zrem(WAITING_KEY, request_id)


def waiting_count(r: redis.Redis) -> int:
    r.zremrangebyscore(WAITING_KEY, "-inf", time.time())
    return int(r.zcard(WAITING_KEY))  # type: ignore[arg-type]


@lru_cache(maxsize=4)
def redis_client(url: str) -> redis.Redis:
    """One connection pool per Redis URL per process (``url`` in redis-py form)."""
    return redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


def request_stop(r: redis.Redis, request_id: str) -> None:
    r.set(stop_key(request_id), "1", ex=KEY_TTL_S)


def stop_requested(r: redis.Redis, request_id: str) -> bool:
    return bool(r.exists(stop_key(request_id)))


class ChannelWriter:
    """The worker's end: append events to the request's stream."""

    def __init__(self, r: redis.Redis, request_id: str) -> None:
        self.r = r
        self.key = events_key(request_id)
        self._expiry_set = False

    def send(self, kind: str, **data: Any) -> None:
        fields = {"t": kind, "d": json.dumps(data, ensure_ascii=False)}
        if self._expiry_set:
            self.r.xadd(self.key, fields)  # type: ignore[arg-type]
            return
        pipe = self.r.pipeline(transaction=False)
        pipe.xadd(self.key, fields)  # type: ignore[arg-type]
        pipe.expire(self.key, KEY_TTL_S)
        pipe.execute()
        self._expiry_set = True

    def piece(self, piece: str | ToolCall) -> None:
        if isinstance(piece, str):
            self.send("delta", text=piece)
        else:
            self.send("tool_call", id=piece.id, name=piece.name, arguments=piece.arguments)


def read_events(
    r: redis.Redis,
    request_id: str,
    *,
    accept_timeout_s: float,
    idle_timeout_s: float,
    worker_alive: Callable[[str], bool] | None = None,
    on_accepted: Callable[[str], None] | None = None,
    retry_after_s: float = 5,
) -> Iterator[ChatEvent]:
    """The caller's end: yield text pieces, tool calls and finally the Usage.

    Raises InferenceBusy when no worker takes the request within ``accept_timeout_s``,
    InferenceTimeout when the worker goes silent for ``idle_timeout_s`` (or dies), and LLMError
    with the worker's message when generation fails there.
    """
    key = events_key(request_id)
    last_id = "0-0"
    worker: str | None = None
    started = time.monotonic()
    last_event = started
    while True:
        now = time.monotonic()
        limit = (started + accept_timeout_s) if worker is None else (last_event + idle_timeout_s)
        if now >= limit:
            request_stop(r, request_id)  # a worker that takes it late drops it at once
            if worker is None:
                raise InferenceBusy(
                    f"No gpu worker picked up the chat within {accept_timeout_s:.0f} s: all "
                    "workers are busy or stopped. Try again, or start one with "
                    "`studio worker --queues gpu`.", retry_after_s=retry_after_s)
            raise InferenceTimeout(
                f"The worker {worker} sent nothing for {idle_timeout_s:.0f} s; the chat was "
                "stopped."
            )
        block_ms = max(1, int(min(READ_SLICE_S, limit - now) * 1000))
        reply: Any = r.xread({key: last_id}, count=256, block=block_ms)
        if not reply:
            if worker is not None and worker_alive is not None and not worker_alive(worker):
                raise InferenceTimeout(
                    f"The worker {worker} stopped while answering. Try again."
                )
            continue
        last_event = time.monotonic()
        for entry_id, fields in reply[0][1]:
            last_id = entry_id
            kind = fields[b"t"].decode()
            data = json.loads(fields[b"d"])
            if kind == "delta":
                yield data["text"]
            elif kind == "tool_call":
                yield ToolCall(id=data["id"], name=data["name"], arguments=data["arguments"])
            elif kind == "accepted":
                worker = data["worker"]
                if on_accepted is not None:
                    on_accepted(worker)
            elif kind == "loading":
                continue
            elif kind == "done":
                yield Usage.from_dict(data)
                return
            elif kind == "error":
                if data.get("code") == "invalid_request":
                    raise InvalidChatRequest(data["message"], param=data.get("param"))
                raise LLMError(data["message"])
