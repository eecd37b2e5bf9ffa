"""An agent's first model call sent ahead (``StudioChatModel.prime``): the call that reads it
gets the same answer as without it, a call that asks for something else gets its own, nothing
primed is left running; and a conversation stays consistent when the model fails after its
first token. End to end on the tiny model served by a real gpu worker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from backend.accounts.actor import Role
from backend.llm.langchain_chat import StudioChatModel
from backend.llm.types import Usage
from backend.services import agents, models
from tests.accounts_helpers import actor_of, make_user, make_workspace
from tests.agents_helpers import Script

# ------------------------------------------------------------ the adapter, a recording opener


class _Stream:
    """Like ``stream_chat``'s: read once, ``start`` sends ahead, ``discard`` drops it unread."""

    def __init__(self, text: str, log: list[str]) -> None:
        self.text, self.log = text, log
        self.usage: Usage | None = None

    def start(self) -> bool:
        self.log.append(f"start {self.text}")
        return True

    def discard(self) -> None:
        self.log.append(f"discard {self.text}")

    def __iter__(self) -> Iterator[str]:
        self.log.append(f"read {self.text}")
        for i, word in enumerate(self.text.split(" ")):
            yield word if i == 0 else " " + word
        self.usage = Usage(prompt_tokens=3, completion_tokens=2, ttft_ms=1.0,
                           tokens_per_s=None, total_ms=1.0, finish_reason="stop")


def _model(log: list[str], fail: bool = False) -> StudioChatModel:
    def open_stream(messages: list[dict[str, Any]], params: dict[str, Any],
                    tools: list[dict[str, Any]] | None) -> _Stream:
        if fail:
            log.append("open failed")
            raise RuntimeError("no worker")
        text = f"{messages[-1]['content']} t={params.get('temperature'):g}"
        log.append(f"open {text}")
        return _Stream(text, log)

    return StudioChatModel(model_name="rec", open_stream=open_stream, primable=True,
                           temperature=0)


def test_a_primed_call_is_read_by_the_same_call_and_dropped_by_another() -> None:
    log: list[str] = []
    llm = _model(log)
    asked = [SystemMessage("sys"), HumanMessage("hi")]
    assert llm.prime(asked)
    assert log == ["open hi t=0", "start hi t=0"]  # sent before anything reads it
    assert llm.invoke(asked).content == "hi t=0"
    assert log[2:] == ["read hi t=0"]  # the primed stream answered: no second open

    log.clear()
    assert llm.prime(asked)
    # same messages, other settings: the primed call is dropped, the asked one made
    assert llm.invoke(asked, temperature=0.5).content == "hi t=0.5"
    assert log == ["open hi t=0", "start hi t=0", "discard hi t=0", "open hi t=0.5",
                   "read hi t=0.5"]

    log.clear()
    llm.prime(asked)
    llm.discard_primed()  # never read: dropped, and the next call opens its own
    assert llm.invoke([HumanMessage("other")]).content == "other t=0"
    assert log == ["open hi t=0", "start hi t=0", "discard hi t=0", "open other t=0",
                   "read other t=0"]


def test_a_turn_primes_its_tool_loops_first_call_with_the_tools_bound() -> None:
    from backend.agents.config import AgentConfig
    from backend.agents.runtime import Tracer, Turn
    from backend.agents.tools import BUILTIN_TOOLS

    log: list[str] = []
    sent_tools: list[Any] = []
    llm = _model(log)
    opener = llm.open_stream

    def open_stream(m: list[dict[str, Any]], p: dict[str, Any], t: Any) -> Any:
        sent_tools.append(t)
        return opener(m, p, t)

    llm.open_stream = open_stream
    pieces: list[str] = []
    turn = Turn(llm, AgentConfig.from_dict({"model": "rec", "max_steps": 3}), question="q",
                system="sys", tools=[BUILTIN_TOOLS["calculator"]()], tracer=Tracer(),
                on_token=pieces.append)
    assert turn.prime()
    assert log == ["open q t=0", "start q t=0"]
    result = turn.run()
    # the graph's first call (tools bound) read the primed stream: one request in all
    assert result.answer == "".join(pieces) == "q t=0"
    assert log == ["open q t=0", "start q t=0", "read q t=0"]
    assert sent_tools[0] and sent_tools[0][0]["function"]["name"] == "calculator"


