"""The agent runtime: two LangGraph graphs over any LangChain chat model (in the studio, the
registry's ``StudioChatModel``).

- **tools**: a model node and a tool node in a loop (the model asks for tools, their results go
  back to it, it answers), bounded by ``max_steps`` model calls. A turn makes the first model
  call itself, as the model node would, and enters the graph after it only when it asks for
  tools (``_Run.run_tool_loop``). A failing tool returns its error
  to the model as the tool's message instead of ending the run.
- **plan**: plan-and-execute. The model writes a numbered plan; each step runs as a small tool
  loop; a step whose tool fails makes the model revise the rest of the plan; at the end the
  model answers from the steps' results. Every plan (first and revised) is kept in the trace.

Knowledge used as context is retrieved before the graph runs; with nothing relevant found the
agent says its "I don't know" message without asking the model. Everything the run does is
recorded by a :class:`Tracer` (secrets scrubbed) and the answer streams through ``on_token``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables import RunnableBinding
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime

from backend.agents import packing
from backend.agents.config import AgentConfig
from backend.agents.packing import PromptBudget
from backend.agents.redact import Redactor
from backend.agents.tools import AgentTool, ToolError, ToolOutput

TokenSink = Callable[[str], None]
Retriever = Callable[[str], list[dict[str, Any]]]

MAX_REVISIONS = 2
TRACE_TEXT_LIMIT = 4000
SCRUBBED = "[secret]"


# ----------------------------------------------------------------------------------- tracing

class Tracer:
    """Collects a run's steps. Every value recorded is scrubbed of the secrets it was given and
    long texts are shortened, so a trace can be stored and shown as is."""

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self._redact = Redactor(self.secrets, SCRUBBED)  # every covered form (redact.py)
        self.steps: list[dict[str, Any]] = []
        self.plans: list[dict[str, Any]] = []
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.finish_reason = "stop"  # the last model call's: "length" when it hit its limit

    def add_secrets(self, secrets: Sequence[str]) -> None:
        self.secrets = sorted({*self.secrets, *(s for s in secrets if s and len(s) >= 4)},
                              key=len, reverse=True)
        self._redact = Redactor(self.secrets, SCRUBBED)

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            value = self._redact(value.replace("\x00", ""))
            if len(value) > TRACE_TEXT_LIMIT:
                value = value[:TRACE_TEXT_LIMIT] + f"… ({len(value):,} characters)"
            return value
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub(v) for v in value]
        return value

    def add(self, kind: str, name: str, *, input: Any = None, output: Any = None,
            error: str | None = None, latency_ms: float = 0.0, prompt_tokens: int = 0,
            completion_tokens: int = 0) -> dict[str, Any]:
        step = {"seq": len(self.steps) + 1, "kind": kind, "name": name,
                "input": self.scrub(input), "output": self.scrub(output),
                "error": self.scrub(error) if error else None,
                "latency_ms": round(latency_ms, 2), "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens}
        self.steps.append(step)
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        return step

    def plan(self, steps: list[str], reason: str) -> None:
        self.plans.append({"version": len(self.plans) + 1, "reason": reason, "steps": list(steps)})
        self.add("plan", reason, output=list(steps))

    @property
    def errors(self) -> int:
        return sum(1 for s in self.steps if s["error"])


def _message_view(m: BaseMessage) -> dict[str, Any]:
    view: dict[str, Any] = {"role": m.type, "content": m.content}
    if isinstance(m, AIMessage) and m.tool_calls:
        view["tool_calls"] = [{"name": c["name"], "args": c["args"]} for c in m.tool_calls]
    if isinstance(m, ToolMessage):
        view["tool_call_id"] = m.tool_call_id
    return view


def call_model(llm: BaseChatModel | Any, messages: list[BaseMessage], tracer: Tracer, *,
               name: str, on_token: TokenSink | None = None) -> AIMessage:
    """One model call, streamed (text pieces go to ``on_token``), traced with its messages,
    output, tokens and latency."""
    started = time.perf_counter()
    merged: AIMessageChunk | None = None
    try:
        for chunk in llm.stream(messages):
            if not isinstance(chunk, AIMessageChunk):
                continue
            if on_token is not None and isinstance(chunk.content, str) and chunk.content:
                on_token(chunk.content)
            merged = chunk if merged is None else merged + chunk
    except Exception as exc:
        tracer.add("model", name, input=[_message_view(m) for m in messages],
                   error=f"{type(exc).__name__}: {exc}",
                   latency_ms=(time.perf_counter() - started) * 1000)
        raise
    meta = merged.usage_metadata if merged is not None else None
    usage: dict[str, Any] = dict(meta) if meta else {}
    reason = (merged.response_metadata or {}).get("finish_reason") if merged is not None else None
    tracer.finish_reason = "length" if reason == "length" else "stop"
    calls = [{**c, "id": c.get("id") or f"call_{uuid.uuid4().hex[:12]}"}
             for c in (merged.tool_calls if merged is not None else [])]
    ai = AIMessage(content=merged.content if merged is not None else "", tool_calls=calls,
                   usage_metadata=merged.usage_metadata if merged is not None else None)
    tracer.add("model", name, input=[_message_view(m) for m in messages],
               output=_message_view(ai), latency_ms=(time.perf_counter() - started) * 1000,
               prompt_tokens=int(usage.get("input_tokens") or 0),
               completion_tokens=int(usage.get("output_tokens") or 0))
    return ai


def run_tool(tool: AgentTool | None, name: str, args: dict[str, Any], tracer: Tracer, *,
             timeout_s: float, max_chars: int, sources: list[dict[str, Any]],
             available: Sequence[str] = ()) -> tuple[str, bool]:
    """Run one tool call: (text for the model, ok). Errors, timeouts and oversized results are
    the step's error, returned to the model as text."""
    started = time.perf_counter()
    error: str | None = None
    text = ""
    if tool is None:
        error = f"There is no tool named {name!r}. Available: {', '.join(available) or 'none'}."
    else:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"tool-{name}")
        future = pool.submit(tool.run, dict(args))
        try:
            out = future.result(timeout=timeout_s)
            if isinstance(out, ToolOutput):
                sources.extend(out.sources)
                text = out.text
            else:
                text = str(out)
            if len(text) > max_chars:
                error = (f"The tool {name!r} returned {len(text):,} characters, more than the "
                         f"{max_chars:,} an answer may use.")
                text = ""
        except FutureTimeout:
            error = f"The tool {name!r} did not finish within {timeout_s:g} s."
        except ToolError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a tool's bug is the step's error, not the run's
            error = f"{type(exc).__name__}: {exc}"
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
    tracer.add("tool", name, input=args, output=text if not error else None,
               error=error, latency_ms=(time.perf_counter() - started) * 1000)
    if error:
        return f"Error: {tracer.scrub(error)}", False
    return tracer.scrub(text), True


