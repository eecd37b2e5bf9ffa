"""``POST /v1/chat/completions``: chat with a model registered in the API key's workspace, as
OpenAI's API does it, so the ``openai`` client and LangChain's ``ChatOpenAI`` work unchanged.

The chat itself is ``backend.services.chat.stream_chat``. A local model runs on a gpu worker when
one is alive and in this process otherwise; the ``x-studio-placement`` header says which
(``worker``, ``in-process``, or ``endpoint`` for an OpenAI-compatible model). With
``"stream": true`` the answer comes as Server-Sent Events of ``chat.completion.chunk`` objects
ending with ``data: [DONE]``; a client that goes away stops the generation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from backend.accounts.actor import Actor, PermissionDenied, Role
from backend.api import agent_serving
from backend.api.auth import (
    DB_RETRY_AFTER_S,
    RateLimited,
    database_unavailable_body,
    error_body,
    require_actor,
)
from backend.api.chat_request import (
    BadRequest,
    ChatCompletionRequest,
    chat_messages,
    chat_params,
    chat_tools,
    parse_body,
)
from backend.api.schemas import SSE_DESCRIPTION, responses
from backend.jobs.outage import is_unreachable
from backend.llm.constrained import check_grammar
from backend.llm.errors import (
    EndpointError,
    InferenceBusy,
    InferenceTimeout,
    InferenceUnavailable,
    InvalidChatRequest,
    LLMError,
)
from backend.llm.stream import ChatStream
from backend.llm.types import ChatPiece, GenerationParams, ModelSpec, ToolCall, Usage
from backend.services import agents as agents_service
from backend.services import chat as chat_service
from backend.services import models as models_service

log = logging.getLogger(__name__)
router = APIRouter()

_END = object()
DISCONNECT_POLL_S = 0.5


def _error(status: int, message: str, *, type_: str, code: str,
           param: str | None = None) -> JSONResponse:
    body = error_body(message, type_=type_, code=code)
    body["error"]["param"] = param
    return JSONResponse(status_code=status, content=body)


def _not_found(name: str) -> JSONResponse:
    return _error(404, f"The model {name!r} does not exist in this key's workspace. "
                       "GET /v1/models (client.models.list()) lists the models you may use.",
                  type_="invalid_request_error", code="model_not_found", param="model")


def _failure(exc: Exception) -> tuple[int, dict[str, dict[str, Any]]]:
    """An exception as (HTTP status, OpenAI-style error body); unexpected ones are logged."""
    if is_unreachable(exc):
        return 503, database_unavailable_body(exc)
    if isinstance(exc, BadRequest | InvalidChatRequest):
        status, type_, code = 400, "invalid_request_error", getattr(exc, "code", "invalid_request")
    elif isinstance(exc, RateLimited):
        status, type_, code = 429, "rate_limit_error", "rate_limit_exceeded"
    elif isinstance(exc, InferenceBusy):
        status, type_, code = 503, "server_error", "server_busy"
    elif isinstance(exc, InferenceUnavailable | InferenceTimeout):
        status, type_, code = 503, "server_error", "model_unavailable"
    elif isinstance(exc, EndpointError):
        status, type_, code = 502, "server_error", "upstream_error"
    elif isinstance(exc, LLMError):
        status, type_, code = 500, "server_error", "model_error"
    elif isinstance(exc, PermissionDenied):
        status, type_, code = 403, "permission_error", "permission_denied"
    elif isinstance(exc, ValueError):  # messages and generation settings checked by the service
        status, type_, code = 400, "invalid_request_error", "invalid_request"
    else:
        log.exception("chat completion failed")
        return 500, error_body("The chat failed on the server; the API log has the details.",
                               type_="server_error", code="internal_error")
    body = error_body(str(exc), type_=type_, code=code)
    body["error"]["param"] = getattr(exc, "param", None)
    return status, body


def _error_response(exc: Exception, headers: dict[str, str] | None = None) -> JSONResponse:
    status, body = _failure(exc)
    headers = dict(headers or {})
    retry = getattr(exc, "retry_after_s", None)
    if is_unreachable(exc):
        retry = DB_RETRY_AFTER_S
    if status in (429, 503) and retry is not None:
        headers["Retry-After"] = str(max(1, round(retry)))
    return JSONResponse(status_code=status, content=body, headers=headers)


def _resolve(actor: Actor, name: str) -> ModelSpec | None:
    """The chat model called ``name`` in the key's own workspace (None: not there, whatever
    other workspaces hold, admins' keys included)."""
    name = name.strip()
    if not actor.has_role(Role.builder):
        # a model of the workspace is refused (403); any other name is not there (404)
        peek = replace(actor, role=Role.builder)
        if not any(m.name == name for m in models_service.list_models(actor=peek)):
            return None
        raise PermissionDenied(
            f"{actor.username} ({actor.role.value}) may chat with the workspace's published bots "
            f"only, and {name!r} is not one of them (GET /v1/models lists them). Chatting with a "
            "model directly needs the builder role. Ask an admin.")
    view = next((m for m in models_service.list_models(actor=actor) if m.name == name), None)
    if view is None:
        return None
    if "chat" not in view.capabilities:
        raise BadRequest(f"The model {name!r} is not registered for chat (its capabilities: "
                         f"{', '.join(view.capabilities)}). Pick a chat model from GET /v1/models.",
                         param="model")
    return models_service.model_spec(actor=actor, model=view.id)


