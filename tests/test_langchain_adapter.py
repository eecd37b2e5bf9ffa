"""The LangChain adapter ``StudioChatModel`` (issue 9): standard parameter names, per-call
overrides, ``tool_choice``, refusal of unknown arguments, timeout and retries; and LangChain's own
standard test suites (``langchain-tests``) for it.

The unit suite runs over a scripted stream opener (no model); the integration suite runs over the
tiny local model, in this process (``placement="local"``). Tests of the integration suite that
need a model able to follow instructions are marked (the suite's way: ``xfail`` with a reason,
``run=False``, so they are not run) below, each with its reason:

- ``test_stop_sequence``: needs the model to write the stop word it is asked to write.
- ``test_tool_calling`` (and async): the call is forced and well-formed, but the argument has
  to be the number in the question.
- ``test_json_mode``: the answer is a JSON object, but the keys the prompt asks for need a
  model that reads the prompt.
- ``test_tool_message_histories_*``, ``test_structured_few_shot_examples``,
  ``test_tool_message_error_status``, ``test_agent_loop``, ``test_bind_runnables_as_tools``,
  ``test_tool_calling_with_no_arguments``, ``test_unicode_tool_call_integration``: the
  assertions read what the model says after a tool result, or expect the model to choose a
  tool call on its own (``tool_choice`` auto) or to copy Unicode text into its arguments; a
  random tiny model can't. Forced calls and schemas are covered by ``test_tool_choice`` and
  ``test_structured_output*``, which pass because local models are constrained by a grammar.
- ``test_double_messages_conversation``, ``test_conversation``, ``test_message_with_name``:
  pass (they only need an answer); kept.
- Image, audio, PDF and Anthropic-format inputs: not supported (text models only).
- Model override per call: a StudioChatModel is bound to one registered model.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests
from pydantic import BaseModel, ValidationError

from backend.accounts.actor import Actor
from backend.llm.errors import InferenceBusy
from backend.llm.langchain_chat import StudioChatModel
from backend.llm.types import ToolCall, Usage
from backend.services import chat as chat_service
from backend.services import models as models_service

SYSTEM = Actor.system()


class Scripted:
    """A stream opener that answers from a script and records what it was asked."""

    def __init__(self, reply: str = "Hello there, friend.", *, fail: int = 0,
                 delay_s: float = 0.0) -> None:
        self.reply = reply
        self.fail = fail
        self.delay_s = delay_s
        self.calls: list[dict[str, Any]] = []

    def __call__(self, messages: list[dict[str, Any]], params: dict[str, Any],
                 tools: list[dict[str, Any]] | None) -> Any:
        self.calls.append({"messages": messages, "params": params, "tools": tools})
        if self.fail:
            self.fail -= 1
            raise InferenceBusy("busy", retry_after_s=0.01)
        return _ScriptedStream(self, params, tools)


class _ScriptedStream:
    def __init__(self, script: Scripted, params: dict[str, Any],
                 tools: list[dict[str, Any]] | None) -> None:
        self.script, self.params, self.tools = script, params, tools
        self.usage: Usage | None = None

    def __iter__(self) -> Iterator[Any]:
        choice = self.params.get("tool_choice")
        if self.tools and choice not in (None, "auto", "none"):
            fn = self.tools[0]["function"] if choice == "required" else choice["function"]
            yield ToolCall(id="call_1", name=fn["name"], arguments={"a": 1, "b": 2})
            n = 1
        else:
            words = self.script.reply.split(" ")
            limit = int(self.params.get("max_new_tokens") or len(words))
            n = 0
            for i, w in enumerate(words[:limit]):
                time.sleep(self.script.delay_s)
                n += 1
                yield w if i == 0 else " " + w
        self.usage = Usage(prompt_tokens=7, completion_tokens=n, ttft_ms=1.0, tokens_per_s=None,
                           total_ms=1.0, finish_reason="stop")


# --- the defects ----------------------------------------------------------------------------

def test_standard_settings_reach_the_model_and_calls_override_them() -> None:
    script = Scripted()
    llm = StudioChatModel(model_name="m", temperature=0, max_tokens=5, stop=["END"], timeout=60,
                          max_retries=1, open_stream=script)
    assert (llm.temperature, llm.max_tokens, llm.stop, llm.timeout, llm.max_retries) == \
        (0, 5, ["END"], 60, 1)
    assert StudioChatModel(model="m", open_stream=script).model_name == "m"
    llm.invoke("hi")
    assert script.calls[-1]["params"] == {"temperature": 0, "max_new_tokens": 5, "stop": ["END"]}
    llm.invoke("hi", max_tokens=2, temperature=0.5, top_p=0.9, seed=3, stop=["x"])
    assert script.calls[-1]["params"] == {"temperature": 0.5, "max_new_tokens": 2,
                                          "stop": ["x"], "top_p": 0.9, "seed": 3}
    llm.bind(max_tokens=1).invoke("hi")
    assert script.calls[-1]["params"]["max_new_tokens"] == 1


def test_unknown_arguments_are_refused() -> None:
    with pytest.raises(ValidationError, match="max_tokenz"):
        StudioChatModel(model="m", max_tokenz=5, open_stream=Scripted())  # type: ignore[call-arg]
    llm = StudioChatModel(model="m", open_stream=Scripted())
    with pytest.raises(TypeError, match="max_tokenz"):
        llm.invoke("hi", max_tokenz=5)


def test_tool_choice_is_honoured() -> None:
    script = Scripted()
    llm = StudioChatModel(model="m", open_stream=script)

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    def mul(a: int, b: int) -> int:
        """Multiply two numbers."""
        return a * b

    expected = {"auto": "auto", "none": "none", "required": "required", "any": "required",
                "mul": {"type": "function", "function": {"name": "mul"}}}
    for choice, sent in expected.items():
        llm.bind_tools([add, mul], tool_choice=choice).invoke("2+3?")
        assert script.calls[-1]["params"]["tool_choice"] == sent
    msg = llm.bind_tools([add, mul], tool_choice="mul").invoke("2*3?")
    assert isinstance(msg, AIMessage) and msg.tool_calls[0]["name"] == "mul"
    with pytest.raises(ValueError, match="div"):
        llm.bind_tools([add], tool_choice="div")


def test_timeout_and_retries() -> None:
    slow = StudioChatModel(model="m", timeout=0.2,
                           open_stream=Scripted("a b c d e f g h", delay_s=0.1))
    with pytest.raises(TimeoutError, match="0.2 s"):
        slow.invoke("hi")
    flaky = Scripted(fail=2)
    assert StudioChatModel(model="m", max_retries=2, open_stream=flaky).invoke("hi").content
    assert len(flaky.calls) == 3
    with pytest.raises(InferenceBusy):
        StudioChatModel(model="m", max_retries=0, open_stream=Scripted(fail=1)).invoke("hi")


@pytest.fixture(scope="module")
def tiny_chat(tiny_model_dir: Path) -> str:
    name = f"lc-std-{uuid.uuid4().hex[:6]}"
    models_service.add_local_model(actor=SYSTEM, name=name, source=str(tiny_model_dir))
    return name


def test_on_the_tiny_model_max_tokens_holds(tiny_chat: str) -> None:
    llm = chat_service.chat_model(actor=SYSTEM, model=tiny_chat, placement="local",
                                  temperature=0, max_tokens=5, stop=["zzz-never"], timeout=60)
    msg = llm.invoke([HumanMessage("Hello, how are you?")])
    assert msg.usage_metadata and msg.usage_metadata["output_tokens"] == 5
    short = llm.invoke([HumanMessage("Hello, how are you?")], max_tokens=2)
    assert short.usage_metadata and short.usage_metadata["output_tokens"] == 2
    with pytest.raises(ValidationError):
        chat_service.chat_model(actor=SYSTEM, model=tiny_chat, maxtokens=5)


def test_on_the_tiny_model_tool_choice(tiny_chat: str) -> None:
    llm = chat_service.chat_model(actor=SYSTEM, model=tiny_chat, placement="local",
                                  temperature=0.8, seed=1, max_tokens=100)

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    forced = llm.bind_tools([add], tool_choice="add").invoke("What is 2 + 3?")
    assert forced.tool_calls and forced.tool_calls[0]["name"] == "add"
    assert set(forced.tool_calls[0]["args"]) == {"a", "b"}
    none = llm.bind_tools([add], tool_choice="none").invoke("What is 2 + 3?", max_tokens=20)
    assert not none.tool_calls

    class Pet(BaseModel):
        name: str
        legs: int

    pet = llm.with_structured_output(Pet).invoke("A pet, please.")
    assert isinstance(pet, Pet)


# --- LangChain's standard suites --------------------------------------------------------------

class TestStudioChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[StudioChatModel]:
        return StudioChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "scripted", "open_stream": Scripted()}

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # the suite's own, less api_key: the stream opener carries who calls (an actor), and
        # an unknown argument is refused
        params = dict(super().standard_chat_model_params)
        params.pop("api_key")
        return params

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True


@pytest.fixture(scope="class")
def tiny_opener(tiny_model_dir: Path) -> Any:
    name = f"lc-int-{uuid.uuid4().hex[:6]}"
    models_service.add_local_model(actor=SYSTEM, name=name, source=str(tiny_model_dir))
    return chat_service.chat_model(actor=SYSTEM, model=name, placement="local").open_stream


_NEEDS_A_REAL_MODEL = "needs a model that follows instructions (see the module docstring)"


@pytest.mark.slow  # ~8 minutes on the tiny model on 2 busy cores
@pytest.mark.asyncio  # the suite's async tests; sync ones ignore it
@pytest.mark.filterwarnings("ignore:The test .* is marked with '@pytest.mark.asyncio'")
@pytest.mark.usefixtures("tiny_opener")
class TestStudioChatModelIntegration(ChatModelIntegrationTests):
    opener: Any = None

    @pytest.fixture(autouse=True)
    def _opener(self, tiny_opener: Any) -> None:
        type(self).opener = tiny_opener

    @property
    def chat_model_class(self) -> type[StudioChatModel]:
        return StudioChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        # short answers keep the suite fast; a forced tool call needs ~100 tokens of the tiny
        # tokenizer, so max_tokens is not lower
        return {"model": "tiny", "open_stream": type(self).opener, "max_tokens": 120,
                "temperature": 0.8, "seed": 0}

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        return {"timeout": 120, "max_retries": 0}

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @pytest.mark.xfail(reason=_NEEDS_A_REAL_MODEL, run=False)
    def test_stop_sequence(self, model: Any) -> None: ...

    @pytest.mark.xfail(reason=_NEEDS_A_REAL_MODEL + ": the call is forced and well-formed, but "
                       "the argument must be the 3 from the question", run=False)
    def test_tool_calling(self, *a: Any, **k: Any) -> None: ...

    @pytest.mark.xfail(reason=_NEEDS_A_REAL_MODEL + ": the call is forced and well-formed, but "
                       "the argument must be the 3 from the question", run=False)
    async def test_tool_calling_async(self, *a: Any, **k: Any) -> None: ...

    @pytest.mark.xfail(reason=_NEEDS_A_REAL_MODEL + ": json_mode guarantees a JSON object; "
                       "the keys the prompt asks for need the model to read it", run=False)
    def test_json_mode(self, *a: Any, **k: Any) -> None: ...

    @pytest.mark.xfail(reason=_NEEDS_A_REAL_MODEL, run=False)
    def test_tool_message_histories_string_content(self, *a: Any, **k: Any) -> None: ...

    @pytest.mark.xfail(reason=_NEEDS_A_REAL_MODEL, run=False)
    def test_tool_message_histories_list_content(self, *a: Any, **k: Any) -> None: ...

    @pytest.mark.xfail(reason=_NEEDS_A_REAL_MODEL, run=False)
    def test_structured_few_shot_examples(self, *a: Any, **k: Any) -> None: ...

    @pytest.mark.xfail(reason=_NEEDS_A_REAL_MODEL, run=False)
    def test_tool_message_error_status(self, *a: Any, **k: Any) -> None: ...

    @pytest.mark.xfail(reason=_NEEDS_A_REAL_MODEL, run=False)
    def test_agent_loop(self, *a: Any, **k: Any) -> None: ...

    @pytest.mark.xfail(reason=_NEEDS_A_REAL_MODEL, run=False)
    def test_bind_runnables_as_tools(self, *a: Any, **k: Any) -> None: ...

    @pytest.mark.xfail(reason=_NEEDS_A_REAL_MODEL, run=False)
    def test_tool_calling_with_no_arguments(self, *a: Any, **k: Any) -> None: ...

    @pytest.mark.xfail(reason=_NEEDS_A_REAL_MODEL, run=False)
    def test_unicode_tool_call_integration(self, *a: Any, **k: Any) -> None: ...