# ---------------------------------------------------------------------------- the tool loop
#
# Both graphs are compiled once per process (compiling costs milliseconds, on the way to every
# answer's first token). What differs between runs (the model, the tools, the tracer, the
# limits) travels as the run's LangGraph context, so one compiled graph serves every agent.

class LoopState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    steps: int


@dataclass
class LoopContext:
    """One tool loop's run: what its nodes use."""

    llm: Any
    bound: Any  # the model with the tools bound (``llm`` when there are none)
    by_name: dict[str, AgentTool]
    max_steps: int
    tracer: Tracer
    sources: list[dict[str, Any]]
    timeout_s: float
    max_chars: int
    on_token: TokenSink | None
    name: str


def _loop_model(ctx: LoopContext, steps: int) -> Any:
    """The model the loop's next call uses: tools bound, unless there are none or it is the
    last call ``max_steps`` allows (which must answer)."""
    last_chance = steps + 1 >= ctx.max_steps
    return ctx.llm if (last_chance or not ctx.by_name) else ctx.bound


def _loop_agent(state: LoopState, runtime: Runtime[LoopContext]) -> dict[str, Any]:
    ctx = runtime.context
    model = _loop_model(ctx, state["steps"])
    ai = call_model(model, list(state["messages"]), ctx.tracer, name=ctx.name,
                    on_token=ctx.on_token)
    return {"messages": [ai], "steps": state["steps"] + 1}