def test_priming_is_off_unless_the_model_is_primable_and_failures_surface_at_the_call() -> None:
    script = Script("answer")
    llm = script.model()  # not primable: opening has side effects (it plays a reply)
    assert not llm.prime([HumanMessage("hi")])
    assert script.sent == [] and llm.invoke([HumanMessage("hi")]).content == "answer"

    log: list[str] = []
    failing = _model(log, fail=True)
    assert not failing.prime([HumanMessage("hi")])  # quietly: the call meets the error
    failing.max_retries = 0
    with pytest.raises(RuntimeError, match="no worker"):
        failing.invoke([HumanMessage("hi")])
    assert log == ["open failed", "open failed"]


# ------------------------------------------------------------------ the service, end to end


@pytest.fixture(scope="module")
def ws(tiny_model_dir: Path) -> dict[str, Any]:
    wid = make_workspace("prime")
    builder = actor_of(make_user(Role.builder, [wid], prefix="prime-builder"), wid)
    model = models.add_local_model(actor=builder, name=f"tiny-{uuid.uuid4().hex[:6]}",
                                   source=str(tiny_model_dir)).name
    return {"builder": builder, "model": model}


class _FailsAfterFirstToken:
    usage = None

    def __iter__(self) -> Iterator[str]:
        yield "Half"
        raise RuntimeError("the worker died")


def test_a_model_failing_after_its_first_token_leaves_a_consistent_conversation(
        ws: dict[str, Any]) -> None:
    builder = ws["builder"]
    a = agents.create_agent(actor=builder, name=f"fails-{uuid.uuid4().hex[:6]}",
                            config={"model": ws["model"]})
    first = agents.run_agent(actor=builder, agent=a.id, question="Hello?", version="draft",
                             llm=Script("Hi there.").model())
    broken = StudioChatModel(model_name="broken", max_retries=0,
                             open_stream=lambda m, p, t: _FailsAfterFirstToken())
    run = agents.stream_agent(actor=builder, agent=a.id, question="And now?", version="draft",
                              conversation_id=first.conversation_id, llm=broken)
    it = iter(run)
    assert next(it) == "Half"  # the first token reached the reader
    with pytest.raises(RuntimeError, match="the worker died"):
        list(it)
    msgs = agents.get_messages(actor=builder, conversation_id=first.conversation_id)
    # the question is kept, the half answer is not: no assistant message without its trace
    assert [(m.role, m.content) for m in msgs] == [
        ("user", "Hello?"), ("assistant", "Hi there."), ("user", "And now?")]
    stored = _trace_ids(first.conversation_id)
    assert len(stored) == 2  # both turns traced, the failed one too
    failed = agents.get_trace(actor=builder, trace_id=stored[-1])
    assert failed.status == "error" and "the worker died" in (failed.error or "")
    assert failed.steps[-1]["kind"] == "model" and "the worker died" in failed.steps[-1]["error"]
    # the conversation goes on from what was stored
    script = Script("Back again.")
    again = agents.run_agent(actor=builder, agent=a.id, question="Still there?",
                             version="draft", conversation_id=first.conversation_id,
                             llm=script.model())
    assert again.answer == "Back again."
    roles = [m["role"] for m in script.sent[0][0]]
    assert roles[-1] == "user" and script.sent[0][0][-1]["content"] == "Still there?"


def _trace_ids(conversation_id: int) -> list[int]:
    from sqlalchemy import select

    from backend.db import session_scope
    from backend.models.agents import AgentTrace

    with session_scope() as session:
        return list(session.execute(select(AgentTrace.id).where(
            AgentTrace.conversation_id == conversation_id).order_by(AgentTrace.id)).scalars())


