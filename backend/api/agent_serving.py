"""Published agents behind ``/v1/chat/completions`` and ``/v1/models``.

``chat_routes`` asks :func:`dispatch` first: a key limited to one agent may reach that agent
only (anything else is 404), a key with a rate gets 429 with ``Retry-After`` past it, and a
``model`` that names a published agent of the key's workspace is answered here. The answer is an
ordinary ``chat.completion`` (or its chunks); the agent's citations, trace id and conversation id
travel as extra top-level fields (``sources``, ``trace_id``, ``conversation_id``), which OpenAI's
clients keep in ``model_extra`` and otherwise ignore.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from backend.accounts.actor import Actor
from backend.api.auth import error_body
from backend.api.chat_request import ChatCompletionRequest, chat_messages
from backend.services import agents as agents_service

log = logging.getLogger(__name__)
_END = object()


def _key(request: Request) -> str:
    return request.headers.get("authorization", "").partition(" ")[2].strip()


def _not_found(name: str) -> JSONResponse:
    return JSONResponse(status_code=404, content={"error": {
        "message": f"The model {name!r} does not exist for this API key. GET /v1/models lists "
                   "the models and bots it may use.",
        "type": "invalid_request_error", "code": "model_not_found", "param": "model"}})


async def key_limit(request: Request) -> agents_service.KeyLimit | None:
    return await run_in_threadpool(agents_service.key_limit, _key(request))


async def visible_agents(request: Request, actor: Actor) -> list[agents_service.AgentView]:
    """Published agents this key may use (for ``/v1/models``)."""
    limit = await key_limit(request)
    bots = await run_in_threadpool(lambda: agents_service.published_agents(actor=actor))
    if limit is not None and limit.agent_id is not None:
        bots = [b for b in bots if b.id == limit.agent_id]
    return bots


def agent_card(a: agents_service.AgentView) -> dict[str, Any]:
    return {"id": a.name, "object": "model", "created": int(a.created_at.timestamp()),
            "owned_by": f"workspace-{a.workspace_id}", "kind": "agent",
            "capabilities": ["chat"], "description": a.description}


async def limited_to_agent(request: Request) -> bool:
    limit = await key_limit(request)
    return limit is not None and limit.agent_id is not None


def _question_and_history(req: ChatCompletionRequest) -> tuple[str, list[dict[str, str]]]:
    msgs = [m for m in chat_messages(req) if m.get("role") in ("user", "assistant")]
    if not msgs or msgs[-1].get("role") != "user":
        raise agents_service.AgentError("The last message to a bot must be the user's question.")
    return str(msgs[-1].get("content") or ""), [
        {"role": str(m["role"]), "content": str(m.get("content") or "")} for m in msgs[:-1]]


async def dispatch(request: Request, actor: Actor, req: ChatCompletionRequest
                   ) -> Response | None:
    """The response for a request that concerns agents or a limited key; None: not ours."""
    limit = await key_limit(request)
    name = req.model.strip()
    bots = await run_in_threadpool(lambda: agents_service.published_agents(actor=actor))
    bot = next((b for b in bots if b.name == name), None)
    if limit is not None and limit.agent_id is not None and (bot is None
                                                             or bot.id != limit.agent_id):
        return _not_found(name)
    if bot is None:
        return None
    try:
        question, history = _question_and_history(req)
    except Exception as exc:  # noqa: BLE001 - a refused request is not counted
        return _failure(exc)
    try:  # a request that will be served: it counts against the key's rate
        await run_in_threadpool(charge_rate, limit)
    except agents_service.RateLimited as exc:
        return rate_limited(exc)
    try:
        limit_tokens = (req.max_completion_tokens if req.max_completion_tokens is not None
                        else req.max_tokens)
        run = await run_in_threadpool(lambda: agents_service.stream_agent(
            actor=actor, agent=bot.id, question=question, history=history, channel="api",
            max_tokens=limit_tokens, sampling=_sampling(req)))
        it = iter(run)
        first = await run_in_threadpool(next, it, _END)
    except Exception as exc:  # noqa: BLE001 - an OpenAI-style error, as for models
        return _failure(exc)
    headers = {"x-studio-agent": bot.name}
    created = int(time.time())
    if req.stream:
        return StreamingResponse(_sse(run, it, first, created, req.include_usage),
                                 media_type="text/event-stream",
                                 headers={**headers, "cache-control": "no-cache"})
    try:
        parts: list[str] = [] if first is _END else [str(first)]
        parts += await run_in_threadpool(list, it)
    except Exception as exc:  # noqa: BLE001
        return _failure(exc)
    result = run.result
    return JSONResponse(headers=headers, content={
        "id": f"chatcmpl-agent-{result.trace_id if result else 0}", "object": "chat.completion",
        "created": created, "model": bot.name, "system_fingerprint": None,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(parts)},
                     "logprobs": None, "finish_reason": _finish_reason(result)}],
        "usage": _usage(result), **_extras(result)})


def charge_rate(limit: agents_service.KeyLimit | None) -> None:
    """Count a request that is about to be served against its key's rate (refused requests
    never get here); ``agents_service.RateLimited`` when the key has used its N in 60 s."""
    if limit is not None and limit.rate_per_min:
        agents_service.check_rate(limit)


def rate_limited(exc: agents_service.RateLimited) -> JSONResponse:
    return JSONResponse(status_code=429, headers={"Retry-After": str(exc.retry_after_s)},
                        content=error_body(str(exc), type_="rate_limit_error",
                                           code="rate_limit_exceeded"))


def _failure(exc: Exception) -> JSONResponse:
    from backend.api.chat_routes import _failure as model_failure

    if isinstance(exc, agents_service.AgentError | agents_service.AgentNotFound):
        return JSONResponse(status_code=400, content=error_body(
            str(exc), type_="invalid_request_error", code="invalid_request"))
    status, body = model_failure(exc)
    return JSONResponse(status_code=status, content=body)


def _sampling(req: ChatCompletionRequest) -> dict[str, Any]:
    """The request's sampling settings, which replace the bot's own."""
    return {k: v for k, v in (("temperature", req.temperature), ("top_p", req.top_p),
                              ("seed", req.seed)) if v is not None}


def _finish_reason(result: agents_service.AgentAnswer | None) -> str:
    """"length" when the answer's model call hit its token limit or the context, else "stop"."""
    return "length" if result is not None and result.finish_reason == "length" else "stop"


