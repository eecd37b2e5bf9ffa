"""OpenAI-compatible endpoints (OpenAI, vLLM, Ollama, DeepSeek, Qwen ...): streaming chat with
tool calls, embeddings, and a connection test. Every error names the endpoint URL and every call
is bounded by the request timeout."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

import httpx

from backend.llm.errors import EndpointError
from backend.llm.types import ChatEvent, GenerationParams, Message, ModelSpec, ToolCall, Usage

STOP_POLL_S = 0.1


def normalise_base_url(url: str) -> str:
    """``http(s)://host[:port][/path]`` without a trailing slash; a ValueError says what is off."""
    u = (url or "").strip().rstrip("/")
    parsed = urlparse(u)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(
            f"{url!r} is not an endpoint URL: give one such as http://localhost:11434/v1 or "
            "https://api.deepseek.com/v1"
        )
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535 or not parsed.hostname:
        raise ValueError(
            f"{url!r} is not an endpoint URL: the port must be a number from 1 to 65535 "
            "after the host, e.g. http://localhost:11434/v1"
        )
    for suffix in ("/chat/completions", "/embeddings", "/models"):
        if u.endswith(suffix):
            u = u.removesuffix(suffix)
    return u


def _headers(spec: ModelSpec) -> dict[str, str]:
    h = {"Content-Type": "application/json"}
    if spec.api_key:
        h["Authorization"] = f"Bearer {spec.api_key}"
    return h


def _error_text(resp: httpx.Response) -> str:
    try:
        data = resp.json()
        err = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(err, dict):
            return str(err.get("message") or err)
        return str(err)
    except ValueError:
        return resp.text[:300] or resp.reason_phrase


def _check(resp: httpx.Response, url: str) -> None:
    if resp.status_code < 400:
        return
    if resp.is_stream_consumed is False:
        resp.read()
    msg = _error_text(resp)
    hint = {
        401: " Check the API key.",
        403: " The API key may not use this model.",
        404: " Check the base URL (it usually ends in /v1) and the model name.",
        429: " The endpoint is rate limiting; wait and try again.",
    }.get(resp.status_code, "")
    raise EndpointError(f"{url} answered HTTP {resp.status_code}: {msg}.{hint}")


@contextmanager
def _translate_errors(url: str, timeout_s: float) -> Iterator[None]:
    try:
        yield
    except httpx.ConnectTimeout:
        raise EndpointError(f"Could not connect to {url} within {timeout_s:g} s.") from None
    except httpx.ConnectError as exc:
        raise EndpointError(
            f"Could not connect to {url}: {exc or 'connection refused'}. Is the server running "
            "and the URL right?"
        ) from None
    except httpx.TimeoutException:
        raise EndpointError(f"{url} did not answer within {timeout_s:g} s.") from None
    except httpx.HTTPError as exc:
        raise EndpointError(f"Talking to {url} failed: {type(exc).__name__}: {exc}") from None


def _client(timeout_s: float) -> httpx.Client:
    return httpx.Client(timeout=httpx.Timeout(timeout_s), follow_redirects=True)


