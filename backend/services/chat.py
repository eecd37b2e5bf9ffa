"""One way to chat with any registered model: ``stream_chat(model, messages, params, tools)``.

- OpenAI-compatible endpoints are called from this process (httpx, streaming).
- Local and produced models run on a worker serving the ``gpu`` queue: the request goes out as a
  Celery task, tokens come back through a Redis stream as the worker makes them. With
  ``placement="auto"`` a chat runs in this process when no gpu worker is alive; with
  ``"local"`` it always does.

The stream is the same whatever answered: text pieces and tool calls, then ``usage``. Stop it
with ``stream.stop()``, by leaving the loop, or from anywhere with ``stop_chat(request_id)``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import redis

from backend.accounts.actor import Actor
from backend.config import get_settings
from backend.embedded import ensure_services, redis_py_url
from backend.llm.channel import read_events, redis_client, request_stop, stop_requested
from backend.llm.errors import InferenceUnavailable
from backend.llm.langchain_chat import StudioChatModel
from backend.llm.local_hf import generate_local, model_cache
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
    seed, repetition_penalty (over the model's defaults). ``tools``: OpenAI-style tool specs."""
    started = time.perf_counter()
    spec = _resolve(actor, model)
    msgs = validate_messages(messages)
    if isinstance(params, GenerationParams):
        gp = params
    else:
        gp = GenerationParams.from_dict({**spec.default_params, **dict(params or {})})
    tool_list = [dict(t) for t in tools] if tools else None
    rid = uuid.uuid4().hex
    r = channel_redis()
    settings = get_settings()

    def stop() -> None:
        request_stop(r, rid)

    events: Iterator[ChatEvent]
    if not spec.is_local:
        events = stream_chat_openai(spec, msgs, gp, tool_list, timeout_s=settings.request_timeout_s,
                                    should_stop=lambda: stop_requested(r, rid))
    elif placement == "local" or (placement == "auto" and not gpu_worker_alive()):
        events = _in_process(spec, msgs, gp, tool_list, r, rid)
    else:
        if placement == "worker" and not gpu_worker_alive():
            raise InferenceUnavailable(
                f"No worker serves the gpu queue, so the local model {spec.name!r} cannot run. "
                "Start one with `studio worker --queues gpu` (or `studio up`)."
            )
        events = _on_worker(spec, msgs, gp, tool_list, r, rid)
    return ChatStream(events, request_id=rid, model=spec.name, stop=stop, started=started)


def _in_process(spec: ModelSpec, msgs: list[Message], gp: GenerationParams,
                tools: list[dict[str, Any]] | None, r: redis.Redis, rid: str
                ) -> Iterator[ChatEvent]:
    lm = model_cache().get(spec.source)
    yield from generate_local(lm, msgs, gp, tools, should_stop=lambda: stop_requested(r, rid),
                              where="in-process")


def _on_worker(spec: ModelSpec, msgs: list[Message], gp: GenerationParams,
               tools: list[dict[str, Any]] | None, r: redis.Redis, rid: str
               ) -> Iterator[ChatEvent]:
    from backend.worker.celery_app import get_celery

    s = get_settings()
    request = {
        "request_id": rid, "model": spec.for_worker(), "messages": msgs, "params": gp.to_dict(),
        "tools": tools, "expires_at": time.time() + s.inference_accept_timeout_s,
    }
    get_celery().send_task(CHAT_TASK, args=[request], queue="gpu")
    yield from read_events(
        r, rid, accept_timeout_s=s.inference_accept_timeout_s,
        idle_timeout_s=s.inference_idle_timeout_s,
        worker_alive=lambda host: workers_alive(queue="gpu", hostname=host),
    )


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


def chat_model(*, actor: Actor, model: int | str, placement: Placement = "worker",
               **params: Any) -> StudioChatModel:
    """A LangChain chat model over a registered model (``bind_tools`` works)."""
    spec = _resolve(actor, model)
    GenerationParams.from_dict({**spec.default_params, **params})  # fail early on bad settings

    def open_stream(messages: list[Message], p: dict[str, Any],
                    tools: list[dict[str, Any]] | None) -> ChatStream:
        return stream_chat(spec, messages, {**spec.default_params, **p}, tools, actor=actor,
                           placement=placement)

    return StudioChatModel(model_name=spec.name, params=dict(params), open_stream=open_stream)