def test_on_a_gpu_worker_the_primed_answer_is_stream_chats_and_nothing_is_left(
        ws: dict[str, Any], worker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.llm.channel import WAITING_KEY
    from backend.services import chat

    builder = ws["builder"]
    params = {"temperature": 0, "max_new_tokens": 8}
    a = agents.create_agent(actor=builder, name=f"primed-{uuid.uuid4().hex[:6]}", config={
        "model": ws["model"], "system_prompt": "You are terse.", "params": params,
        "memory_turns": 0})
    expected = chat.chat(ws["model"], [{"role": "system", "content": "You are terse."},
                                       {"role": "user", "content": "Name a colour."}],
                         params, actor=builder, placement="worker").text
    sent: list[str] = []
    send = chat._WorkerCall.send

    def counted(self: Any) -> None:
        if not self.sent:
            sent.append(self.rid)
        send(self)

    monkeypatch.setattr(chat._WorkerCall, "send", counted)
    run = agents.stream_agent(actor=builder, agent=a.name, question="Name a colour.",
                              version="draft", placement="worker")
    assert len(sent) == 1  # sent before the answer's thread and graph ran
    pieces = list(run)
    res = run.result
    assert res is not None and "".join(pieces) == res.answer == expected
    assert len(sent) == 1  # the graph's call read the primed one: no second request
    trace = agents.get_trace(actor=builder, trace_id=res.trace_id)
    assert trace.status == "ok" and [s["kind"] for s in trace.steps] == ["model"]
    assert trace.steps[0]["completion_tokens"] > 0
    msgs = agents.get_messages(actor=builder, conversation_id=res.conversation_id)
    assert [(m.role, m.content) for m in msgs] == [("user", "Name a colour."),
                                                    ("assistant", expected)]

    # a call primed and never read is stopped and leaves the wait queue
    llm = chat.chat_model(actor=builder, model=ws["model"], placement="worker", **params)
    assert llm.prime([HumanMessage("Unused")])
    rid = sent[-1]
    llm.discard_primed()
    r = chat.channel_redis()
    assert r.zscore(WAITING_KEY, rid) is None
    from backend.llm.channel import stop_requested

    assert stop_requested(r, rid)


def test_read_scope_reads_in_autocommit_refuses_writes_and_leaves_the_pool_transactional(
        ws: dict[str, Any]) -> None:
    from sqlalchemy import select

    from backend.db import read_scope, session_scope
    from backend.models.agents import Agent

    def autocommit(session: Any) -> bool:
        return bool(session.connection().connection.dbapi_connection.autocommit)

    for _ in range(8):  # each goes back to the pool
        with read_scope() as session:
            assert autocommit(session)
            session.execute(select(Agent.id).limit(1)).all()
    with pytest.raises(RuntimeError, match="for reads"), read_scope() as session:
        session.add(Agent(name="never", workspace_id=1, config={}))
    for _ in range(8):
        with session_scope() as session:
            assert not autocommit(session)  # writes stay all-or-nothing


def test_one_read_finds_the_agent_its_version_and_that_versions_model(
        ws: dict[str, Any], tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.services import chat

    builder = ws["builder"]
    second = models.add_local_model(actor=builder, name=f"tiny2-{uuid.uuid4().hex[:6]}",
                                    source=str(tiny_model_dir)).name
    a = agents.create_agent(actor=builder, name=f"versions-{uuid.uuid4().hex[:6]}",
                            config={"model": ws["model"], "system_prompt": "one"})
    agents.publish_agent(actor=builder, agent=a.id)
    agents.update_agent(actor=builder, agent=a.id,
                        config={"model": second, "system_prompt": "two"})
    used: list[tuple[str, str]] = []

    def chat_model(*, actor: Any, model: Any, placement: str = "worker",
                   **settings: Any) -> StudioChatModel:
        script = Script("ok")
        llm = script.model()
        used.append((model.name, ""))
        real_open = llm.open_stream

        def open_stream(m: list[dict[str, Any]], p: dict[str, Any], t: Any) -> Any:
            used[-1] = (used[-1][0], m[0]["content"])
            return real_open(m, p, t)

        llm.open_stream = open_stream
        return llm

    monkeypatch.setattr(chat, "chat_model", chat_model)
    for ref in (a.id, str(a.id), a.name):
        agents.run_agent(actor=builder, agent=ref, question="hi")  # published: version 1
        agents.run_agent(actor=builder, agent=ref, question="hi", version="draft")
        agents.run_agent(actor=builder, agent=ref, question="hi", version=1)
    assert used == [(ws["model"], "one"), (second, "two"), (ws["model"], "one")] * 3
    with pytest.raises(agents.AgentError, match="no version 9"):
        agents.run_agent(actor=builder, agent=a.id, question="hi", version=9)
    elsewhere = actor_of(make_user(Role.builder, [make_workspace("away")], prefix="away"),
                         make_workspace("away2"))
    with pytest.raises(agents.AgentNotFound):
        agents.run_agent(actor=elsewhere, agent=a.id, question="hi")
