"""One way to chat with any registered model: ``stream_chat(model, messages, params, tools)``.

- OpenAI-compatible endpoints are called from this process (httpx, streaming).
- Local and produced models run on a worker serving the ``gpu`` queue: the request goes out as a
  Celery task, tokens come back through a Redis stream as the worker makes them. With
  ``placement="auto"`` a chat runs in this process when no gpu worker is alive; with
  ``"local"`` it always does.

The stream is the same whatever answered: text pieces and tool calls, then ``usage``. Stop it
with ``stream.stop()``, by leaving the loop, or from anywhere with ``stop_chat(request_id)``.

Queueing: a chat for a local model waits its turn for a gpu worker (Celery's queue; the workers
take ``worker_concurrency`` chats each at once). At most ``inference_queue_size`` chats wait at
once across all processes (counted in Redis), each at most ``inference_accept_timeout_s``;
beyond either, :class:`InferenceBusy` (the API's 503 with ``Retry-After``). Chats run in this
process wait the same way for one of ``worker_concurrency`` slots.

``params`` may hold OpenAI's ``response_format`` (``json_object`` / ``json_schema``) and
``tool_choice``: endpoints get them as they are; local models are constrained to them by a
grammar (``backend.llm.constrained``), so the answer is valid JSON for the schema, or the tool
call is made, whatever the model.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import redis

from backend.accounts.actor import Actor, Role
from backend.config import get_settings
from backend.embedded import ensure_services, redis_py_url
from backend.llm.channel import (
    join_queue,
    leave_queue,
    read_events,
    redis_client,
    request_stop,
    stop_requested,
)
from backend.llm.errors import InferenceBusy, InferenceUnavailable, LLMError
from backend.llm.langchain_chat import StudioChatModel
from backend.llm.local_hf import generate_local, model_cache, renamed
from backend.llm.openai_compat import stream_chat_openai
from backend.llm.stream import ChatResult, ChatStream
from backend.llm.types import ChatEvent, GenerationParams, Message, ModelSpec, validate_messages
from backend.services.jobs import workers_alive

Placement = Literal["worker", "auto", "local"]
CHAT_TASK = "studio.inference.chat"


def channel_redis() -> redis.Redis:
    """The Redis that carries streamed tokens and stop signals (the studio's own)."""
    return redis_client(redis_py_url(ensure_services(get_settings()).redis_url))


def gpu_worker_alive() -> bool:
    return workers_alive(queue="gpu")


def _resolve(actor: Actor, model: int | str | ModelSpec) -> ModelSpec:
    if isinstance(model, ModelSpec):
        return model
    from backend.services.models import model_spec

    return model_spec(actor=actor, model=model, capability="chat")


def stream_chat(
    model: int | str | ModelSpec,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any] | GenerationParams | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    *,
    actor: Actor,
    placement: Placement = "worker",
) -> ChatStream:
    """Start a chat and return its stream. ``params``: temperature, top_p, max_new_tokens, stop,
    seed, repetition_penalty, response_format, tool_choice (over the model's defaults).
    ``tools``: OpenAI-style tool specs. Raises ValueError for bad settings and InferenceBusy when
    the wait queue is full."""
    actor.require_role(Role.builder, "chat with models directly")
    started = time.perf_counter()
    spec = _resolve(actor, model)
    msgs = validate_messages(messages)
    if isinstance(params, GenerationParams):
        gp = params
    else:
        gp = GenerationParams.from_dict({**spec.default_params, **dict(params or {})})
    tool_list = [dict(t) for t in tools] if tools else None
    if gp.tool_choice == "none":
        tool_list = None
    if gp.forced_tool is not None and not tool_list:
        raise ValueError("tool_choice asks for a tool call but no tools were given.")
    if spec.is_local and gp.constrained:
        from backend.llm.constrained import build_grammar

        build_grammar(gp, tool_list)  # a schema the engine cannot follow fails here, not later
    rid = uuid.uuid4().hex
    r = channel_redis()
    settings = get_settings()

    def stop() -> None:
        request_stop(r, rid)

    events: Iterator[ChatEvent]
    if not spec.is_local:
        events = stream_chat_openai(spec, msgs, gp, tool_list, timeout_s=settings.request_timeout_s,
                                    should_stop=lambda: stop_requested(r, rid))
        return ChatStream(events, request_id=rid, model=spec.name, stop=stop, started=started)
    if placement == "local" or (placement == "auto" and not gpu_worker_alive()):
        ticket = _in_process_gate().enter()
        events = _in_process(spec, msgs, gp, tool_list, r, rid, ticket)
        return ChatStream(events, request_id=rid, model=spec.name, stop=stop, started=started,
                          release=ticket.release)
    if placement == "worker" and not gpu_worker_alive():
        raise InferenceUnavailable(
            f"No worker serves the gpu queue, so the local model {spec.name!r} cannot run. "
            "Start one with `studio worker --queues gpu` (or `studio up`)."
        )
    join_queue(r, rid, max_waiting=settings.inference_queue_size,
               wait_s=settings.inference_accept_timeout_s,
               retry_after_s=settings.inference_retry_after_s)
    call = _WorkerCall(spec, msgs, gp, tool_list, r, rid)
    return ChatStream(call.events(), request_id=rid, model=spec.name, stop=stop,
                      started=started, start=call.send, release=lambda: leave_queue(r, rid))