def _loop_act(state: LoopState, runtime: Runtime[LoopContext]) -> dict[str, Any]:
    ctx = runtime.context
    ai = state["messages"][-1]
    assert isinstance(ai, AIMessage)
    out = []
    for call in ai.tool_calls:
        text, ok = run_tool(ctx.by_name.get(call["name"]), call["name"], call["args"],
                            ctx.tracer, timeout_s=ctx.timeout_s, max_chars=ctx.max_chars,
                            sources=ctx.sources, available=list(ctx.by_name))
        out.append(ToolMessage(content=text, tool_call_id=call["id"], name=call["name"],
                               status="success" if ok else "error"))
    return {"messages": out}


def _next_step(state: LoopState | dict[str, Any], ctx: LoopContext) -> str:
    last = state["messages"][-1]
    if isinstance(last, AIMessage) and last.tool_calls and state["steps"] < ctx.max_steps:
        return "tools"
    return END


def _loop_route(state: LoopState, runtime: Runtime[LoopContext]) -> str:
    return _next_step(state, runtime.context)


@cache
def _compiled_tool_loop() -> Any:
    graph = StateGraph(LoopState, context_schema=LoopContext)
    graph.add_node("agent", _loop_agent)
    graph.add_node("tools", _loop_act)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", _loop_route, {"tools": "tools", END: END})
    graph.add_edge("tools", "agent")
    return graph.compile()


def _primer(model: Any) -> tuple[Any, dict[str, Any]]:
    """(the chat model, the call's bound settings) behind ``model`` (a model or a binding)."""
    if isinstance(model, RunnableBinding):
        return model.bound, dict(model.kwargs)
    return model, {}


def prime(model: Any, messages: list[BaseMessage]) -> Any:
    """Send ``model``'s next call (``messages``) ahead, where the model supports it (the
    studio's chat model does), so it runs while LangGraph gets to the node that reads it. The
    node's call is unchanged: it reads the primed answer only when it asks for exactly these
    messages with these settings and tools. Returns what to pass to ``unprime`` afterwards."""
    base, kwargs = _primer(model)
    send = getattr(base, "prime", None)
    if callable(send) and send(messages, **kwargs):
        return base
    return None


def unprime(primed: Any) -> None:
    """Drop a primed call that nothing read (a run that failed before its first call)."""
    drop = getattr(primed, "discard_primed", None)
    if callable(drop):
        drop()


@cache
def _compiled_tool_loop_after_first_call() -> Any:
    """The tool loop entered after its first model call: the route, then as before."""
    graph = StateGraph(LoopState, context_schema=LoopContext)
    graph.add_node("agent", _loop_agent)
    graph.add_node("tools", _loop_act)
    graph.add_conditional_edges(START, _loop_route, {"tools": "tools", END: END})
    graph.add_conditional_edges("agent", _loop_route, {"tools": "tools", END: END})
    graph.add_edge("tools", "agent")
    return graph.compile()


class _Run:
    """A compiled graph with one run's context: ``invoke(state)`` runs it."""

    def __init__(self, graph: Any, context: Any) -> None:
        self.graph = graph
        self.context = context

    def invoke(self, state: dict[str, Any]) -> Any:
        # one node runs at a time in these graphs (max_concurrency 1 also spares LangGraph
        # sizing a thread pool on every run); max_steps and the plan's limits end a run
        return self.graph.invoke(state, {"max_concurrency": 1}, context=self.context)

    def run_tool_loop(self, state: dict[str, Any]) -> dict[str, Any]:
        """The tool loop from ``state`` (steps 0): its first model call is made here, as its
        agent node would make it, and the graph runs only when that call asks for tools; an
        answer that needs none spares LangGraph's run set-up on the way to its first token."""
        ctx = self.context
        assert isinstance(ctx, LoopContext) and state["steps"] == 0
        ai = call_model(_loop_model(ctx, 0), list(state["messages"]), ctx.tracer,
                        name=ctx.name, on_token=ctx.on_token)
        after = {"messages": [*state["messages"], ai], "steps": 1}
        if _next_step(after, ctx) == END:
            return after
        return _compiled_tool_loop_after_first_call().invoke(
            after, {"max_concurrency": 1}, context=ctx)  # type: ignore[no-any-return]

    def first_call(self, state: dict[str, Any]) -> tuple[Any, list[BaseMessage]] | None:
        """The tool loop's first model call from ``state``: (model, messages)."""
        if not isinstance(self.context, LoopContext):
            return None
        return _loop_model(self.context, state["steps"]), list(state["messages"])


