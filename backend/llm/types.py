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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> GenerationParams:
        data = dict(data or {})
        known = {"temperature", "top_p", "max_new_tokens", "stop", "seed", "repetition_penalty"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"Unknown generation setting(s): {', '.join(unknown)}. "
                f"Known: {', '.join(sorted(known))}."
            )
        stop = data.get("stop") or ()
        if isinstance(stop, str):
            stop = (stop,)
        data["stop"] = tuple(stop)
        for key in ("temperature", "top_p", "repetition_penalty"):
            if isinstance(data.get(key), int) and not isinstance(data.get(key), bool):
                data[key] = float(data[key])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


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
        role = m.get("role") if isinstance(m, Mapping) else None
        if role not in ROLES:
            raise ValueError(
                f"Message {i} has role {role!r}; use one of: system, user, assistant, tool."
            )
        content = m.get("content")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise ValueError(f"Message {i} content must be text.")
        msg: Message = {"role": role, "content": content}
        if m.get("tool_calls"):
            msg["tool_calls"] = list(m["tool_calls"])
        if m.get("tool_call_id"):
            msg["tool_call_id"] = m["tool_call_id"]
        if m.get("name"):
            msg["name"] = m["name"]
        out.append(msg)
    return out
