"""The body of ``POST /v1/chat/completions`` as OpenAI's clients send it, checked strictly and
turned into what ``backend.services.chat.stream_chat`` takes. Every refusal is a
:class:`BadRequest` whose message names the field as the API spells it (``max_tokens``,
``messages.0.role``), says what to send instead, and fills ``param``.

The pydantic models here are also the request schema in ``/openapi.json``.

Mapping: ``max_completion_tokens`` (or the older ``max_tokens``) -> ``max_new_tokens``;
``repetition_penalty`` (vLLM's extension) as is; for local models a non-zero
``frequency_penalty`` (else ``presence_penalty``) p in [-2, 2] becomes
``repetition_penalty = 1 + p / 4`` (an approximation: transformers has no additive penalties).
``response_format`` (``json_object`` / ``json_schema``) goes on as is: endpoints get it, local
models are constrained to it. ``tool_choice: "none"`` drops the tools; ``"required"`` or a named
tool makes the model call one (constrained for local models); ``"auto"`` leaves it to the model.
``developer`` messages are treated as ``system`` messages.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
)

from backend.llm.types import MAX_STOP_STRINGS, Message, check_response_format


class BadRequest(ValueError):
    """Answered with 400; ``param`` names the field when one is at fault, ``code`` is OpenAI's
    error code (``invalid_request``, ``unsupported_parameter``)."""

    def __init__(self, message: str, param: str | None = None,
                 code: str = "invalid_request") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


_STRICT = ConfigDict(strict=True, extra="ignore")
Number = Annotated[float, Field(allow_inf_nan=False)]


def _integral(value: Any) -> Any:
    """343.0 -> 343, as OpenAI accepts it (JSON Schema counts it an integer); 5.5 stays and is
    refused, and so do booleans."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# a whole number; integral floats (343.0) are whole numbers too
Whole = Annotated[int, BeforeValidator(_integral)]
_WHOLE = " Integral numbers written as floats (343.0) are accepted."


class TextPart(BaseModel):
    model_config = _STRICT
    type: Literal["text"]
    text: StrictStr


class FunctionCall(BaseModel):
    model_config = _STRICT
    name: StrictStr = Field(min_length=1)
    arguments: StrictStr = Field(description="The arguments as a JSON text.")


class ToolCallIn(BaseModel):
    model_config = _STRICT
    id: StrictStr
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """One message. ``content`` is text or a list of text parts."""

    model_config = _STRICT
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[TextPart] | None = None
    name: StrictStr | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: StrictStr | None = None


class FunctionSpec(BaseModel):
    model_config = _STRICT
    name: StrictStr = Field(min_length=1, max_length=64)
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class ToolSpec(BaseModel):
    model_config = _STRICT
    type: Literal["function"]
    function: FunctionSpec


class NamedFunction(BaseModel):
    model_config = _STRICT
    name: StrictStr


class NamedToolChoice(BaseModel):
    model_config = _STRICT
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaSpec(BaseModel):
    model_config = _STRICT
    name: StrictStr = Field(min_length=1, max_length=64)
    description: StrictStr | None = None
    schema_: dict[str, Any] | StrictBool | None = Field(
        default=None, alias="schema",
        description="A JSON Schema. One that no value satisfies (false, {\"not\": {}}, a minimum "
                    "above its maximum) is a 400, and so is one the grammar engine cannot "
                    "follow for a local model.")
    strict: StrictBool | None = None


def _response_format_doc(schema: dict[str, Any]) -> None:
    """In the OpenAPI document: ``json_schema`` is required (an object) when ``type`` is
    ``json_schema``, as the server checks."""
    schema["description"] = (
        "``text`` (the default), ``json_object`` (any JSON object) or ``json_schema`` (then "
        "``json_schema`` is required: {\"name\": ..., \"schema\": {...}}; null or missing is a "
        "400). ``json_schema`` is ignored for the other types.")
    schema["if"] = {"properties": {"type": {"const": "json_schema"}}, "required": ["type"]}
    schema["then"] = {"required": ["json_schema"],
                      "properties": {"json_schema": {"type": "object"}}}


class ResponseFormat(BaseModel):
    """``text`` (the default), ``json_object`` (any JSON object) or ``json_schema``."""

    model_config = ConfigDict(strict=True, extra="ignore",
                              json_schema_extra=_response_format_doc)
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None


class StreamOptions(BaseModel):
    model_config = _STRICT
    include_usage: StrictBool = False


