"""Plain values passed between the services, the providers and the workers."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Message = dict[str, Any]  # OpenAI shape: {"role": ..., "content": ..., "tool_calls"?: ...}
ROLES = frozenset({"system", "user", "assistant", "tool"})

MAX_STOP_STRINGS = 8
GREEDY_BELOW = 1e-5  # temperatures below this decode greedily (1/T would overflow float32)
TOOL_CHOICES = ("none", "auto", "required")


def check_response_format(rf: Any) -> None:
    """``None``, ``{"type": "text"}``, ``{"type": "json_object"}`` or ``{"type": "json_schema",
    "json_schema": {"name": ..., "schema": {...}}}``; a ValueError says what is wrong."""
    if rf is None:
        return
    if not isinstance(rf, Mapping) or rf.get("type") not in ("text", "json_object", "json_schema"):
        raise ValueError(
            "response_format must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or "
            "{\"type\": \"json_schema\", \"json_schema\": {\"name\": ..., \"schema\": {...}}}."
        )
    if rf["type"] != "json_schema":
        return
    spec = rf.get("json_schema")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str) \
            or not spec["name"]:
        raise ValueError("response_format json_schema needs a name: "
                         "{\"name\": ..., \"schema\": {...}}.")
    schema = spec.get("schema")
    if schema is None or schema is True:
        return
    if schema is False or not isinstance(schema, Mapping):
        if schema is False:
            raise ValueError(_NOTHING.format(where="json_schema.schema", why="it is false"))
        raise ValueError("response_format json_schema.schema must be a JSON Schema object.")
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(dict(schema))
    except SchemaError as exc:
        raise ValueError(f"response_format json_schema.schema is not a valid JSON Schema: "
                         f"{exc.message}") from None
    found = unsatisfiable(schema, "json_schema.schema")
    if found is not None:
        raise ValueError(_NOTHING.format(where=found[0], why=found[1]))


_NOTHING = ("No value satisfies response_format's JSON Schema: at {where}, {why}. Change or "
            "remove that part of the schema so that some JSON value can match it.")

_BOUNDS = (("minimum", "maximum"), ("minLength", "maxLength"), ("minItems", "maxItems"),
           ("minProperties", "maxProperties"))


def unsatisfiable(schema: Any, where: str, depth: int = 0) -> tuple[str, str] | None:
    """(where, why) when no JSON value can match ``schema`` for a reason one can see without
    solving it (``false``, ``"not": {}``, an empty ``enum``, a minimum above its maximum), in the
    schema or in a part every match needs (required properties, ``allOf``, every ``anyOf``
    branch); None otherwise (it may still be unsatisfiable in ways this does not look for)."""
    if depth > 32:
        return None
    if schema is False:
        return where, "the schema is false"
    if not isinstance(schema, Mapping):
        return None
    if "not" in schema and (schema["not"] is True or schema["not"] == {}):
        return where, "\"not\": {} excludes every value"
    if isinstance(schema.get("enum"), list) and not schema["enum"]:
        return where, "the enum is empty"
    for low, high in _BOUNDS:
        a, b = schema.get(low), schema.get(high)
        if isinstance(a, int | float) and isinstance(b, int | float) \
                and not isinstance(a, bool) and not isinstance(b, bool) and a > b:
            return where, f"{low} {a:g} is greater than {high} {b:g}"
    props = schema.get("properties")
    if isinstance(props, Mapping):
        for name in schema.get("required") or []:
            if isinstance(name, str) and name in props:
                found = unsatisfiable(props[name], f"{where}.properties.{name}", depth + 1)
                if found is not None:
                    return found
    for i, part in enumerate(schema.get("allOf") or []):
        found = unsatisfiable(part, f"{where}.allOf.{i}", depth + 1)
        if found is not None:
            return found
    for key in ("anyOf", "oneOf"):
        parts = schema.get(key)
        if isinstance(parts, list) and parts:
            found_all = [unsatisfiable(p, f"{where}.{key}.{i}", depth + 1)
                         for i, p in enumerate(parts)]
            if all(found_all):
                return where, f"no branch of {key} can match"
    items = schema.get("items")
    min_items = schema.get("minItems")
    if isinstance(min_items, int) and min_items > 0 and items is not None:
        found = unsatisfiable(items, f"{where}.items", depth + 1)
        if found is not None:
            return found
    return None


def check_tool_choice(choice: Any) -> None:
    if choice is None or choice in TOOL_CHOICES:
        return
    fn = choice.get("function") if isinstance(choice, Mapping) else None
    if not (isinstance(fn, Mapping) and isinstance(fn.get("name"), str) and fn["name"]):
        raise ValueError('tool_choice must be "none", "auto", "required" or '
                         '{"type": "function", "function": {"name": ...}}.')


@dataclass(frozen=True)
class ModelSpec:
    """How to reach one model. Built by ``backend.services.models`` from a registry row; the
    API key is decrypted only here and never leaves the process that asked for it."""

    name: str
    kind: Literal["local", "openai", "produced"]
    source: str = ""  # local/produced: a folder or a hub id
    base_url: str | None = None  # openai: e.g. http://localhost:11434/v1
    remote_model: str | None = None  # openai: the model name the endpoint knows
    api_key: str | None = field(default=None, repr=False)
    capabilities: tuple[str, ...] = ("chat",)
    default_params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.kind in ("local", "produced")

    def describe(self) -> str:
        if self.is_local:
            return f"{self.name} ({self.source})"
        return f"{self.name} ({self.remote_model} at {self.base_url})"

    def for_worker(self) -> dict[str, Any]:
        """What a worker needs to run a local model (never the API key)."""
        return {"name": self.name, "kind": self.kind, "source": self.source,
                "capabilities": list(self.capabilities)}


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings, validated in one place. ``temperature`` 0 means greedy decoding."""

    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int | None = None
    repetition_penalty: float = 1.0
    response_format: Mapping[str, Any] | None = None  # OpenAI's: json_object / json_schema
    tool_choice: str | Mapping[str, Any] | None = None  # none | auto | required | a named tool

    def __post_init__(self) -> None:
        t = self.temperature
        if not (isinstance(t, int | float) and math.isfinite(t) and 0 <= t <= 2):
            raise ValueError(f"temperature must be between 0 and 2 (got {t!r}).")
        if not (isinstance(self.top_p, int | float) and 0 < self.top_p <= 1):
            raise ValueError(f"top_p must be above 0 and at most 1 (got {self.top_p!r}).")
        n = self.max_new_tokens
        if not (isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 131072):
            raise ValueError(f"max_new_tokens must be a whole number from 1 to 131072 (got {n!r}).")
        if len(self.stop) > MAX_STOP_STRINGS:
            raise ValueError(f"At most {MAX_STOP_STRINGS} stop strings (got {len(self.stop)}).")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError("Stop strings must be non-empty text.")
        if self.seed is not None and not (isinstance(self.seed, int) and 0 <= self.seed < 2**32):
            raise ValueError(f"seed must be a whole number from 0 to 2**32-1 (got {self.seed!r}).")
        rp = self.repetition_penalty
        if not (isinstance(rp, int | float) and 0.5 <= rp <= 2.5):
            raise ValueError(f"repetition_penalty must be between 0.5 and 2.5 (got {rp!r}).")
        check_response_format(self.response_format)
        check_tool_choice(self.tool_choice)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> GenerationParams:
        data = dict(data or {})
        known = {"temperature", "top_p", "max_new_tokens", "stop", "seed", "repetition_penalty",
                 "response_format", "tool_choice"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"Unknown generation setting(s): {', '.join(unknown)}. "
                f"Known: {', '.join(sorted(known))}."
            )
        stop = data.get("stop") or ()
        if isinstance(stop, str):
            stop = (stop,)
        if not isinstance(stop, list | tuple):
            raise ValueError("stop must be a text or a list of texts.")
        data["stop"] = tuple(stop)
        if data.get("response_format") is not None and \
                dict(data["response_format"]).get("type") == "text":
            data["response_format"] = None
        for key in ("temperature", "top_p", "repetition_penalty"):
            if isinstance(data.get(key), int) and not isinstance(data.get(key), bool):
                data[key] = float(data[key])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        d["response_format"] = dict(self.response_format) if self.response_format else None
        return d

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW

    @property
    def constrained(self) -> bool:
        """Does generation follow a grammar (a JSON format, or a tool call it must make)?"""
        return bool(self.response_format) or self.forced_tool is not None

    @property
    def forced_tool(self) -> str | None:
        """``"*"`` when any tool must be called, a name when that one must, else None."""
        if self.tool_choice == "required":
            return "*"
        if isinstance(self.tool_choice, Mapping):
            return str(self.tool_choice["function"]["name"])
        return None