def tool_loop_graph(llm: BaseChatModel | Any, tools: Sequence[AgentTool], *, max_steps: int,
                    tracer: Tracer, sources: list[dict[str, Any]], timeout_s: float,
                    max_chars: int, on_token: TokenSink | None = None,
                    name: str = "agent") -> _Run:
    bound = llm.bind_tools([t.spec() for t in tools]) if tools else llm
    ctx = LoopContext(llm=llm, bound=bound, by_name={t.name: t for t in tools},
                      max_steps=max_steps, tracer=tracer, sources=sources, timeout_s=timeout_s,
                      max_chars=max_chars, on_token=on_token, name=name)
    return _Run(_compiled_tool_loop(), ctx)


# ------------------------------------------------------------------------ plan and execute

PLAN_LINE = re.compile(r"^\s*(?:step\s*)?(\d+)\s*[.):-]\s*(.+?)\s*$", re.IGNORECASE)


def parse_plan(text: str, limit: int) -> list[str]:
    """A numbered list (``1. ...``) -> its steps; else non-empty lines; at most ``limit``."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    numbered = [m.group(2) for ln in lines if (m := PLAN_LINE.match(ln))]
    steps = numbered or [ln.strip(" -*•\t") for ln in lines]
    return [s for s in steps if s][:limit]


class PlanState(TypedDict):
    goal: str
    plan: list[str]
    done: list[dict[str, Any]]
    revisions: int


@dataclass
class PlanContext:
    """One plan-and-execute run: what its nodes use."""

    llm: Any
    tools: Sequence[AgentTool]
    system: str
    history: list[BaseMessage]
    max_steps: int
    limit: int  # the most steps a plan may have
    tracer: Tracer
    sources: list[dict[str, Any]]
    timeout_s: float
    max_chars: int


def _tool_list(tools: Sequence[AgentTool]) -> str:
    return "\n".join(f"- {t.name}: {t.description}" for t in tools) or "- (none: reason only)"


def _results(done: list[dict[str, Any]]) -> str:
    return "\n".join(f"{i}. {d['step']} -> {'ok' if d['ok'] else 'FAILED'}: {d['result']}"
                     for i, d in enumerate(done, 1)) or "(nothing yet)"


def _planner(state: PlanState, runtime: Runtime[PlanContext]) -> dict[str, Any]:
    ctx = runtime.context
    prompt = (f"{ctx.system}\n\nYou plan before you act. Break the user's goal into at most "
              f"{ctx.limit} short steps that these tools can carry out:\n{_tool_list(ctx.tools)}\n"
              "Answer with a numbered list of steps only.")
    ai = call_model(ctx.llm, [SystemMessage(prompt), *ctx.history, HumanMessage(state["goal"])],
                    ctx.tracer, name="planner")
    plan = parse_plan(str(ai.content), ctx.limit) or [state["goal"]]
    ctx.tracer.plan(plan, "plan")
    return {"plan": plan}


def _executor(state: PlanState, runtime: Runtime[PlanContext]) -> dict[str, Any]:
    ctx = runtime.context
    tracer = ctx.tracer
    step = state["plan"][len(state["done"])]
    errors_before = tracer.errors
    loop = tool_loop_graph(ctx.llm, ctx.tools, max_steps=max(2, min(ctx.max_steps, 4)),
                           tracer=tracer, sources=ctx.sources, timeout_s=ctx.timeout_s,
                           max_chars=ctx.max_chars, name=f"step {len(state['done']) + 1}")
    task = (f"Goal: {state['goal']}\nResults so far:\n{_results(state['done'])}\n"
            f"Now carry out this step and report its result briefly: {step}")
    try:
        out = loop.invoke({"messages": [SystemMessage(ctx.system), HumanMessage(task)],
                           "steps": 0})
        result = str(out["messages"][-1].content)
        failed = tracer.errors > errors_before
        if failed:
            errs = [s["error"] for s in tracer.steps if s["error"]]
            result = (result + " " if result else "") + f"(error: {errs[-1]})"
    except Exception as exc:  # noqa: BLE001 - a failing step makes the plan change
        result, failed = f"{type(exc).__name__}: {exc}", True
    return {"done": [*state["done"], {"step": step, "result": result, "ok": not failed}]}


def _replanner(state: PlanState, runtime: Runtime[PlanContext]) -> dict[str, Any]:
    ctx = runtime.context
    failed = state["done"][-1]
    prompt = (f"{ctx.system}\n\nYou revise plans. Tools:\n{_tool_list(ctx.tools)}")
    ask = (f"Goal: {state['goal']}\nPlan so far:\n"
           + "\n".join(f"{i}. {s}" for i, s in enumerate(state["plan"], 1))
           + f"\nResults:\n{_results(state['done'])}\nThe step {failed['step']!r} failed. "
           "Write the revised plan for the remaining work as a numbered list of steps only.")
    ai = call_model(ctx.llm, [SystemMessage(prompt), HumanMessage(ask)], ctx.tracer,
                    name="replanner")
    remaining = parse_plan(str(ai.content), ctx.limit)
    plan = [d["step"] for d in state["done"]] + remaining
    ctx.tracer.plan(plan, f"revised after step {len(state['done'])} failed")
    return {"plan": plan, "revisions": state["revisions"] + 1}


def _after_step(state: PlanState, runtime: Runtime[PlanContext]) -> str:
    if not state["done"][-1]["ok"] and state["revisions"] < MAX_REVISIONS:
        return "replanner"
    executed = len(state["done"])
    if executed < len(state["plan"]) and executed < runtime.context.max_steps:
        return "executor"
    return END


def _after_replan(state: PlanState) -> str:
    return "executor" if len(state["done"]) < len(state["plan"]) else END


@cache
def _compiled_plan() -> Any:
    graph = StateGraph(PlanState, context_schema=PlanContext)
    graph.add_node("planner", _planner)
    graph.add_node("executor", _executor)
    graph.add_node("replanner", _replanner)
    graph.add_edge(START, "planner")
    graph.add_edge("planner", "executor")
    graph.add_conditional_edges("executor", _after_step,
                                {"executor": "executor", "replanner": "replanner", END: END})
    graph.add_conditional_edges("replanner", _after_replan, {"executor": "executor", END: END})
    return graph.compile()


def plan_graph(llm: BaseChatModel | Any, tools: Sequence[AgentTool], *, system: str,
               history: list[BaseMessage], max_steps: int, tracer: Tracer,
               sources: list[dict[str, Any]], timeout_s: float, max_chars: int,
               on_token: TokenSink | None) -> _Run:
    limit = max(1, min(max_steps, 8))
    ctx = PlanContext(llm=llm, tools=tools, system=system, history=history,
                      max_steps=max_steps, limit=limit, tracer=tracer, sources=sources,
                      timeout_s=timeout_s, max_chars=max_chars)
    return _Run(_compiled_plan(), ctx)


# --------------------------------------------------------------------------------- one turn

@dataclass
class TurnResult:
    answer: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    plan: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def context_block(hits: list[dict[str, Any]], citations: bool) -> str:
    return packing.context_block(hits, citations)


def _history_messages(history: Sequence[dict[str, str]]) -> list[BaseMessage]:
    out: list[BaseMessage] = []
    for m in history:
        if m["role"] == "user":
            out.append(HumanMessage(m["content"]))
        elif m["role"] == "assistant":
            out.append(AIMessage(m["content"]))
    return out


class Turn:
    """One question's answer. ``prime()`` (optional, from any thread) sends the first model
    call ahead when it is known before the turn runs: the tool loop's, unless knowledge
    retrieved for the question goes into its prompt. ``run()`` answers; ``history``: earlier
    turns ({role, content}) inside the memory window, ``summary``: what came before it. The
    answer is exactly what went to ``on_token``. ``budget``: the model's context, which the
    prompt is fitted into (:mod:`backend.agents.packing`: passages best first while they fit,
    the oldest turns dropped first); the fit is a "context" step of the trace."""

    def __init__(self, llm: BaseChatModel | Any, config: AgentConfig, *, question: str,
                 system: str, history: Sequence[dict[str, str]] = (), summary: str = "",
                 tools: Sequence[AgentTool] = (), retrieve: Retriever | None = None,
                 tracer: Tracer, on_token: TokenSink | None = None,
                 budget: PromptBudget | None = None) -> None:
        self.llm, self.config, self.question = llm, config, question
        self.budget = budget
        self.history = [{"role": m["role"], "content": m["content"]} for m in history
                        if m.get("role") in ("user", "assistant")]
        self._fitted = budget is None
        self._fit_error: Exception | None = None
        self.tools, self.retrieve, self.tracer, self.on_token = tools, retrieve, tracer, on_token
        self.system_text = system + (
            f"\n\nSummary of the earlier conversation:\n{summary}" if summary else "")
        self.hist = _history_messages(history)
        self.pieces: list[str] = []
        self.sources: list[dict[str, Any]] = []
        self._loop: _Run | None = None
        self._primed: Any = None
        # the first call is known once knowledge put into the prompt (if any) is retrieved
        self._prompt_ready = not (retrieve is not None and config.kb_mode in ("context", "both"))

    def _sink(self, text: str) -> None:
        text = text.replace("\x00", "")  # a model may emit NUL; text columns cannot hold it
        if not text:
            return
        self.pieces.append(text)
        if self.on_token is not None:
            self.on_token(text)

    def _fit(self, hits: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Fit the prompt into the budget (once): returns the passages that went in."""
        if self._fitted:
            return list(hits or [])
        if self._fit_error is not None:
            raise self._fit_error
        assert self.budget is not None
        started = time.perf_counter()
        try:
            packed = packing.fit_prompt(self.budget, system=self.system_text,
                                        question=self.question, history=self.history,
                                        hits=hits, citations=self.config.citations)
        except packing.PromptTooLong as exc:
            self._fit_error = exc
            self.tracer.add("context", "fit", error=str(exc),
                            latency_ms=(time.perf_counter() - started) * 1000)
            raise
        self._fitted = True
        self.system_text = packed.system
        self.hist = _history_messages(packed.history)
        if hits or packed.dropped_turns:  # a prompt that fit as it was is no step of its own
            self.tracer.add("context", "fit", output=packed.summary(self.budget),
                            latency_ms=(time.perf_counter() - started) * 1000)
        return packed.passages

    def _loop_start(self) -> tuple[_Run, dict[str, Any]]:
        self._fit()
        if self._loop is None:
            c = self.config
            self._loop = tool_loop_graph(self.llm, self.tools, max_steps=c.max_steps,
                                         tracer=self.tracer, sources=self.sources,
                                         timeout_s=c.tool_timeout_s,
                                         max_chars=c.tool_max_chars, on_token=self._sink)
        state = {"messages": [SystemMessage(self.system_text), *self.hist,
                              HumanMessage(self.question)], "steps": 0}
        return self._loop, state

    def prime(self) -> bool:
        """Send the first model call ahead (True), where it is known now and the model can."""
        if self._primed is not None or self.config.type == "plan" or not self._prompt_ready:
            return self._primed is not None
        try:
            loop, state = self._loop_start()
            first = loop.first_call(state)
            self._primed = prime(*first) if first is not None else None
        except Exception:  # noqa: BLE001 - the run meets it again, and traces it
            self._primed = None
        return self._primed is not None

    def discard(self) -> None:
        """Drop a call sent ahead that nothing read (the run ended, or never started)."""
        if self._primed is not None:
            unprime(self._primed)
            self._primed = None

    def run(self) -> TurnResult:
        try:
            return self._run()
        finally:
            self.discard()

    def _run(self) -> TurnResult:
        config, tracer, question = self.config, self.tracer, self.question
        if not self._prompt_ready:
            assert self.retrieve is not None
            started = time.perf_counter()
            try:
                hits = self.retrieve(question)
            except Exception as exc:
                tracer.add("retrieval", "knowledge", input={"query": question},
                           error=f"{type(exc).__name__}: {exc}",
                           latency_ms=(time.perf_counter() - started) * 1000)
                raise
            tracer.add("retrieval", "knowledge", input={"query": question},
                       output=[{k: h.get(k) for k in ("source", "chunk_id", "score")}
                               for h in hits],
                       latency_ms=(time.perf_counter() - started) * 1000)
            if not hits and config.kb_mode == "context":
                self._sink(config.idk_message)
                return TurnResult(answer="".join(self.pieces))
            if hits and self.budget is not None:
                self.sources.extend(self._fit(hits))
            elif hits:
                self.sources.extend(hits)
                self.system_text += "\n\n" + context_block(hits, config.citations)
            self._prompt_ready = True
        if config.type == "plan":
            self._fit()
            graph = plan_graph(self.llm, self.tools, system=self.system_text, history=self.hist,
                               max_steps=config.max_steps, tracer=tracer, sources=self.sources,
                               timeout_s=config.tool_timeout_s,
                               max_chars=config.tool_max_chars, on_token=self._sink)
            state = graph.invoke({"goal": question, "plan": [], "done": [], "revisions": 0})
            ask = (f"{question}\n\nResults of the plan's steps:\n{_results(state['done'])}\n"
                   "Answer the question from these results.")
            call_model(self.llm, [SystemMessage(self.system_text), *self.hist, HumanMessage(ask)],
                       tracer, name="answer", on_token=self._sink)
            plan = tracer.plans
        else:
            self.prime()  # after retrieval, when the prompt needed it
            loop, start = self._loop_start()
            loop.run_tool_loop(start)
            plan = []
        answer = "".join(self.pieces)
        if not answer.strip():
            note = "(The agent stopped without an answer; the trace shows its steps.)"
            self._sink(note)
            answer = "".join(self.pieces)
        return TurnResult(answer=answer, sources=_dedupe(self.sources), plan=plan)


