"""Any registered model as a LangChain chat model, so agents and chains use one interface.

``StudioChatModel`` wraps a stream opener (``backend.services.chat.chat_model`` supplies one bound
to an actor and a model). It takes LangChain's standard parameters (``model``/``model_name``,
``temperature``, ``max_tokens``, ``stop``, ``timeout``, ``max_retries``) plus ``top_p``, ``seed``
and ``repetition_penalty``; each can be overridden per call (``invoke(..., max_tokens=5)``) or
with ``bind``. Unknown constructor arguments and unknown per-call settings are refused, never
dropped. ``bind_tools(tools, tool_choice=...)`` honours ``auto``, ``none``, ``required``/``any``
and a named tool (local models are constrained to make the call), and ``with_structured_output``
supports ``json_schema`` (default), ``function_calling`` and ``json_mode`` the way
``ChatOpenAI`` does, over OpenAI's ``response_format``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import (
    BaseChatModel,
    LangSmithParams,
    generate_from_stream,
)
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import (
    JsonOutputKeyToolsParser,
    PydanticToolsParser,
)
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from backend.llm.errors import EndpointError, InferenceUnavailable
from backend.llm.types import Message, ToolCall, Usage

# (messages, params, tools) -> an iterable of str | ToolCall with a ``usage`` attribute after
StreamOpener = Callable[[list[Message], dict[str, Any], list[dict[str, Any]] | None], Any]

# per-call settings: LangChain/OpenAI name -> the name stream_chat takes
CALL_SETTINGS = {"temperature": "temperature", "top_p": "top_p", "max_tokens": "max_new_tokens",
                 "max_new_tokens": "max_new_tokens", "stop": "stop", "seed": "seed",
                 "repetition_penalty": "repetition_penalty",
                 "response_format": "response_format", "tool_choice": "tool_choice"}
RETRY_ON = (InferenceUnavailable, EndpointError)  # worth another try: busy, down, network


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


def _tool_choice(choice: Any, names: Sequence[str]) -> str | dict[str, Any] | None:
    """LangChain's ``tool_choice`` spellings -> OpenAI's."""
    if choice is None or choice == "auto":
        return None if choice is None else "auto"
    if choice in ("none", "required"):
        return str(choice)
    if choice == "any" or choice is True:
        if choice is True and len(names) == 1:
            return {"type": "function", "function": {"name": names[0]}}
        return "required"
    if isinstance(choice, str):
        if choice not in names:
            raise ValueError(f"tool_choice {choice!r} is not one of the tools "
                             f"({', '.join(names)}).")
        return {"type": "function", "function": {"name": choice}}
    if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        return {"type": "function", "function": {"name": str(choice["function"]["name"])}}
    raise ValueError('tool_choice must be "auto", "none", "required"/"any", a tool name or '
                     '{"type": "function", "function": {"name": ...}}.')


class StudioChatModel(BaseChatModel):
    """A registered model (local or remote) behind LangChain's chat-model interface."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid",
                              populate_by_name=True)

    model_name: str = Field(alias="model", description="The registered model's name.")
    temperature: float | None = Field(default=None, description="0 decodes greedily.")
    max_tokens: int | None = Field(default=None, description="Longest answer, in tokens.")
    top_p: float | None = None
    seed: int | None = None
    repetition_penalty: float | None = None
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    timeout: float | None = Field(
        default=None, description="Seconds a call may take; checked as pieces arrive.")
    max_retries: int = Field(
        default=2, ge=0, description="Retries when no worker or endpoint could take the call "
                                     "(before any answer came).")
    streaming: bool = Field(default=False, description="Accepted for compatibility; the "
                                                       "model always streams internally.")
    open_stream: StreamOpener = Field(exclude=True, repr=False)
    primable: bool = Field(
        default=False, exclude=True,
        description="``prime`` may open a call ahead: ``open_stream`` has no side effects "
                    "beyond the call it opens, and its streams can be dropped unread "
                    "(``discard``) and sent ahead (``start``), as ``stream_chat``'s can.")
    # a call sent ahead by ``prime``: ((messages, params, tools), stream)
    _primed: tuple[Any, Any] | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        """``max_new_tokens`` (the studio's own name) is accepted for ``max_tokens``."""
        if isinstance(data, dict) and "max_new_tokens" in data:
            data = dict(data)
            value = data.pop("max_new_tokens")
            data.setdefault("max_tokens", value)
        return data

    @property
    def _llm_type(self) -> str:
        return "llm-studio"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, **self._default_settings()}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(ls_provider="llm-studio", ls_model_type="chat",
                                 ls_model_name=str(kwargs.get("model") or self.model_name))
        temperature = kwargs.get("temperature", self.temperature)
        if temperature is not None:
            params["ls_temperature"] = temperature
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        stops = stop or kwargs.get("stop") or self.stop
        if stops:
            params["ls_stop"] = list(stops)
        return params

    def _default_settings(self) -> dict[str, Any]:
        values = {"temperature": self.temperature, "max_new_tokens": self.max_tokens,
                  "top_p": self.top_p, "seed": self.seed,
                  "repetition_penalty": self.repetition_penalty,
                  "stop": list(self.stop) if self.stop else None}
        return {k: v for k, v in values.items() if v is not None}

    def _call_settings(self, stop: list[str] | None, kwargs: dict[str, Any]
                       ) -> tuple[dict[str, Any], list[dict[str, Any]] | None, float | None]:
        """(params for stream_chat, tools, timeout) from the defaults and this call's kwargs."""
        params = self._default_settings()
        tools = kwargs.get("tools") or None
        timeout = kwargs.get("timeout", self.timeout)
        unknown = sorted(k for k in kwargs if k not in CALL_SETTINGS
                         and k not in ("tools", "timeout", "model", "stream_options")
                         and not k.startswith("ls_"))
        if unknown:
            raise TypeError(f"Unknown setting(s) for {self.model_name}: {', '.join(unknown)}. "
                            f"Known: {', '.join(sorted({*CALL_SETTINGS, 'timeout'}))}.")
        model = kwargs.get("model")
        if model and model != self.model_name:
            raise ValueError(f"This chat model is bound to {self.model_name!r}; make another "
                             f"one for {model!r}.")
        for key, target in CALL_SETTINGS.items():
            if kwargs.get(key) is not None:
                params[target] = kwargs[key]
        if stop:
            params["stop"] = list(stop)
        if "tool_choice" in params:
            names = [t["function"]["name"] for t in tools or []]
            choice = _tool_choice(params.pop("tool_choice"), names)
            if choice is not None and tools:
                params["tool_choice"] = choice
        return params, tools, timeout

    # --- tools and structured output ----------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: dict[str, Any] | str | bool | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Tools in OpenAI's format; ``tool_choice``: "auto", "none", "required" (or "any",
        or True with one tool), a tool name, or {"type": "function", "function": {"name"}}."""
        formatted = [convert_to_openai_tool(t, strict=strict) for t in tools]
        if tool_choice is not None:
            names = [t["function"]["name"] for t in formatted]
            kwargs["tool_choice"] = _tool_choice(tool_choice, names)
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(  # type: ignore[override]
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Typed answers, as ``ChatOpenAI`` gives them: ``json_schema`` sends OpenAI's
        ``response_format`` (local models are constrained to the schema), ``function_calling``
        forces a call of a tool made from the schema, ``json_mode`` asks for any JSON object."""
        if kwargs:
            raise ValueError(f"Unknown argument(s): {', '.join(sorted(kwargs))}.")
        is_model = isinstance(schema, type) and is_basemodel_subclass(schema)
        llm: Runnable[LanguageModelInput, Any]
        if method == "json_mode":
            llm = self.bind(response_format={"type": "json_object"},
                            ls_structured_output_format={"kwargs": {"method": method},
                                                         "schema": schema})
            parser: Runnable[Any, Any] = (PydanticOutputParser(pydantic_object=schema)  # type: ignore[arg-type]
                                          if is_model else JsonOutputParser())
        else:
            if schema is None:
                raise ValueError(f"method {method!r} needs a schema.")
            tool = convert_to_openai_tool(schema, strict=strict)
            name = tool["function"]["name"]
            if method == "function_calling":
                llm = self.bind_tools([schema], tool_choice=name, strict=strict,
                                      ls_structured_output_format={
                                          "kwargs": {"method": method, "strict": strict},
                                          "schema": tool})
                parser = (PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
                          if is_model else
                          JsonOutputKeyToolsParser(key_name=name, first_tool_only=True))
            elif method == "json_schema":
                spec: dict[str, Any] = {"name": name,
                                        "schema": tool["function"].get("parameters") or {}}
                if tool["function"].get("description"):
                    spec["description"] = tool["function"]["description"]
                if strict is not None:
                    spec["strict"] = strict
                llm = self.bind(response_format={"type": "json_schema", "json_schema": spec},
                                ls_structured_output_format={
                                    "kwargs": {"method": method, "strict": strict},
                                    "schema": tool})
                parser = (PydanticOutputParser(pydantic_object=schema)  # type: ignore[arg-type]
                          if is_model else JsonOutputParser())
            else:
                raise ValueError(f"Unknown method {method!r}: use json_schema, "
                                 "function_calling or json_mode.")
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser,
                                            parsing_error=lambda _: None)
        fallback = RunnablePassthrough.assign(parsed=lambda _: None)
        with_fallback = parsed.with_fallbacks([fallback], exception_key="parsing_error")
        return RunnableMap(raw=llm) | with_fallback

    # --- generation -------------------------------------------------------------------

    def prime(self, messages: Sequence[BaseMessage], **kwargs: Any) -> bool:
        """Open now the call that ``stream(messages, **kwargs)`` (or ``invoke``) will make
        next, and send it where it can be (a gpu worker's chat), so the model works on it while
        the caller gets there (an agent's graph, say). That call then reads this one's answer
        if its messages, settings and tools are the same, and otherwise drops it and makes its
        own; ``discard_primed`` drops one never read. Nothing is primed (False) unless the
        model is ``primable``, or when opening fails: the call itself then opens the stream,
        and meets the error, as usual."""
        self.discard_primed()
        if not self.primable:
            return False
        kwargs = dict(kwargs)
        try:
            params, tools, _ = self._call_settings(kwargs.pop("stop", None), kwargs)
            msgs = to_openai_messages(messages)
            stream = self.open_stream(msgs, params, tools)
        except Exception:  # noqa: BLE001 - the call itself meets it again, with its retries
            return False
        self._primed = ((msgs, params, tools), stream)
        start = getattr(stream, "start", None)
        if callable(start):
            try:
                start()
            except Exception:  # noqa: BLE001 - as above: the call opens its own stream
                self.discard_primed()
                return False
        return True

    def discard_primed(self) -> None:
        """Drop a call sent ahead by ``prime`` and never read (its generation stops)."""
        primed, self._primed = self._primed, None
        if primed is not None:
            self._drop(primed[1])

    @staticmethod
    def _drop(stream: Any) -> None:
        discard = getattr(stream, "discard", None)
        if callable(discard):
            discard()

    def _take_primed(self, key: tuple[Any, Any, Any]) -> Any:
        """The primed stream when it was sent for exactly this call (else it is dropped)."""
        primed, self._primed = self._primed, None
        if primed is None:
            return None
        if primed[0] == key:
            return primed[1]
        self._drop(primed[1])
        return None

    def _open(self, messages: list[Message], params: dict[str, Any],
              tools: list[dict[str, Any]] | None) -> tuple[Any, Iterator[Any], Any]:
        """Open the stream and read its first piece, retrying while no worker or endpoint
        could take it (``max_retries`` times, backing off). A call primed for exactly these
        messages, settings and tools is the first try."""
        attempt = 0
        primed = self._take_primed((messages, params, tools))
        while True:
            try:
                if primed is not None:
                    stream, primed = primed, None
                else:
                    stream = self.open_stream(messages, params, tools)
                it = iter(stream)
                return stream, it, next(it, _END)
            except RETRY_ON as exc:
                if attempt >= self.max_retries:
                    raise
                wait = getattr(exc, "retry_after_s", None) or min(2.0 ** attempt, 8.0)
                time.sleep(min(float(wait), 30.0))
                attempt += 1

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        params, tools, timeout = self._call_settings(stop, kwargs)
        deadline = time.monotonic() + timeout if timeout else None
        stream, it, piece = self._open(to_openai_messages(messages), params, tools)
        n_calls = 0
        try:
            while piece is not _END:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"{self.model_name} did not finish within {timeout:g} s "
                                       "(the timeout); the answer was stopped.")
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
                piece = next(it, _END)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()  # leaving early stops the generation
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
                    chunk_position="last",
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


_END = object()