def _start(actor: Actor, req: ChatCompletionRequest,
           limit: agents_service.KeyLimit | None = None) -> tuple[ChatStream, str] | None:
    """Open the chat; (stream, placement) or None for an unknown model. The one dispatch point:
    what ``req.model`` names decides who answers (a registered model here; published agents are
    added as one more branch). The request counts against the key's rate (``limit``) only once
    its model is found: a refused request costs nothing."""
    spec = _resolve(actor, req.model)
    if spec is None:
        return None
    agent_serving.charge_rate(limit)
    return _start_model(actor, spec, req)


def _start_model(actor: Actor, spec: ModelSpec, req: ChatCompletionRequest
                 ) -> tuple[ChatStream, str]:
    """A registered model: an endpoint, or a local one on a gpu worker (in-process without)."""
    placement: chat_service.Placement
    if not spec.is_local:
        placement, where = "auto", "endpoint"
    elif chat_service.gpu_worker_alive():
        placement, where = "worker", "worker"
    else:
        placement, where = "local", "in-process"
    params, tools = chat_params(req, is_local=spec.is_local), chat_tools(req)
    if spec.is_local and (params.get("response_format") or params.get("tool_choice")):
        # a schema the grammar engine cannot follow is a 400 naming the field, before any queue
        check_grammar(GenerationParams.from_dict(params), tools)
    stream = chat_service.stream_chat(spec, chat_messages(req), params, tools, actor=actor,
                                      placement=placement)
    return stream, where


def _next(it: Iterator[ChatPiece]) -> Any:
    return next(it, _END)


def _finish_reason(usage: Usage | None, calls: int) -> str:
    if calls:
        return "tool_calls"
    reason = usage.finish_reason if usage else "stop"
    return reason if reason in ("stop", "length", "tool_calls") else "stop"


def _usage(usage: Usage | None) -> dict[str, int]:
    prompt = (usage.prompt_tokens if usage else 0) or 0
    completion = usage.completion_tokens if usage else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


_OPENAPI_EXTRA = {
    "requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}}}},
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The answer: a chat.completion object, or with `\"stream\": true` an "
                         "event stream of chat.completion.chunk objects.",
          "content": {"application/json": {"schema": {
                          "$ref": "#/components/schemas/ChatCompletion"}},
                      # the stream as a text, and each event's data (OpenAPI 3.2's itemSchema)
                      "text/event-stream": {"schema": {"type": "string",
                                                       "description": SSE_DESCRIPTION},
                                            "itemSchema": {
                          "$ref": "#/components/schemas/ChatCompletionStreamEvent"},
                                            "x-chunk-schema": {
                          "$ref": "#/components/schemas/ChatCompletionChunk"}}}},
    **responses(400, 401, 403, 404, 429, 502, 503),
}


@router.post("/v1/chat/completions", response_model=None, openapi_extra=_OPENAPI_EXTRA,
             responses=_RESPONSES, summary="Chat with a model (OpenAI-compatible)")
