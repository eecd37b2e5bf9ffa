"""What ``stream_chat`` returns: iterate it for text pieces (``str``) and tool calls
(:class:`ToolCall`); after the end, ``usage`` holds tokens in/out, time to first token and
tokens/s. Leaving the loop early (or ``stop()``) stops generation wherever it runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from backend.llm.types import ChatEvent, ChatPiece, ToolCall, Usage


@dataclass
class ChatResult:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None


class ChatStream:
    def __init__(self, events: Iterator[ChatEvent], *, request_id: str, model: str,
                 stop: Callable[[], None], started: float | None = None,
                 start: Callable[[], None] | None = None,
                 release: Callable[[], None] | None = None) -> None:
        self.request_id = request_id
        self.model = model
        self.usage: Usage | None = None
        self._events = events
        self._stop = stop
        self._started = started if started is not None else time.perf_counter()
        self._first: float | None = None
        self._consumed = False
        self._start = start
        self._release = release

    def __iter__(self) -> Iterator[ChatPiece]:
        if self._consumed:
            raise RuntimeError("A chat stream can be read once.")
        self._consumed = True
        try:
            for ev in self._events:
                if isinstance(ev, Usage):
                    self.usage = self._finish(ev)
                    continue
                if self._first is None:
                    self._first = time.perf_counter()
                yield ev
        finally:
            if self.usage is None:
                self.stop()
            close = getattr(self._events, "close", None)
            if close is not None:
                close()

    def start(self) -> bool:
        """Send the request now rather than at the first read, so the model works on it while
        the caller gets ready to read (True when it was sent; a chat that runs in the reader's
        own thread, or an endpoint's, starts at the first read)."""
        if self._start is None or self._consumed:
            return False
        self._start()
        return True

    def discard(self) -> None:
        """Give up a stream that may never have been read: stop its generation and give back
        its place in the queue (reading it afterwards is an error)."""
        if self._consumed:
            self.stop()
            close = getattr(self._events, "close", None)
            if close is not None:
                close()
            return
        self._consumed = True
        try:
            self.stop()
        finally:
            if self._release is not None:
                self._release()

    def _finish(self, usage: Usage) -> Usage:
        """Times as the caller saw them: queueing, loading and transport included."""
        now = time.perf_counter()
        if self._first is not None:
            usage.ttft_ms = (self._first - self._started) * 1000
        usage.total_ms = (now - self._started) * 1000
        return usage

    def text(self) -> Iterator[str]:
        """Only the text pieces (tool calls are kept on ``tool_calls``), e.g. for st.write_stream."""
        self.tool_calls: list[ToolCall] = []
        for piece in self:
            if isinstance(piece, str):
                yield piece
            else:
                self.tool_calls.append(piece)

    def collect(self) -> ChatResult:
        parts: list[str] = []
        calls: list[ToolCall] = []
        for piece in self:
            if isinstance(piece, str):
                parts.append(piece)
            else:
                calls.append(piece)
        return ChatResult(text="".join(parts), tool_calls=calls, usage=self.usage)

    def stop(self) -> None:
        """Ask the generator to stop (takes effect at its next token)."""
        self._stop()
