"""Response bodies of the /v1 API as pydantic models: they document ``/openapi.json`` (what
client generators and fuzzers read) and ``responses()`` declares every status a route answers.
The request body is ``backend.api.chat_request.ChatCompletionRequest``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    message: str = Field(description="What went wrong and what to do about it.")
    type: str = Field(description="invalid_request_error, permission_error, server_error ...")
    code: str | None = None
    param: str | None = Field(default=None, description="The request field at fault, if one.")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class FunctionCallOut(BaseModel):
    name: str
    arguments: str = Field(description="The arguments as a JSON text.")


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCallOut] | None = None


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length", "tool_calls"]


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[Choice]
    usage: CompletionUsage


class ToolCallDelta(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallOut | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    logprobs: None = None
    finish_reason: Literal["stop", "length", "tool_calls"] | None = None


class ChatCompletionChunk(BaseModel):
    """One Server-Sent Event of a streamed answer."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="allow")  # published bots add a description

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    kind: str
    capabilities: list[str]


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


_ERRORS: dict[int, str] = {
    400: "The request is malformed or asks for something the model cannot do; the message "
         "says which field and what to send.",
    401: "No API key, or one that is unknown, revoked or expired.",
    403: "The key's user may not do this.",
    404: "No such model in the key's workspace.",
    429: "The key's rate limit is used up; see Retry-After.",
    502: "The model's endpoint failed.",
    503: "Every gpu worker is busy and the wait queue is full, the chat waited longer than "
         "the stated limit, or the studio's database cannot be reached right now (code "
         "database_unavailable); see Retry-After.",
}

_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.",
                                "schema": {"type": "integer"}}}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses (OpenAI-style error bodies)."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": ErrorResponse, "description": _ERRORS[code]}
        if code in (429, 503):
            entry["headers"] = _RETRY_AFTER
        out[code] = entry
    return out


SSE_DESCRIPTION = (
    "With `\"stream\": true`: Server-Sent Events, one `data: {chat.completion.chunk}` per piece "
    "(the first carries the role, the last the finish_reason; with "
    "`stream_options.include_usage` one more with `usage` and no choices), then "
    "`data: [DONE]`. An error after the stream began comes as `data: {\"error\": {...}}`."
)

# one event of the stream: the JSON after "data: " (the last event, "data: [DONE]", is not JSON)
STREAM_EVENT: dict[str, Any] = {
    "description": "One Server-Sent Event of a streamed answer, as `data: <this JSON>`: a "
                   "chat.completion.chunk, or an error body if the answer failed after the "
                   "stream began. The stream ends with the event `data: [DONE]`.",
    "type": "object",
    "properties": {"event": {"type": "string", "const": "message"},
                   "data": {"type": "string", "contentMediaType": "application/json",
                            "contentSchema": {"oneOf": [
                                {"$ref": "#/components/schemas/ChatCompletionChunk"},
                                {"$ref": "#/components/schemas/ErrorResponse"}]}}},
    "required": ["data"],
}