def run_turn(llm: BaseChatModel | Any, config: AgentConfig, *, question: str, system: str,
             history: Sequence[dict[str, str]] = (), summary: str = "",
             tools: Sequence[AgentTool] = (), retrieve: Retriever | None = None,
             tracer: Tracer, on_token: TokenSink | None = None,
             budget: PromptBudget | None = None) -> TurnResult:
    """Answer one question (a :class:`Turn` run at once)."""
    return Turn(llm, config, question=question, system=system, history=history,
                summary=summary, tools=tools, retrieve=retrieve, tracer=tracer,
                on_token=on_token, budget=budget).run()


def _dedupe(sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for s in sources:
        key = json.dumps([s.get("source"), s.get("chunk_id")], default=str)
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


def summarize(llm: BaseChatModel | Any, previous: str, turns: Sequence[dict[str, str]],
              tracer: Tracer) -> str:
    """A running summary: the previous one plus the turns that leave the memory window."""
    text = "\n".join(f"{m['role']}: {m['content']}" for m in turns)
    ask = ("Update the summary of this conversation with the new turns. Keep names, numbers "
           "and decisions; at most 120 words.\n\n"
           f"Summary so far:\n{previous or '(none)'}\n\nNew turns:\n{text}")
    ai = call_model(llm, [SystemMessage("You summarise conversations."), HumanMessage(ask)],
                    tracer, name="summary")
    return str(ai.content).strip()