def _chat_body(spec: ModelSpec, messages: list[Message], params: GenerationParams,
               tools: Sequence[dict[str, Any]] | None, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": spec.remote_model,
        "messages": [_wire_message(m) for m in messages],
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_new_tokens,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    if params.repetition_penalty != 1.0:  # vLLM and others accept it; OpenAI itself does not
        body["repetition_penalty"] = params.repetition_penalty
    if tools:
        body["tools"] = list(tools)
        if params.tool_choice is not None:
            body["tool_choice"] = params.tool_choice
    if params.response_format:  # the endpoint enforces it (OpenAI, vLLM, Ollama ...)
        body["response_format"] = dict(params.response_format)
    return body


def _wire_message(m: Message) -> Message:
    """Tool-call arguments travel as JSON strings on the OpenAI wire."""
    if not m.get("tool_calls"):
        return m
    calls = []
    for c in m["tool_calls"]:
        fn = dict(c.get("function", c))
        if not isinstance(fn.get("arguments"), str):
            fn["arguments"] = json.dumps(fn.get("arguments") or {}, ensure_ascii=False)
        calls.append({"id": c.get("id", ""), "type": "function",
                      "function": {"name": fn["name"], "arguments": fn["arguments"]}})
    return {**m, "tool_calls": calls}


def stream_chat_openai(
    spec: ModelSpec,
    messages: list[Message],
    params: GenerationParams,
    tools: Sequence[dict[str, Any]] | None = None,
    *,
    timeout_s: float,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[ChatEvent]:
    """POST /chat/completions with ``stream: true``; yield text pieces, tool calls, then Usage."""
    base = spec.base_url or ""
    url = f"{base}/chat/completions"
    started = time.perf_counter()
    first: float | None = None
    n_pieces = 0
    usage: dict[str, Any] = {}
    finish = "stop"
    calls: dict[int, dict[str, Any]] = {}
    stopped = False
    next_poll = time.monotonic() + STOP_POLL_S
    with _translate_errors(base, timeout_s), _client(timeout_s) as client, client.stream(
        "POST", url, headers=_headers(spec), json=_chat_body(spec, messages, params, tools, True)
    ) as resp:
        _check(resp, base)
        for line in resp.iter_lines():
            if should_stop is not None and time.monotonic() >= next_poll:
                next_poll = time.monotonic() + STOP_POLL_S
                if should_stop():
                    stopped = True
                    break
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                break
            try:
                chunk = json.loads(payload)
            except json.JSONDecodeError:
                continue
            if chunk.get("error"):
                raise EndpointError(f"{base} reported an error: {_error_text_obj(chunk)}")
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                text = delta.get("content")
                if text:
                    if first is None:
                        first = time.perf_counter()
                    n_pieces += 1
                    yield text
                for tc in delta.get("tool_calls") or []:
                    if first is None:
                        first = time.perf_counter()
                    slot = calls.setdefault(int(tc.get("index", len(calls))),
                                            {"id": "", "name": "", "arguments": ""})
                    slot["id"] = tc.get("id") or slot["id"]
                    fn = tc.get("function") or {}
                    slot["name"] += fn.get("name") or ""
                    slot["arguments"] += fn.get("arguments") or ""
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
    for i in sorted(calls):
        c = calls[i]
        try:
            args = json.loads(c["arguments"]) if c["arguments"].strip() else {}
        except json.JSONDecodeError as exc:
            raise EndpointError(
                f"{base} sent tool call {c['name']!r} with arguments that are not JSON: "
                f"{c['arguments'][:200]}"
            ) from exc
        yield ToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=args)
    ended = time.perf_counter()
    completion = int(usage.get("completion_tokens") or n_pieces)
    gen_s = ended - (first or started)
    yield Usage(
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=completion,
        ttft_ms=(first - started) * 1000 if first else None,
        tokens_per_s=completion / gen_s if completion and gen_s > 0 else None,
        total_ms=(ended - started) * 1000,
        finish_reason="stopped" if stopped else ("tool_calls" if calls else finish),
        where=base,
    )


def _error_text_obj(chunk: dict[str, Any]) -> str:
    err = chunk.get("error")
    return str(err.get("message") if isinstance(err, dict) else err)


def embed_openai(spec: ModelSpec, texts: Sequence[str], *, timeout_s: float,
                 batch_size: int = 64) -> list[list[float]]:
    """POST /embeddings in batches; vectors come back in the order of ``texts``."""
    base = spec.base_url or ""
    out: list[list[float]] = []
    with _translate_errors(base, timeout_s), _client(timeout_s) as client:
        for i in range(0, len(texts), batch_size):
            batch = list(texts[i:i + batch_size])
            resp = client.post(f"{base}/embeddings", headers=_headers(spec),
                               json={"model": spec.remote_model, "input": batch})
            _check(resp, base)
            data = sorted(resp.json().get("data") or [], key=lambda d: d.get("index", 0))
            if len(data) != len(batch):
                raise EndpointError(
                    f"{base} returned {len(data)} embeddings for {len(batch)} texts."
                )
            out.extend([list(map(float, d["embedding"])) for d in data])
    return out


def list_remote_models(spec: ModelSpec, *, timeout_s: float) -> list[str]:
    """GET /models: the model names the endpoint offers."""
    base = spec.base_url or ""
    with _translate_errors(base, timeout_s), _client(timeout_s) as client:
        resp = client.get(f"{base}/models", headers=_headers(spec))
        _check(resp, base)
        return [str(m.get("id")) for m in resp.json().get("data") or []]
