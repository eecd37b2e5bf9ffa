"""A scripted chat model for deterministic agent tests: the registry's real LangChain adapter
(``StudioChatModel``) over a stream opener that plays back scripted replies (text, or tool
calls) and records what the model was sent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from backend.llm.langchain_chat import StudioChatModel
from backend.llm.types import ToolCall, Usage

Reply = str | list[ToolCall] | tuple[str, list[ToolCall]]


def call(name: str, **arguments: Any) -> ToolCall:
    call.n = getattr(call, "n", 0) + 1  # type: ignore[attr-defined]
    return ToolCall(id=f"call_{call.n}", name=name, arguments=arguments)  # type: ignore[attr-defined]


class _Stream:
    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.usage: Usage | None = None

    def __iter__(self) -> Iterator[str | ToolCall]:
        text, calls = (self.reply, []) if isinstance(self.reply, str) else (
            self.reply if isinstance(self.reply, tuple) else ("", self.reply))
        words = text.split(" ")
        for i, w in enumerate(words):  # stream word by word
            yield w if i == 0 else " " + w
        yield from calls
        self.usage = Usage(prompt_tokens=10, completion_tokens=max(1, len(words)), ttft_ms=1.0,
                           tokens_per_s=None, total_ms=2.0,
                           finish_reason="tool_calls" if calls else "stop")


class Script:
    """Replies in order; ``sent`` keeps each call's (messages, tools)."""

    def __init__(self, *replies: Reply, default: str | None = None) -> None:
        self.replies = list(replies)
        self.default = default
        self.sent: list[tuple[list[dict[str, Any]], list[dict[str, Any]] | None]] = []

    def open(self, messages: list[dict[str, Any]], params: dict[str, Any],
             tools: list[dict[str, Any]] | None) -> _Stream:
        self.sent.append((messages, tools))
        if self.replies:
            return _Stream(self.replies.pop(0))
        if self.default is not None:
            return _Stream(self.default)
        raise AssertionError(f"The script ran out of replies at call {len(self.sent)}.")

    def model(self) -> StudioChatModel:
        return StudioChatModel(model_name="scripted", open_stream=self.open)