async def chat_completions(request: Request, actor: Actor = Depends(require_actor)) -> Response:
    try:
        req = parse_body(await request.body())
        agent_response = await agent_serving.dispatch(request, actor, req)  # published bots
        if agent_response is not None:
            return agent_response
        limit = await agent_serving.key_limit(request)
        started = await run_in_threadpool(_start, actor, req, limit)
    except agents_service.RateLimited as exc:
        return agent_serving.rate_limited(exc)
    except Exception as exc:  # noqa: BLE001 - every failure becomes an OpenAI-style error
        return _error_response(exc)
    if started is None:
        return _not_found(req.model)
    stream, where = started
    headers = {"x-studio-placement": where, "x-request-id": stream.request_id}
    it = iter(stream)
    try:  # the first piece before any byte goes out: queueing and loading errors get a status
        first = await _unless_client_leaves(request, stream, _next, it)
    except Exception as exc:  # noqa: BLE001
        return _error_response(exc, headers)
    if first is None:  # the client left while the model loaded
        return Response(status_code=499)
    if req.stream:
        return _EventStream(_sse(stream, it, first, include_usage=req.include_usage),
                            media_type="text/event-stream",
                            headers={**headers, "cache-control": "no-cache"})
    try:
        drained = await _unless_client_leaves(request, stream, _drain, it, first)
    except Exception as exc:  # noqa: BLE001
        return _error_response(exc, headers)
    if drained is None:
        return Response(status_code=499)
    text, calls = drained
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        message["tool_calls"] = [c.to_openai() for c in calls]
    return JSONResponse(headers=headers, content={
        "id": f"chatcmpl-{stream.request_id}", "object": "chat.completion",
        "created": int(time.time()), "model": stream.model, "system_fingerprint": None,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": _finish_reason(stream.usage, len(calls))}],
        "usage": _usage(stream.usage),
    })


async def _unless_client_leaves(request: Request, stream: ChatStream, fn: Callable[..., Any],
                                *args: Any) -> Any:
    """``fn(*args)`` in a thread; if the client disconnects meanwhile, the chat is stopped and
    the result is None."""
    task = asyncio.ensure_future(anyio.to_thread.run_sync(fn, *args, abandon_on_cancel=True))
    while True:
        done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
        if done:
            return task.result()
        if await request.is_disconnected():
            await run_in_threadpool(stream.stop)
            task.cancel()
            return None


def _drain(it: Iterator[ChatPiece], first: Any) -> tuple[str, list[ToolCall]]:
    parts: list[str] = []
    calls: list[ToolCall] = []
    piece = first
    while piece is not _END:
        if isinstance(piece, ToolCall):
            calls.append(piece)
        else:
            parts.append(piece)
        piece = next(it, _END)
    return "".join(parts), calls


class _EventStream(StreamingResponse):
    """Closes its generator when the response ends, however it ends, so a client that
    disconnected stops the generation at once rather than when the generator is collected."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _sse(stream: ChatStream, it: Iterator[ChatPiece], first: Any, *,
               include_usage: bool) -> AsyncIterator[str]:
    """The chunks of one answer. Leaving early (the client disconnected: Starlette cancels this
    generator) stops the generation wherever it runs."""
    base = {"id": f"chatcmpl-{stream.request_id}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": stream.model, "system_fingerprint": None}
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        return _event({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                            "finish_reason": finish}], **extra})

    ended = False
    calls = 0
    try:
        yield chunk({"role": "assistant", "content": ""})
        piece = first
        while piece is not _END:
            if isinstance(piece, ToolCall):
                yield chunk({"tool_calls": [{"index": calls, **piece.to_openai()}]})
                calls += 1
            elif piece:
                yield chunk({"content": piece})
            piece = await anyio.to_thread.run_sync(_next, it, abandon_on_cancel=True)
        ended = True
        yield chunk({}, _finish_reason(stream.usage, calls))
        if include_usage:
            yield _event({**base, "choices": [], "usage": _usage(stream.usage)})
        yield "data: [DONE]\n\n"
    except Exception as exc:  # noqa: BLE001 - after the 200 went out: an error event, no crash
        ended = True
        _, body = _failure(exc)
        yield _event(body)
    finally:
        if not ended:
            stream.stop()
