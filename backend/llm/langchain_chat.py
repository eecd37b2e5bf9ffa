"""Any registered model as a LangChain chat model, so agents and chains use one interface.

``StudioChatModel`` wraps a stream opener (``backend.services.chat`` supplies one bound to an
actor and a model); it streams, merges chunks for ``invoke``, reports usage and supports
``bind_tools`` (tool calls come back as ``AIMessage.tool_calls``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel, generate_from_stream
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

from backend.llm.types import Message, ToolCall, Usage

# (messages, params, tools) -> an iterable of str | ToolCall with a ``usage`` attribute after
StreamOpener = Callable[[list[Message], dict[str, Any], list[dict[str, Any]] | None], Any]

PARAM_KEYS = ("temperature", "top_p", "max_new_tokens", "stop", "seed", "repetition_penalty")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "".join(parts)


def to_openai_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    out: list[Message] = []
    for m in messages:
        if isinstance(m, SystemMessage):
            out.append({"role": "system", "content": _text(m.content)})
        elif isinstance(m, HumanMessage):
            out.append({"role": "user", "content": _text(m.content)})
        elif isinstance(m, AIMessage):
            msg: Message = {"role": "assistant", "content": _text(m.content)}
            if m.tool_calls:
                msg["tool_calls"] = [
                    {"id": tc.get("id") or "", "type": "function",
                     "function": {"name": tc["name"], "arguments": tc["args"]}}
                    for tc in m.tool_calls
                ]
            out.append(msg)
        elif isinstance(m, ToolMessage):
            out.append({"role": "tool", "content": _text(m.content),
                        "tool_call_id": m.tool_call_id})
        else:
            role = {"human": "user", "ai": "assistant"}.get(m.type, m.type)
            out.append({"role": role, "content": _text(m.content)})
    return out


class StudioChatModel(BaseChatModel):
    """A registered model (local or remote) behind LangChain's chat-model interface."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_name: str = Field(description="The registered model's name.")
    params: dict[str, Any] = Field(default_factory=dict, description="Generation settings.")
    open_stream: StreamOpener = Field(exclude=True, repr=False)

    @property
    def _llm_type(self) -> str:
        return "llm-studio"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, **self.params}

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=formatted, **kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        params = dict(self.params)
        params.update({k: kwargs[k] for k in PARAM_KEYS if kwargs.get(k) is not None})
        if stop:
            params["stop"] = list(stop)
        tools = kwargs.get("tools") or None
        stream = self.open_stream(to_openai_messages(messages), params, tools)
        n_calls = 0
        for piece in stream:
            if isinstance(piece, ToolCall):
                chunk = ChatGenerationChunk(message=AIMessageChunk(
                    content="",
                    tool_call_chunks=[tool_call_chunk(
                        name=piece.name, args=json.dumps(piece.arguments, ensure_ascii=False),
                        id=piece.id, index=n_calls)],
                ))
                n_calls += 1
            else:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
                if run_manager:
                    run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        usage: Usage | None = getattr(stream, "usage", None)
        if usage is not None:
            prompt = usage.prompt_tokens or 0
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    usage_metadata={"input_tokens": prompt,
                                    "output_tokens": usage.completion_tokens,
                                    "total_tokens": prompt + usage.completion_tokens},
                    response_metadata={"finish_reason": usage.finish_reason,
                                       "model_name": self.model_name},
                ),
                generation_info={"finish_reason": usage.finish_reason},
            )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))