class _Gate:
    """Chats run in this process: at most ``slots`` generate at once, at most ``max_waiting``
    wait (each up to ``wait_s``) for a slot; beyond that, InferenceBusy."""

    def __init__(self, slots: int, max_waiting: int, wait_s: float, retry_after_s: float) -> None:
        self.n_slots = slots
        self.slots = threading.BoundedSemaphore(slots)
        self.max_waiting = max_waiting
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s
        self.waiting = 0
        self.lock = threading.Lock()

    def enter(self) -> _Ticket:
        with self.lock:
            if self.waiting >= self.max_waiting + self.n_slots:
                raise InferenceBusy(
                    f"This process already runs and queues as many chats as it may "
                    f"({self.max_waiting} waiting). Try again in {self.retry_after_s:.0f} s, or "
                    "start a gpu worker with `studio worker --queues gpu`.",
                    retry_after_s=self.retry_after_s)
            self.waiting += 1
        return _Ticket(self)


class _Ticket:
    """A place in the gate's queue; ``wait()`` blocks until a slot is free, ``release()`` gives
    the slot (or the place) back."""

    def __init__(self, gate: _Gate) -> None:
        self.gate = gate
        self.state = "waiting"

    def wait(self) -> None:
        got = self.gate.slots.acquire(timeout=self.gate.wait_s)
        with self.gate.lock:
            self.gate.waiting -= 1
            self.state = "running" if got else "done"
        if not got:
            raise InferenceBusy(
                f"No slot to run the chat in this process within {self.gate.wait_s:.0f} s. "
                f"Try again in {self.gate.retry_after_s:.0f} s.",
                retry_after_s=self.gate.retry_after_s)

    def release(self) -> None:
        with self.gate.lock:
            state, self.state = self.state, "done"
            if state == "waiting":
                self.gate.waiting -= 1
        if state == "running":
            self.gate.slots.release()


_gate: _Gate | None = None
_gate_lock = threading.Lock()


def _in_process_gate() -> _Gate:
    global _gate
    with _gate_lock:
        if _gate is None:
            s = get_settings()
            _gate = _Gate(s.worker_concurrency, s.inference_queue_size,
                          s.inference_accept_timeout_s, s.inference_retry_after_s)
        return _gate


def _in_process(spec: ModelSpec, msgs: list[Message], gp: GenerationParams,
                tools: list[dict[str, Any]] | None, r: redis.Redis, rid: str,
                ticket: _Ticket) -> Iterator[ChatEvent]:
    try:
        ticket.wait()
        try:
            lm = model_cache().get(spec.source)
        except LLMError as exc:  # named as registered: no server path leaves in an error
            raise renamed(exc, spec.source, spec.name) from None
        yield from generate_local(lm, msgs, gp, tools, name=spec.name,
                                  should_stop=lambda: stop_requested(r, rid), where="in-process")
    finally:
        ticket.release()


class _WorkerCall:
    """A chat for a gpu worker: ``send()`` hands it to Celery (at the first read, or earlier
    through ``ChatStream.start``); ``events()`` reads what the worker streams back."""

    def __init__(self, spec: ModelSpec, msgs: list[Message], gp: GenerationParams,
                 tools: list[dict[str, Any]] | None, r: redis.Redis, rid: str) -> None:
        self.spec, self.msgs, self.gp, self.tools, self.r, self.rid = spec, msgs, gp, tools, r, rid
        self.sent = False

    def send(self) -> None:
        if self.sent:
            return
        from backend.worker.celery_app import get_celery

        request = {
            "request_id": self.rid, "model": self.spec.for_worker(), "messages": self.msgs,
            "params": self.gp.to_dict(), "tools": self.tools,
            "expires_at": time.time() + get_settings().inference_accept_timeout_s,
        }
        get_celery().send_task(CHAT_TASK, args=[request], queue="gpu")
        self.sent = True

    def events(self) -> Iterator[ChatEvent]:
        r, rid = self.r, self.rid
        s = get_settings()
        try:
            self.send()
            yield from read_events(
                r, rid, accept_timeout_s=s.inference_accept_timeout_s,
                idle_timeout_s=s.inference_idle_timeout_s,
                worker_alive=lambda host: workers_alive(queue="gpu", hostname=host),
                on_accepted=lambda _: leave_queue(r, rid),
                retry_after_s=s.inference_retry_after_s,
            )
        finally:
            leave_queue(r, rid)


def chat(model: int | str | ModelSpec, messages: Sequence[Mapping[str, Any]],
         params: Mapping[str, Any] | None = None, tools: Sequence[Mapping[str, Any]] | None = None,
         *, actor: Actor, placement: Placement = "worker") -> ChatResult:
    """The whole answer at once (text, tool calls, usage)."""
    return stream_chat(model, messages, params, tools, actor=actor, placement=placement).collect()


def stop_chat(*, actor: Actor, request_id: str) -> None:
    """Stop a running chat by its request id (e.g. from a Stop button in another script run)."""
    if not request_id or not all(c in "0123456789abcdef" for c in request_id):
        raise ValueError("Not a chat request id.")
    request_stop(channel_redis(), request_id)


def chat_model(*, actor: Actor, model: int | str | ModelSpec, placement: Placement = "worker",
               **settings: Any) -> StudioChatModel:
    """A LangChain chat model over a registered model (``bind_tools`` and
    ``with_structured_output`` work). ``settings``: StudioChatModel's fields (temperature,
    max_tokens, stop, top_p, seed, repetition_penalty, timeout, max_retries); the model's own
    defaults fill the rest. Unknown settings are refused."""
    actor.require_role(Role.builder, "chat with models directly")
    spec = _resolve(actor, model)

    def open_stream(messages: list[Message], p: dict[str, Any],
                    tools: list[dict[str, Any]] | None) -> ChatStream:
        return stream_chat(spec, messages, {**spec.default_params, **p}, tools, actor=actor,
                           placement=placement)

    llm = StudioChatModel(model=spec.name, open_stream=open_stream, **{"primable": True, **settings})
    GenerationParams.from_dict({**spec.default_params, **llm._default_settings()})  # fail early
    return llm