class ChatCompletionRequest(BaseModel):
    """The fields we read; others that clients send (``user``, ``metadata``, ``store`` ...) are
    ignored, as OpenAI-compatible servers do."""

    model_config = _STRICT

    model: StrictStr = Field(min_length=1, description="A model name from GET /v1/models.")
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: Number | None = Field(default=None, ge=0, le=2,
                                       description="0 (or below 1e-5) decodes greedily.")
    top_p: Number | None = Field(default=None, gt=0, le=1)
    max_tokens: Whole | None = Field(default=None, ge=1, le=131072,
                                     description="The answer's token budget." + _WHOLE)
    max_completion_tokens: Whole | None = Field(default=None, ge=1, le=131072,
                                                description="As max_tokens (wins over it)."
                                                + _WHOLE)
    stop: StrictStr | list[StrictStr] | None = Field(
        default=None, description=f"Up to {MAX_STOP_STRINGS} texts that end the answer; empty "
                                  "strings are ignored.")
    seed: Whole | None = Field(default=None, ge=0, le=2**32 - 1, description=_WHOLE.strip())
    frequency_penalty: Number | None = Field(default=None, ge=-2, le=2)
    presence_penalty: Number | None = Field(default=None, ge=-2, le=2)
    repetition_penalty: Number | None = Field(default=None, ge=0.5, le=2.5)
    tools: list[ToolSpec] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    n: Whole | None = Field(default=None, ge=1, le=1, description="Only 1.")
    logprobs: StrictBool | None = Field(
        default=None, description="Log probabilities are not supported: false (or leaving it "
                                  "out) is accepted, true is a 400 with code "
                                  "unsupported_parameter. top_logprobs is ignored.")
    response_format: ResponseFormat | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


EXAMPLE = '{"model": "NAME", "messages": [{"role": "user", "content": "Hello"}]}'

# what a field must be, for messages about it
_WANTS = {
    "model": "a model name (text) from GET /v1/models",
    "messages": "a list of messages such as [{\"role\": \"user\", \"content\": \"Hello\"}]",
    "temperature": "a number from 0 to 2",
    "top_p": "a number above 0 and at most 1",
    "max_tokens": "a whole number from 1 to 131072",
    "max_completion_tokens": "a whole number from 1 to 131072",
    "stop": f"a text or a list of at most {MAX_STOP_STRINGS} texts",
    "seed": "a whole number from 0 to 4294967295",
    "frequency_penalty": "a number from -2 to 2",
    "presence_penalty": "a number from -2 to 2",
    "repetition_penalty": "a number from 0.5 to 2.5",
    "stream": "true or false (a JSON boolean)",
    "n": "1 (send several requests for several answers)",
    "logprobs": "false (logprobs are not supported)",
    "tool_choice": "\"none\", \"auto\", \"required\" or "
                   "{\"type\": \"function\", \"function\": {\"name\": ...}}",
    "tools": "a list of {\"type\": \"function\", \"function\": {\"name\": ..., "
             "\"parameters\": {...}}}",
    "response_format": "{\"type\": \"text\"}, {\"type\": \"json_object\"} or "
                       "{\"type\": \"json_schema\", \"json_schema\": {\"name\": ..., "
                       "\"schema\": {...}}}",
    "stream_options": "{\"include_usage\": true or false}",
}


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _explain(exc: ValidationError) -> BadRequest:
    first = exc.errors(include_url=False)[0]
    loc = [str(p) for p in first["loc"] if not str(p).startswith(("function-", "literal["))]
    # pydantic adds the union member tried to the location (str, list[...]); keep field names
    loc = [p for p in loc if p not in ("str", "list[str]", "list[TextPart]", "NamedToolChoice",
                                       "constrained-str", "int", "float")]
    where = ".".join(loc) or "body"
    if first["type"] == "json_invalid":
        return BadRequest(f"The request body is not valid JSON ({first['msg']}). Send a JSON "
                          f"object such as {EXAMPLE}.")
    if first["type"] == "model_type" and where == "body":
        return BadRequest(f"The request body must be a JSON object such as {EXAMPLE}.")
    top = loc[0] if loc else "body"
    if first["type"] == "missing":
        return BadRequest(f"The field {where!r} is required; send e.g. {EXAMPLE}.", param=where)
    got = _show(first.get("input"))
    if len(loc) == 3 and loc[0] == "messages" and loc[2] == "role":
        return BadRequest(f"Message {int(loc[1]) + 1} has role {got}; use one of: system, "
                          "developer, user, assistant, tool.", param=where)
    if top == "messages" and len(loc) == 1 and first["type"] == "too_short":
        return BadRequest(f"The field 'messages' needs at least one message, e.g. {EXAMPLE}.",
                          param="messages")
    if len(loc) == 1 and top in _WANTS:
        return BadRequest(f"The field {top!r} is invalid: it must be {_WANTS[top]} (got {got}).",
                          param=top)
    hint = f" It must be {_WANTS[top]}." if top in _WANTS else ""
    return BadRequest(f"The field {where!r} is invalid: {first['msg']} (got {got}).{hint}",
                      param=where)