@dataclass(frozen=True)
class ToolCall:
    """A model's request to call a tool; ``arguments`` is already parsed JSON."""

    id: str
    name: str
    arguments: dict[str, Any]

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name,
                             "arguments": json.dumps(self.arguments, ensure_ascii=False)}}


@dataclass
class Usage:
    """What one chat cost and how fast it went. ``where`` says which machine answered."""

    prompt_tokens: int | None
    completion_tokens: int
    ttft_ms: float | None
    tokens_per_s: float | None
    total_ms: float
    finish_reason: str  # stop | length | stopped | tool_calls
    where: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Usage:
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


ChatPiece = str | ToolCall  # what a chat stream yields to callers
ChatEvent = str | ToolCall | Usage  # what providers yield (Usage last)


def validate_messages(messages: Sequence[Mapping[str, Any]]) -> list[Message]:
    """Check the OpenAI-shaped message list; raise ValueError saying which message is wrong."""
    if not messages:
        raise ValueError("A chat needs at least one message.")
    out: list[Message] = []
    for i, m in enumerate(messages, 1):
        if not isinstance(m, Mapping):
            raise ValueError(f"Message {i} must be an object with a role and a content.")
        role = m.get("role")
        if not isinstance(role, str) or role not in ROLES:
            shown = role if isinstance(role, str | None) else type(role).__name__
            raise ValueError(
                f"Message {i} has role {shown!r}; use one of: system, user, assistant, tool."
            )
        content = m.get("content")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise ValueError(f"Message {i} content must be text.")
        msg: Message = {"role": role, "content": content}
        if m.get("tool_calls"):
            msg["tool_calls"] = _check_tool_calls(m["tool_calls"], i)
        for key in ("tool_call_id", "name"):
            if m.get(key):
                if not isinstance(m[key], str):
                    raise ValueError(f"Message {i} {key} must be text.")
                msg[key] = m[key]
        out.append(msg)
    return out


def _check_tool_calls(calls: Any, i: int) -> list[dict[str, Any]]:
    """An assistant message's tool calls, each ``{"id", "type", "function": {"name",
    "arguments"}}`` with arguments as a JSON text or an object."""
    if not isinstance(calls, list | tuple):
        raise ValueError(f"Message {i} tool_calls must be a list.")
    out = []
    for c in calls:
        fn = c.get("function", c) if isinstance(c, Mapping) else None
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) \
                or not isinstance(fn.get("arguments", {}), str | Mapping):
            raise ValueError(f"Message {i} has a tool call that is not "
                             '{"id": ..., "function": {"name": ..., "arguments": ...}}.')
        out.append(dict(c))
    return out
