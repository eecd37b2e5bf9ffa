"""The body of ``POST /v1/chat/completions`` as OpenAI's clients send it, checked and turned into
what ``backend.services.chat.stream_chat`` takes. Every refusal is a :class:`BadRequest` whose
message says which field is wrong and what to send instead.

Mapping: ``max_completion_tokens`` (or the older ``max_tokens``) -> ``max_new_tokens``;
``repetition_penalty`` (vLLM's extension) as is; for local models a non-zero
``frequency_penalty`` (else ``presence_penalty``) p in [-2, 2] becomes
``repetition_penalty = 1 + p / 4`` (an approximation: transformers has no additive penalties).
``tool_choice: "none"`` drops the tools; any other choice leaves the choice to the model.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from backend.llm.types import Message


class BadRequest(ValueError):
    """Answered with 400; ``param`` names the field when one is at fault."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The fields we read; others that clients send (``user``, ``metadata``, ``store`` ...) are
    ignored, as OpenAI-compatible servers do."""

    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[dict[str, Any]]
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    repetition_penalty: float | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = None
    logprobs: bool | None = None
    response_format: dict[str, Any] | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


EXAMPLE = '{"model": "NAME", "messages": [{"role": "user", "content": "Hello"}]}'


def parse_body(raw: bytes) -> ChatCompletionRequest:
    """JSON bytes -> a checked request, or BadRequest saying what to fix."""
    try:
        data = json.loads(raw or b"")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"The request body is not valid JSON ({exc}). Send a JSON object "
                         f"such as {EXAMPLE}.") from None
    if not isinstance(data, dict):
        raise BadRequest(f"The request body must be a JSON object such as {EXAMPLE}.")
    try:
        req = ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        if first["type"] == "missing":
            raise BadRequest(f"The field {where!r} is required; send e.g. {EXAMPLE}.",
                             param=where) from None
        raise BadRequest(f"The field {where!r} is invalid: {first['msg']} "
                         f"(got {first.get('input')!r:.80}).", param=where) from None
    if not req.model.strip():
        raise BadRequest("The field 'model' is empty; GET /v1/models lists the models you may use.",
                         param="model")
    if not req.messages:
        raise BadRequest(f"The field 'messages' needs at least one message, e.g. {EXAMPLE}.",
                         param="messages")
    if req.n not in (None, 1):
        raise BadRequest(f"Only n=1 is supported (got n={req.n}); send several requests for "
                         "several answers.", param="n")
    if req.logprobs:
        raise BadRequest("logprobs are not supported; leave 'logprobs' out.", param="logprobs")
    if req.response_format and req.response_format.get("type", "text") != "text":
        raise BadRequest(
            f"response_format {req.response_format.get('type')!r} is not supported; only "
            "'text'. Ask for JSON in the prompt, or use tools.", param="response_format")
    return req


def _text_content(content: Any, i: int) -> Any:
    """OpenAI's list-of-parts content -> plain text (text parts only)."""
    if not isinstance(content, list):
        return content
    parts: list[str] = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "text" and isinstance(
                part.get("text"), str):
            parts.append(part["text"])
        else:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise BadRequest(f"Message {i} has a content part of type {kind!r}; only text parts "
                             "are supported.", param=f"messages.{i - 1}.content")
    return "".join(parts)


def chat_messages(req: ChatCompletionRequest) -> list[Message]:
    """Messages with list-of-parts content flattened; roles and the rest are checked by
    ``stream_chat`` itself."""
    out: list[Message] = []
    for i, m in enumerate(req.messages, 1):
        msg = dict(m)
        if "content" in msg:
            msg["content"] = _text_content(msg["content"], i)
        out.append(msg)
    return out


def chat_params(req: ChatCompletionRequest, *, is_local: bool) -> dict[str, Any]:
    """Generation settings for ``stream_chat`` (only those the request sets; the model's
    defaults fill the rest). Ranges are checked there, with the messages it raises."""
    p: dict[str, Any] = {}
    if req.temperature is not None:
        p["temperature"] = req.temperature
    if req.top_p is not None:
        p["top_p"] = req.top_p
    limit = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    if limit is not None:
        if limit < 1:
            raise BadRequest(f"max_tokens must be at least 1 (got {limit}).", param="max_tokens")
        p["max_new_tokens"] = limit
    if req.stop:
        p["stop"] = [req.stop] if isinstance(req.stop, str) else list(req.stop)
    if req.seed is not None:
        p["seed"] = req.seed
    if req.repetition_penalty is not None:
        p["repetition_penalty"] = req.repetition_penalty
    else:
        penalty = req.frequency_penalty or req.presence_penalty or 0.0
        if penalty:
            name = "frequency_penalty" if req.frequency_penalty else "presence_penalty"
            if not is_local:
                raise BadRequest(
                    f"{name} is not passed on to endpoint models; leave it out or send "
                    "repetition_penalty if the endpoint accepts it.", param=name)
            if not -2 <= penalty <= 2:
                raise BadRequest(f"{name} must be between -2 and 2 (got {penalty}).", param=name)
            p["repetition_penalty"] = 1 + penalty / 4
    return p


def chat_tools(req: ChatCompletionRequest) -> list[dict[str, Any]] | None:
    if not req.tools or req.tool_choice == "none":
        return None
    for i, t in enumerate(req.tools):
        fn = t.get("function")
        if t.get("type", "function") != "function" or not isinstance(fn, dict) \
                or not fn.get("name"):
            raise BadRequest(
                f"Tool {i + 1} must look like {{\"type\": \"function\", \"function\": "
                "{\"name\": ..., \"parameters\": {...}}}.", param=f"tools.{i}")
    return req.tools