def parse_body(raw: bytes) -> ChatCompletionRequest:
    """JSON bytes -> a checked request, or BadRequest saying what to fix."""
    try:
        req = ChatCompletionRequest.model_validate_json(raw or b"")
    except ValidationError as exc:
        raise _explain(exc) from None
    if not req.model.strip():
        raise BadRequest("The field 'model' is empty; GET /v1/models lists the models you may use.",
                         param="model")
    if req.logprobs:
        raise BadRequest("logprobs are not supported by this server; send 'logprobs': false or "
                         "leave it out.", param="logprobs", code="unsupported_parameter")
    stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    if len(stops) > MAX_STOP_STRINGS:
        raise BadRequest(f"At most {MAX_STOP_STRINGS} stop strings (got {len(stops)}).",
                         param="stop")
    stops = [s for s in stops if s]  # an empty stop string stops nothing: ignored, as OpenAI does
    req.stop = stops or None
    if req.response_format is not None:
        try:
            check_response_format(response_format_dict(req))
        except BadRequest:
            raise
        except ValueError as exc:
            raise BadRequest(str(exc), param="response_format") from None
    if isinstance(req.tool_choice, NamedToolChoice) or req.tool_choice == "required":
        names = {t.function.name for t in req.tools or []}
        if not names:
            raise BadRequest("tool_choice asks for a tool call but 'tools' is empty; send the "
                             "tools or leave tool_choice out.", param="tool_choice")
        if isinstance(req.tool_choice, NamedToolChoice) and req.tool_choice.function.name \
                not in names:
            raise BadRequest(f"tool_choice names the tool {req.tool_choice.function.name!r}, "
                             f"which is not among the tools ({', '.join(sorted(names))}).",
                             param="tool_choice")
    return req


def response_format_dict(req: ChatCompletionRequest) -> dict[str, Any] | None:
    rf = req.response_format
    if rf is None or rf.type == "text":
        return None
    if rf.type == "json_object":
        return {"type": "json_object"}
    if rf.json_schema is None:
        raise BadRequest("response_format of type 'json_schema' needs 'json_schema': "
                         "{\"name\": ..., \"schema\": {...}}.",
                         param="response_format.json_schema")
    spec = rf.json_schema.model_dump(by_alias=True, exclude_none=True)
    return {"type": "json_schema", "json_schema": spec}


def chat_messages(req: ChatCompletionRequest) -> list[Message]:
    """Messages as ``stream_chat`` takes them: list-of-parts content flattened, ``developer``
    as ``system``."""
    out: list[Message] = []
    for m in req.messages:
        content = m.content
        text = "".join(p.text for p in content) if isinstance(content, list) else (content or "")
        msg: Message = {"role": "system" if m.role == "developer" else m.role, "content": text}
        if m.tool_calls:
            msg["tool_calls"] = [c.model_dump() for c in m.tool_calls]
        if m.tool_call_id is not None:
            msg["tool_call_id"] = m.tool_call_id
        if m.name is not None:
            msg["name"] = m.name
        out.append(msg)
    return out


def chat_params(req: ChatCompletionRequest, *, is_local: bool) -> dict[str, Any]:
    """Generation settings for ``stream_chat`` (only those the request sets; the model's
    defaults fill the rest)."""
    p: dict[str, Any] = {}
    if req.temperature is not None:
        p["temperature"] = req.temperature
    if req.top_p is not None:
        p["top_p"] = req.top_p
    limit = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    if limit is not None:
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
            p["repetition_penalty"] = 1 + penalty / 4
    rf = response_format_dict(req)
    if rf is not None:
        p["response_format"] = rf
    tools = chat_tools(req)
    if tools and req.tool_choice is not None and req.tool_choice != "auto":
        p["tool_choice"] = (req.tool_choice if isinstance(req.tool_choice, str)
                            else req.tool_choice.model_dump())
    return p


def chat_tools(req: ChatCompletionRequest) -> list[dict[str, Any]] | None:
    if not req.tools or req.tool_choice == "none":
        return None
    return [t.model_dump(exclude_none=True) for t in req.tools]
