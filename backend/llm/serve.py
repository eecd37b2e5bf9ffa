"""The worker's side of a local chat: take the request, load (or reuse) the model, generate and
publish every piece to the request's Redis stream as it is made. Plain function; the Celery task
only calls it."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis

from backend.llm.channel import ChannelWriter, stop_requested
from backend.llm.errors import InvalidChatRequest, LLMError
from backend.llm.local_hf import ModelCache, hide_source, model_cache, run_local_chat
from backend.llm.types import GenerationParams, ToolCall, validate_messages

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.02


class _Publisher:
    """Publishes the first text piece at once, then at most one delta per ``FLUSH_INTERVAL_S``
    (text made in between travels together). This keeps Redis round trips and the caller's
    wake-ups per token low on busy machines, while the stream still looks token by token."""

    def __init__(self, out: ChannelWriter, interval_s: float = FLUSH_INTERVAL_S) -> None:
        self.out = out
        self.interval_s = interval_s
        self.buffer: list[str] = []
        self.last_flush = 0.0

    def piece(self, piece: str | ToolCall) -> None:
        if isinstance(piece, ToolCall):
            self.flush()
            self.out.piece(piece)
            return
        self.buffer.append(piece)
        if time.perf_counter() - self.last_flush >= self.interval_s:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.out.piece("".join(self.buffer))
            self.buffer.clear()
        self.last_flush = time.perf_counter()


def serve_chat_request(request: dict[str, Any], *, r: redis.Redis, worker: str,
                       cache: ModelCache | None = None) -> str:
    """Run one chat request; returns how it ended (stop, length, stopped, tool_calls, error,
    dropped). Every outcome is also written to the stream, so the caller never hangs."""
    rid = str(request["request_id"])
    out = ChannelWriter(r, rid)
    if stop_requested(r, rid) or time.time() > float(request.get("expires_at") or "inf"):
        out.send("error", message="The chat was cancelled before a worker took it.")
        return "dropped"
    out.send("accepted", worker=worker)
    source = str(request["model"].get("source") or "")
    name = str(request["model"].get("name") or "") or None
    try:
        messages = validate_messages(request["messages"])
        params = GenerationParams.from_dict(request.get("params"))
        tools = request.get("tools") or None
        lm = (cache or model_cache()).get(source, on_load=lambda: out.send("loading"))
        publisher = _Publisher(out)
        try:
            usage = run_local_chat(
                lm, messages, params, tools, emit=publisher.piece,
                should_stop=lambda: stop_requested(r, rid), where=f"worker {worker}",
                name=name,
            )
        finally:
            publisher.flush()
    except InvalidChatRequest as exc:
        out.send("error", message=hide_source(str(exc), source, name), code="invalid_request",
                 param=exc.param)
        return "error"
    except LLMError as exc:
        out.send("error", message=hide_source(str(exc), source, name))
        return "error"
    except Exception as exc:  # noqa: BLE001 - the caller gets one line; the trace is logged
        log.exception("chat request %s failed", rid)
        out.send("error", message=f"The worker {worker} failed: {type(exc).__name__}: "
                 f"{hide_source(str(exc), source, name)}")
        return "error"
    out.send("done", **usage.to_dict())
    return usage.finish_reason