def _usage(result: agents_service.AgentAnswer | None) -> dict[str, int]:
    p = result.prompt_tokens if result else 0
    c = result.completion_tokens if result else 0
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _extras(result: agents_service.AgentAnswer | None) -> dict[str, Any]:
    if result is None:
        return {}
    return {"sources": result.sources, "trace_id": result.trace_id,
            "conversation_id": result.conversation_id}


async def _sse(run: agents_service.AgentRun, it: Any, first: Any, created: int,
               include_usage: bool) -> AsyncIterator[str]:
    base = {"id": f"chatcmpl-agent-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
            "created": created, "model": run.agent, "system_fingerprint": None}

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                     "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    ended = False
    try:
        yield chunk({"role": "assistant", "content": ""})
        piece = first
        while piece is not _END:
            if piece:
                yield chunk({"content": piece})
            piece = await anyio.to_thread.run_sync(next, it, _END)
        yield chunk({}, _finish_reason(run.result), **_extras(run.result))
        if include_usage:
            body = {**base, "choices": [], "usage": _usage(run.result)}
            yield f"data: {json.dumps(body)}\n\n"
        yield "data: [DONE]\n\n"
        ended = True
    except Exception as exc:  # noqa: BLE001 - after the 200: an error event
        ended = True
        yield f"data: {bytes(_failure(exc).body).decode()}\n\n"
    finally:
        if not ended:  # the client left: stop the agent (and the model with it)
            run.stop()
