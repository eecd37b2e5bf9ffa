"""Filters over streamed text: cut at stop strings, and lift ``<tool_call>{json}</tool_call>``
blocks out of a local model's answer as :class:`ToolCall` values. Both hold back only the few
characters that might start a stop string or a tag, so text still flows token by token."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from backend.llm.types import ChatPiece, ToolCall

TOOL_OPEN = "<tool_call>"
TOOL_CLOSE = "</tool_call>"


def _held_suffix(text: str, patterns: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of some pattern."""
    best = 0
    for p in patterns:
        for k in range(min(len(p) - 1, len(text)), best, -1):
            if text.endswith(p[:k]):
                best = k
                break
    return best


class StopStringFilter:
    """Feed text pieces; get back what may be shown. ``hit`` turns true at the first stop string,
    and nothing from the stop string on is ever returned."""

    def __init__(self, stop: Sequence[str]) -> None:
        self.stop = [s for s in stop if s]
        self.held = ""
        self.hit = False

    def feed(self, text: str) -> str:
        if self.hit:
            return ""
        if not self.stop:
            return text
        full = self.held + text
        cut = min((i for i in (full.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            self.hit = True
            self.held = ""
            return full[:cut]
        k = _held_suffix(full, self.stop)
        self.held = full[len(full) - k:] if k else ""
        return full[: len(full) - k]

    def flush(self) -> str:
        out, self.held = ("" if self.hit else self.held), ""
        return out


def parse_tool_call(body: str) -> ToolCall | None:
    """``{"name": ..., "arguments": {...}}`` (arguments may also be a JSON string) -> ToolCall."""
    try:
        data = json.loads(body.strip())
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    args = data.get("arguments", data.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return None
    if not isinstance(args, dict):
        return None
    return ToolCall(id=f"call_{uuid.uuid4().hex[:12]}", name=data["name"], arguments=args)


class ToolCallFilter:
    """Splits a stream into text and tool calls. A block that is not valid JSON is passed through
    as text, so nothing the model wrote is lost; but with ``forced`` (the grammar made the model
    write a call) a call the token budget cut short is dropped: it is not the model's prose, and
    the answer ends with ``finish_reason: "length"`` and no markup."""

    def __init__(self, forced: bool = False) -> None:
        self.buf = ""
        self.inside = False
        self.calls = 0
        self.forced = forced

    def feed(self, text: str) -> list[ChatPiece]:
        self.buf += text
        out: list[ChatPiece] = []
        while True:
            if not self.inside:
                i = self.buf.find(TOOL_OPEN)
                if i < 0:
                    k = _held_suffix(self.buf, [TOOL_OPEN])
                    emit = self.buf[: len(self.buf) - k]
                    self.buf = self.buf[len(self.buf) - k:] if k else ""
                    if emit:
                        out.append(emit)
                    return out
                if i:
                    out.append(self.buf[:i])
                self.buf = self.buf[i + len(TOOL_OPEN):]
                self.inside = True
            else:
                j = self.buf.find(TOOL_CLOSE)
                if j < 0:
                    return out
                body, self.buf = self.buf[:j], self.buf[j + len(TOOL_CLOSE):]
                self.inside = False
                call = parse_tool_call(body)
                if call is None:
                    out.append(TOOL_OPEN + body + TOOL_CLOSE)
                else:
                    self.calls += 1
                    out.append(call)

    def flush(self) -> list[ChatPiece]:
        """End of stream: an unclosed block is tried as a call (models often stop at EOS)."""
        rest, self.buf = self.buf, ""
        if not self.inside:
            if self.forced and TOOL_OPEN.startswith(rest):
                return []  # the start of the forced call's opening tag, cut short
            return [rest] if rest else []
        self.inside = False
        call = parse_tool_call(rest)
        if call is not None:
            self.calls += 1
            return [call]
        if self.forced:
            return []  # the forced call cut short by the budget: no half call as text
        return [TOOL_OPEN + rest]
