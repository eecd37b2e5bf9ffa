"""Agents: tools (calculator, SSRF guard, HTTP and MCP tools, timeouts, size caps, secrets kept
out of traces), the two LangGraph runtimes with a scripted chat model (deterministic), memory,
versions, conversations, traces and feedback stored in the real Postgres."""

from __future__ import annotations

import json
import socket
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse

from backend.accounts.actor import Actor, PermissionDenied, Role
from backend.agents import net
from backend.agents.tools import ToolError, calculate, openapi_operations
from backend.services import agents, models, secrets
from tests.accounts_helpers import actor_of, make_user, make_workspace
from tests.agents_helpers import Script, call

# ------------------------------------------------------------------------------ calculator


@pytest.mark.parametrize("expr,value", [("2 * (3 + 4)", 14), ("2^10", 1024), ("7 / 2", 3.5),
                                        ("sqrt(16) + abs(-2)", 6), ("round(pi, 2)", 3.14),
                                        ("-3 ** 2", -9), ("10 % 4", 2)])
def test_calculator_computes(expr: str, value: float) -> None:
    assert calculate(expr) == value


@pytest.mark.parametrize("expr,why", [
    ("__import__('os').system('true')", "Only arithmetic"), ("open('/etc/passwd')", "Only"),
    ("(1).__class__", "Only arithmetic"), ("x + 1", "Only arithmetic"), ("1/0", "zero"),
    ("9 ** 9 ** 9", "too large"), ("2 +", "not an arithmetic"), ("[1, 2]", "Only arithmetic"),
    ("lambda: 1", "Only arithmetic")])
def test_calculator_refuses_anything_but_arithmetic(expr: str, why: str) -> None:
    with pytest.raises(ToolError, match=why):
        calculate(expr)


# ------------------------------------------------------------------------------ SSRF guard

BLOCKED_URLS = [
    "http://127.0.0.1/", "http://127.1/", "http://2130706433/", "http://0177.0.0.1/",
    "http://0x7f.0.0.1/", "http://0x7f000001/", "http://localhost:8000/", "http://foo.localhost/",
    "http://0.0.0.0/", "http://10.1.2.3/", "http://172.16.0.1/", "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/", "http://metadata.google.internal/",
    "http://100.100.100.200/", "http://[::1]/", "http://[::]/", "http://[fe80::1%25eth0]/",
    "http://[fd00:ec2::254]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/",
    "http://[::ffff:169.254.169.254]/", "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:7f00:1::]/", "http://[::127.0.0.1]/", "ftp://example.com/", "file:///etc/passwd",
]


@pytest.mark.parametrize("url", BLOCKED_URLS)
def test_ssrf_guard_refuses_local_private_and_metadata_addresses(url: str) -> None:
    with pytest.raises(net.BlockedAddress):
        net.check_url(url, resolve=lambda h: ["93.184.216.34"])


def test_ssrf_guard_checks_what_names_resolve_to_and_honours_the_allow_list() -> None:
    public = lambda h: ["93.184.216.34"]  # noqa: E731
    assert net.check_url("https://api.example.com/x", resolve=public) == "api.example.com"
    for evil in (["10.0.0.7"], ["93.184.216.34", "127.0.0.1"], ["::ffff:10.0.0.1"],
                 ["169.254.169.254"]):
        with pytest.raises(net.BlockedAddress, match="may not reach"):
            net.check_url("https://rebind.example.com/", resolve=lambda h, e=evil: e)
    assert net.check_url("http://wiki.intranet/", allowed_hosts=["wiki.intranet"],
                         resolve=lambda h: ["10.0.0.7"]) == "wiki.intranet"
    assert net.check_url("http://127.0.0.1:9/", allowed_hosts=["127.0.0.1"])


def _serve(app: Any) -> tuple[uvicorn.Server, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return server, port


def tool_server_app() -> FastAPI:
    app = FastAPI()

    @app.get("/weather")
    def weather(city: str, request: Request) -> dict[str, Any]:
        return {"city": city, "temp_c": 21, "auth": request.headers.get("authorization")}

    @app.get("/to-private")
    def to_private() -> RedirectResponse:
        return RedirectResponse("http://127.0.0.1:1/secret", status_code=302)

    @app.get("/huge")
    def huge() -> StreamingResponse:
        def body() -> Iterator[bytes]:
            block = b"x" * (1 << 20)
            for _ in range(50):  # 50 MB
                yield block
        return StreamingResponse(body(), media_type="text/plain")

    @app.get("/slow")
    def slow() -> PlainTextResponse:
        time.sleep(5)
        return PlainTextResponse("late")

    @app.get("/boom")
    def boom() -> Response:
        return Response("down for maintenance", status_code=503)

    @app.get("/internal")
    def internal(request: Request) -> dict[str, Any]:
        internal_hits.append(request.headers.get("host", ""))
        return {"secret": "internal only"}

    @app.get("/hop")
    def hop(to: str) -> RedirectResponse:
        return RedirectResponse(to, status_code=302)

    return app


internal_hits: list[str] = []


@pytest.fixture(scope="module")
def tool_server() -> Iterator[int]:
    server, port = _serve(tool_server_app())
    yield port
    server.should_exit = True


def test_fetch_refuses_redirects_to_private_addresses_caps_size_and_time(tool_server: int
                                                                         ) -> None:
    base = f"http://localhost:{tool_server}"
    with pytest.raises(net.BlockedAddress):  # the local server itself, not allow-listed
        net.fetch("GET", f"{base}/weather", params={"city": "Paris"})
    ok = net.fetch("GET", f"{base}/weather", params={"city": "Paris"},
                   allowed_hosts=["localhost"])
    assert json.loads(ok.body)["city"] == "Paris"
    with pytest.raises(net.BlockedAddress, match="127.0.0.1"):  # the redirect's target
        net.fetch("GET", f"{base}/to-private", allowed_hosts=["localhost"])
    with pytest.raises(net.FetchError, match="larger than"):
        net.fetch("GET", f"{base}/huge", allowed_hosts=["localhost"], max_bytes=1_000_000)
    started = time.monotonic()
    with pytest.raises(net.FetchError, match="timed out"):
        net.fetch("GET", f"{base}/slow", allowed_hosts=["localhost"], timeout_s=1)
    assert time.monotonic() - started < 4


PUBLIC = "93.184.216.34"  # stands for a public server; the tests map it to the local one


@pytest.fixture
def rebinding_dns(monkeypatch: pytest.MonkeyPatch, tool_server: int) -> Iterator[list[str]]:
    """A DNS that rebinds: ``rebind*.test`` names answer a public address the first time and
    127.0.0.1 after; ``api.test`` always answers the public address. Connections to the public
    address reach the local tool server (``*.test`` names have no such trick). Yields the
    addresses the HTTP stack was asked to connect to (a name there means it resolved it)."""
    import httpcore

    real_getaddrinfo = socket.getaddrinfo
    asked: dict[str, int] = {}

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not name.endswith(".test"):
            return real_getaddrinfo(host, port, *args, **kwargs)
        asked[name] = asked.get(name, 0) + 1
        ip = PUBLIC if name == "api.test" or asked[name] == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                 (ip, int(port or 0)))]

    connected: list[str] = []
    real_sync = httpcore.SyncBackend.connect_tcp
    real_async = httpcore.AnyIOBackend.connect_tcp

    def sync_connect(self: Any, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        connected.append(host)
        return real_sync(self, "127.0.0.1" if host == PUBLIC else host, port, *args, **kwargs)

    async def async_connect(self: Any, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        connected.append(host)
        return await real_async(self, "127.0.0.1" if host == PUBLIC else host, port, *args,
                                **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", sync_connect)
    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", async_connect)
    internal_hits.clear()
    yield connected


def test_fetch_connects_to_the_checked_address_not_a_rebound_one(
        rebinding_dns: list[str], tool_server: int) -> None:
    # the check sees the public address; a second lookup would say 127.0.0.1
    res = net.fetch("GET", f"http://rebind.test:{tool_server}/internal")
    assert rebinding_dns == [PUBLIC]  # connected to the checked address, no second lookup
    assert internal_hits == [f"rebind.test:{tool_server}"]  # the Host header keeps the name
    assert json.loads(res.body)["secret"]
    # a redirect to another name is checked and pinned too (its second answer is loopback)
    rebinding_dns.clear()
    net.fetch("GET", f"http://api.test:{tool_server}/hop",
              params={"to": f"http://rebind2.test:{tool_server}/internal"})
    assert rebinding_dns == [PUBLIC, PUBLIC]
    assert not any(h in ("rebind.test", "rebind2.test", "127.0.0.1") for h in rebinding_dns)
    # and a redirect to loopback is still refused
    with pytest.raises(net.BlockedAddress, match="127.0.0.1"):
        net.fetch("GET", f"http://api.test:{tool_server}/hop",
                  params={"to": f"http://127.0.0.1:{tool_server}/internal"})


def test_mcp_http_clients_connect_to_the_checked_address_only(
        rebinding_dns: list[str], tool_server: int) -> None:
    import asyncio

    import httpx

    async def get(client: httpx.AsyncClient, url: str) -> httpx.Response:
        async with client:
            return await client.get(url)

    url = f"http://rebind.test:{tool_server}/internal"
    client = net.pinned_async_client(url)  # the check: the public address
    assert asyncio.run(get(client, url)).json()["secret"]
    assert rebinding_dns == [PUBLIC]
    assert internal_hits == [f"rebind.test:{tool_server}"]
    # a host the client was not made for (e.g. a redirect's) is refused, not resolved
    other = net.pinned_async_client(f"http://rebind4.test:{tool_server}/mcp")
    with pytest.raises(httpx.ConnectError, match="not checked"):
        asyncio.run(get(other, f"http://rebind3.test:{tool_server}/internal"))
    assert rebinding_dns == [PUBLIC] and len(internal_hits) == 1
    with pytest.raises(net.BlockedAddress):  # the name now answers loopback: refused
        net.pinned_async_client(url)


def test_openapi_operations_become_tools() -> None:
    doc = textwrap.dedent("""
        openapi: 3.0.0
        servers: [{url: "https://api.example.com/v1"}]
        paths:
          /pets/{id}:
            get:
              operationId: getPet
              summary: One pet by id
              parameters:
                - {name: id, in: path, required: true, schema: {type: integer}}
                - {name: fields, in: query, schema: {type: string}}
          /pets:
            post:
              operationId: addPet
              requestBody:
                content:
                  application/json:
                    schema: {type: object, required: [name], properties: {name: {type: string}}}
    """)
    ops = {o.name: o for o in openapi_operations(doc)}
    assert ops["getPet"].url_template == "https://api.example.com/v1/pets/{id}"
    assert ops["getPet"].parameters["required"] == ["id"]
    assert set(ops["getPet"].parameters["properties"]) == {"id", "fields"}
    assert ops["addPet"].method == "POST" and ops["addPet"].parameters["required"] == ["name"]
    with pytest.raises(ValueError, match="no 'paths'"):
        openapi_operations("{}")


# ---------------------------------------------------------------------- agents in a workspace


@pytest.fixture(scope="module")
def ws(tiny_model_dir: Path) -> dict[str, Any]:
    wid = make_workspace("agents")
    builder = actor_of(make_user(Role.builder, [wid], prefix="agent-builder"), wid)
    user = actor_of(make_user(Role.user, [wid], prefix="agent-user"), wid)
    admin = actor_of(make_user(Role.admin, [wid], prefix="agent-admin"), wid)
    model = models.add_local_model(actor=builder, name=f"tiny-{uuid.uuid4().hex[:6]}",
                                   source=str(tiny_model_dir)).name
    return {"id": wid, "builder": builder, "user": user, "admin": admin, "model": model}


def _agent(ws: dict[str, Any], **cfg: Any) -> agents.AgentView:
    return agents.create_agent(actor=ws["builder"], name=f"agent-{uuid.uuid4().hex[:6]}",
                               config={"model": ws["model"], **cfg})


def test_tool_loop_calls_the_tool_feeds_the_result_back_and_answers(ws: dict[str, Any]) -> None:
    a = _agent(ws, tools=["calculator"])
    script = Script([call("calculator", expression="12 * 7")], "12 times 7 is 84.")
    run = agents.stream_agent(actor=ws["builder"], agent=a.name, question="What is 12*7?",
                              version="draft", llm=script.model())
    pieces = list(run)
    result = run.result
    assert result is not None and "".join(pieces) == result.answer == "12 times 7 is 84."
    assert len(pieces) > 1  # it streamed
    first_tools = script.sent[0][1]
    assert first_tools and first_tools[0]["function"]["name"] == "calculator"
    tool_msg = script.sent[1][0][-1]
    assert tool_msg["role"] == "tool" and tool_msg["content"] == "84"  # result fed back
    trace = agents.get_trace(actor=ws["builder"], trace_id=result.trace_id)
    kinds = [(s["kind"], s["name"]) for s in trace.steps]
    assert kinds == [("model", "agent"), ("tool", "calculator"), ("model", "agent")]
    assert trace.steps[1]["input"] == {"expression": "12 * 7"} and trace.steps[1]["output"] == "84"
    assert trace.steps[0]["prompt_tokens"] == 10 and trace.status == "ok"
    msgs = agents.get_messages(actor=ws["builder"], conversation_id=result.conversation_id)
    assert [(m.role, m.content) for m in msgs] == [("user", "What is 12*7?"),
                                                   ("assistant", "12 times 7 is 84.")]
    assert msgs[1].trace_id == result.trace_id


def test_a_failing_tool_is_a_step_error_sent_back_to_the_model(ws: dict[str, Any]) -> None:
    a = _agent(ws, tools=["calculator"])
    script = Script([call("calculator", expression="1/0"), call("nope", x=1)],
                    "I cannot divide by zero.")
    res = agents.run_agent(actor=ws["builder"], agent=a.id, question="1/0?", version="draft",
                           llm=script.model())
    assert res.answer == "I cannot divide by zero."
    tool_msgs = [m for m in script.sent[1][0] if m["role"] == "tool"]
    assert tool_msgs[0]["content"] == "Error: Division by zero."
    assert "no tool named 'nope'" in tool_msgs[1]["content"]
    errors = [s["error"] for s in res.steps if s["kind"] == "tool"]
    assert errors == ["Division by zero.", errors[1]] and "calculator" in errors[1]


def test_the_step_limit_ends_the_loop(ws: dict[str, Any]) -> None:
    a = _agent(ws, tools=["calculator"], max_steps=2)
    script = Script([call("calculator", expression="1+1")], [call("calculator", expression="2+2")],
                    default="unused")
    res = agents.run_agent(actor=ws["builder"], agent=a.id, question="loop", version="draft",
                           llm=script.model())
    assert len(script.sent) == 2 and script.sent[1][1] is None  # the last call had no tools
    assert "stopped without an answer" in res.answer


def test_long_tool_loops_run_to_max_steps(ws: dict[str, Any]) -> None:
    # 20 tool calls and the answer: 41 graph steps, none cut short
    a = _agent(ws, tools=["calculator"], max_steps=21)
    script = Script(*[[call("calculator", expression=f"{i}+1")] for i in range(20)], "Done.")
    res = agents.run_agent(actor=ws["builder"], agent=a.id, question="count", version="draft",
                           llm=script.model())
    assert res.answer == "Done." and len(script.sent) == 21
    assert [s["output"] for s in res.steps if s["kind"] == "tool"][-1] == "20"


def test_plan_and_execute_revises_its_plan_after_a_failing_step(ws: dict[str, Any]) -> None:
    a = _agent(ws, type="plan", tools=["calculator"])
    script = Script(
        "1. Divide 10 by 0\n2. Report the result",            # the plan
        [call("calculator", expression="10/0")], "It failed.",  # step 1 fails
        "1. Divide 10 by 2\n2. Report the result",            # revised plan
        [call("calculator", expression="10/2")], "5",          # step 2
        "The result is 5.",                                     # step 3 (report)
        "10 divided by 2 is 5.")                                # the answer
    res = agents.run_agent(actor=ws["builder"], agent=a.id, question="Divide 10 by something",
                           version="draft", llm=script.model())
    assert res.answer == "10 divided by 2 is 5."
    assert [p["steps"] for p in res.plan] == [
        ["Divide 10 by 0", "Report the result"],
        ["Divide 10 by 0", "Divide 10 by 2", "Report the result"]]
    assert "failed" in res.plan[1]["reason"]
    trace = agents.get_trace(actor=ws["builder"], trace_id=res.trace_id)
    assert trace.plan == res.plan
    assert [s["name"] for s in trace.steps if s["kind"] == "plan"] == [
        "plan", "revised after step 1 failed"]


def test_memory_window_keeps_the_last_turns(ws: dict[str, Any]) -> None:
    a = _agent(ws, memory_turns=1)
    script = Script("one", "two", "three")
    first = agents.run_agent(actor=ws["builder"], agent=a.id, question="Q1", version="draft",
                             llm=script.model())
    for q in ("Q2", "Q3"):
        agents.run_agent(actor=ws["builder"], agent=a.id, question=q, version="draft",
                         conversation_id=first.conversation_id, llm=script.model())
    third = [(m["role"], m["content"]) for m in script.sent[2][0]]
    assert third[1:] == [("user", "Q2"), ("assistant", "two"), ("user", "Q3")]  # Q1 left


def test_running_summary_keeps_what_left_the_window(ws: dict[str, Any]) -> None:
    a = _agent(ws, memory_turns=1, memory_summary=True)
    script = Script("Paris.", "It is 21 C.", "The user asked about Paris.", "You asked about Paris.")
    first = agents.run_agent(actor=ws["builder"], agent=a.id, question="Capital of France?",
                             version="draft", llm=script.model())
    agents.run_agent(actor=ws["builder"], agent=a.id, question="Weather there?",
                     version="draft", conversation_id=first.conversation_id, llm=script.model())
    # turn 2 answered (call 2) and summarised turn... nothing had left the window yet
    assert len(script.sent) == 2
    agents.run_agent(actor=ws["builder"], agent=a.id, question="What did I ask first?",
                     version="draft", conversation_id=first.conversation_id,
                     llm=Script("You asked about Paris.", "Summary: Paris, weather.").model())
    conv_script = Script("ok")
    agents.run_agent(actor=ws["builder"], agent=a.id, question="And now?", version="draft",
                     conversation_id=first.conversation_id, llm=conv_script.model())
    system = conv_script.sent[0][0][0]["content"]
    assert "Summary of the earlier conversation" in system and "Paris" in system


def test_versions_freeze_what_the_published_bot_answers(ws: dict[str, Any]) -> None:
    a = _agent(ws, system_prompt="Version one.")
    with pytest.raises(agents.AgentError, match="not published"):
        agents.run_agent(actor=ws["builder"], agent=a.id, question="hi", llm=Script("x").model())
    agents.publish_agent(actor=ws["builder"], agent=a.id)
    agents.update_agent(actor=ws["builder"], agent=a.id,
                        config={"model": ws["model"], "system_prompt": "Version two."})
    assert agents.get_agent(actor=ws["builder"], agent=a.id).has_unpublished_changes
    s = Script("a", "b")
    agents.run_agent(actor=ws["user"], agent=a.name, question="hi", llm=s.model())
    agents.run_agent(actor=ws["builder"], agent=a.name, question="hi", version="draft",
                     llm=s.model())
    assert s.sent[0][0][0]["content"] == "Version one."  # published
    assert s.sent[1][0][0]["content"] == "Version two."  # draft
    v2 = agents.publish_agent(actor=ws["builder"], agent=a.id)
    assert v2.published_version == 2 and not v2.has_unpublished_changes


def test_roles_users_chat_with_published_bots_only(ws: dict[str, Any]) -> None:
    a = _agent(ws)
    with pytest.raises(PermissionDenied, match="builder"):
        agents.create_agent(actor=ws["user"], name="x", config={"model": ws["model"]})
    with pytest.raises(PermissionDenied):
        agents.run_agent(actor=ws["user"], agent=a.id, question="hi", version="draft",
                         llm=Script("x").model())
    assert a.name not in {b.name for b in agents.list_agents(actor=ws["user"])}
    with pytest.raises(agents.AgentNotFound):
        agents.get_agent(actor=ws["user"], agent=a.name)
    other = actor_of(make_user(Role.builder, [make_workspace("other")], prefix="other"), 0)
    other = Actor(user_id=other.user_id, username=other.username, role=Role.builder,
                  workspace_id=make_workspace("elsewhere"))
    with pytest.raises(agents.AgentNotFound):
        agents.get_agent(actor=other, agent=a.id)


def test_bad_settings_say_what_to_fix(ws: dict[str, Any]) -> None:
    for cfg, msg in (({"model": "no-such-model"}, "No model"), ({}, "Pick the model"),
                     ({"model": ws["model"], "type": "swarm"}, "agent type"),
                     ({"model": ws["model"], "max_steps": 0}, "max_steps"),
                     ({"model": ws["model"], "tools": ["shell"]}, "Unknown tool"),
                     ({"model": ws["model"], "colour": "red"}, "Unknown agent setting")):
        with pytest.raises(agents.AgentError, match=msg):
            agents.create_agent(actor=ws["builder"], name=uuid.uuid4().hex[:8], config=cfg)


def test_duplicate_delete_feedback_and_usage(ws: dict[str, Any]) -> None:
    a = _agent(ws)
    res = agents.run_agent(actor=ws["builder"], agent=a.id, question="How do I reset it?",
                           version="draft", llm=Script("Hold the button.").model())
    agents.give_feedback(actor=ws["builder"], message_id=res.message_id, rating=-1,
                         comment="Which button?")
    agents.give_feedback(actor=ws["builder"], message_id=res.message_id, rating=-1,
                         comment="Which button? The red one?")  # one per user: updated
    fb = agents.list_feedback(actor=ws["builder"], agent=a.id)
    assert [(f.rating, f.comment, f.question) for f in fb] == [
        (-1, "Which button? The red one?", "How do I reset it?")]
    assert agents.list_feedback(actor=ws["builder"], agent=a.id, rating=1) == []
    use = agents.usage(actor=ws["builder"], agent=a.id)
    assert use[0]["messages"] == 2 and use[0]["conversations"] == 1
    assert use[0]["thumbs_down"] == 1
    copy = agents.duplicate_agent(actor=ws["builder"], agent=a.id)
    assert copy.name == f"{a.name} copy" and copy.config == a.config
    agents.delete_agent(actor=ws["builder"], agent=a.id)
    with pytest.raises(agents.AgentNotFound):
        agents.get_agent(actor=ws["builder"], agent=a.id)
    with pytest.raises(agents.AgentError):
        agents.get_messages(actor=ws["builder"], conversation_id=res.conversation_id)


def test_http_tool_secrets_stay_out_of_traces_and_big_or_slow_answers_fail_the_step(
        ws: dict[str, Any], tool_server: int) -> None:
    b = ws["builder"]
    secret_value = "sk-weather-" + uuid.uuid4().hex
    secrets.set_secret(actor=b, name="WEATHER_KEY", value=secret_value)
    base = f"http://localhost:{tool_server}"
    with pytest.raises(agents.AgentError, match="NOPE"):
        agents.create_http_tool(actor=b, name="bad", url_template=f"{base}/weather",
                                headers={"Authorization": "Bearer {secret:NOPE}"})
    for name, path in (("weather", "/weather?city={city}"), ("huge", "/huge"),
                       ("slow", "/slow"), ("boom", "/boom")):
        agents.create_http_tool(
            actor=b, name=name, url_template=base + path, description=f"{name} tool",
            parameters={"type": "object", "properties": {"city": {"type": "string"}}},
            headers={"Authorization": "Bearer {secret:WEATHER_KEY}"})
    a = _agent(ws, tools=["http:weather", "http:huge", "http:slow", "http:boom"],
               tool_timeout_s=1.0)
    script = Script([call("weather", city="Paris")], "Blocked.", default="done")
    res = agents.run_agent(actor=b, agent=a.id, question="Weather?", version="draft",
                           llm=script.model())
    assert "may not reach" in res.steps[1]["error"]  # localhost is not allow-listed yet
    agents.allow_host(actor=ws["admin"], host="localhost")
    try:
        script = Script([call("weather", city="Paris"), call("huge"), call("slow"),
                         call("boom")], "It is 21 C in Paris.")
        started = time.monotonic()
        res = agents.run_agent(actor=b, agent=a.id, question="Weather?", version="draft",
                               llm=script.model())
        assert time.monotonic() - started < 8
    finally:
        agents.disallow_host(actor=ws["admin"], host="localhost")
    assert res.answer == "It is 21 C in Paris."  # the conversation went on
    tools = {s["name"]: s for s in res.steps if s["kind"] == "tool"}
    assert json.loads(tools["weather"]["output"].replace("[secret]", "S"))["temp_c"] == 21
    assert "larger than" in tools["huge"]["error"]
    assert "did not finish" in tools["slow"]["error"] or "timed out" in tools["slow"]["error"]
    assert "HTTP 503" in tools["boom"]["error"]
    fed_back = json.dumps(script.sent[1][0])
    trace = agents.get_trace(actor=b, trace_id=res.trace_id)
    for text in (json.dumps(trace.to_dict(), default=str), fed_back,
                 json.dumps(res.to_dict(), default=str)):
        assert secret_value not in text
    assert "[secret]" in json.dumps(trace.to_dict(), default=str)


MCP_SERVER = """
import os, sys
from mcp.server.fastmcp import FastMCP
if len(sys.argv) > 1:  # a file that counts the starts
    with open(sys.argv[1], "a") as f:
        f.write(f"{os.getpid()}\\n")
mcp = FastMCP("demo")

@mcp.tool()
def shout(text: str) -> str:
    \"\"\"Say it louder.\"\"\"
    return text.upper() + "!"

mcp.run()
"""


def test_mcp_stdio_tools_are_listed_and_called(ws: dict[str, Any], tmp_path: Path) -> None:
    script_path = tmp_path / "server.py"
    script_path.write_text(MCP_SERVER)
    with pytest.raises(PermissionDenied, match="admin"):
        agents.add_mcp_server(actor=ws["builder"], name="demo", transport="stdio",
                              command=sys.executable, args=[str(script_path)])
    agents.add_mcp_server(actor=ws["admin"], name="demo", transport="stdio",
                          command=sys.executable, args=[str(script_path)])
    ids = {t["id"] for t in agents.available_tools(actor=ws["builder"])}
    assert "mcp:demo/shout" in ids
    a = _agent(ws, tools=["mcp:demo/shout"])
    script = Script([call("shout", text="hello")], "Done.")
    res = agents.run_agent(actor=ws["builder"], agent=a.id, question="Shout hello",
                           version="draft", llm=script.model())
    assert [s["output"] for s in res.steps if s["kind"] == "tool"] == ["HELLO!"]
    with pytest.raises(agents.AgentError, match="https"):
        agents.add_mcp_server(actor=ws["builder"], name="web", transport="http", url="ftp://x")
    agents.add_mcp_server(actor=ws["builder"], name="web", transport="http",
                          url="http://169.254.169.254/mcp")
    listed = {t["id"]: t for t in agents.available_tools(actor=ws["builder"])}
    assert "may not reach" in listed["mcp:web/"]["description"]
    agents.delete_mcp_server(actor=ws["builder"], name="web")


def test_mcp_servers_start_once_for_many_turns_and_again_after_dying(
        ws: dict[str, Any], tmp_path: Path) -> None:
    import os
    import signal

    script_path, starts = tmp_path / "server.py", tmp_path / "starts.txt"
    script_path.write_text(MCP_SERVER)
    name = f"count-{uuid.uuid4().hex[:6]}"
    agents.add_mcp_server(actor=ws["admin"], name=name, transport="stdio",
                          command=sys.executable, args=[str(script_path), str(starts)])
    a = _agent(ws, tools=[f"mcp:{name}/shout"])

    def turn(word: str) -> list[Any]:
        res = agents.run_agent(actor=ws["builder"], agent=a.id, question=f"Shout {word}",
                               version="draft",
                               llm=Script([call("shout", text=word)], "Done.").model())
        return [s["output"] for s in res.steps if s["kind"] == "tool"]

    assert [turn(w) for w in ("one", "two", "three")] == [["ONE!"], ["TWO!"], ["THREE!"]]
    pids = starts.read_text().split()
    assert len(pids) == 1  # one server for the listing and three turns' calls
    os.kill(int(pids[0]), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(int(pids[0]), 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    assert turn("again") == ["AGAIN!"]  # the dead server was noticed and started again
    assert len(starts.read_text().split()) == 2


def test_a_saved_prompt_and_its_version_from_the_playground(ws: dict[str, Any]) -> None:
    from backend.services import prompts

    name = f"support-{uuid.uuid4().hex[:6]}"
    prompts.create_prompt(actor=ws["builder"], name=name, template="{{ question }}",
                          system="You are the support desk, version one.")
    prompts.save_version(actor=ws["builder"], name=name, template="{{ question }}",
                         system="You are the support desk, version two.")
    assert name in agents.saved_prompt_names(actor=ws["builder"])
    latest = _agent(ws, saved_prompt=name)
    pinned = _agent(ws, saved_prompt=name, saved_prompt_version=1)
    s = Script("a", "b")
    for a in (latest, pinned):
        agents.run_agent(actor=ws["builder"], agent=a.id, question="hi", version="draft",
                         llm=s.model())
    assert [m[0][0]["content"] for m in s.sent] == ["You are the support desk, version two.",
                                                     "You are the support desk, version one."]


def test_nul_characters_from_a_model_are_dropped_not_fatal(ws: dict[str, Any]) -> None:
    a = _agent(ws)
    res = agents.run_agent(actor=ws["builder"], agent=a.id, question="q\x00?", version="draft",
                           llm=Script("ab\x00c").model())
    assert res.answer == "abc"
    msgs = agents.get_messages(actor=ws["builder"], conversation_id=res.conversation_id)
    assert [m.content for m in msgs] == ["q?", "abc"]


HANDBOOK = """# Office handbook

## Parking

Staff park in the underground garage on level minus two. The gate code is 4711 and changes
every January.

## Lunch

The canteen on the third floor serves lunch from noon to two o'clock.
"""


@pytest.fixture(scope="module")
def handbook(ws: dict[str, Any]) -> str:
    from backend.services import jobs
    from backend.services import knowledge as kbs

    kb = kbs.create_knowledge_base(actor=ws["builder"], name=f"handbook-{uuid.uuid4().hex[:4]}")
    job = jobs.run_inline(actor=ws["builder"], job_id=kbs.ingest_files(
        actor=ws["builder"], kb=kb.id, uploads=[("handbook.md", HANDBOOK.encode())],
        enqueue=False))
    assert job.status == "succeeded", job.error
    return kb.name


def test_knowledge_answers_carry_sources_and_nothing_relevant_means_i_dont_know(
        ws: dict[str, Any], handbook: str) -> None:
    assert handbook in agents.knowledge_base_names(actor=ws["builder"])
    bot = agents.create_bot(actor=ws["builder"], name=f"kb-bot-{uuid.uuid4().hex[:4]}",
                            model=ws["model"], knowledge_bases=[handbook])
    assert bot.published_version == 1 and bot.config["citations"]
    script = Script("The gate code is 4711 [1].")
    res = agents.run_agent(actor=ws["user"], agent=bot.name,
                           question="What is the gate code of the parking garage?",
                           llm=script.model())
    assert res.answer == "The gate code is 4711 [1]."
    assert res.sources and res.sources[0]["source"] == "handbook.md"
    assert "Parking" in res.sources[0]["metadata"]["heading_path"]
    system = script.sent[0][0][0]["content"]
    assert "4711" in system and "[1] handbook.md" in system  # the passage went to the model
    msgs = agents.get_messages(actor=ws["user"], conversation_id=res.conversation_id)
    assert msgs[1].sources[0]["chunk_id"] == res.sources[0]["chunk_id"]
    assert [s["kind"] for s in res.steps] == ["retrieval", "context", "model"]
    fit = next(s for s in res.steps if s["kind"] == "context")["output"]
    assert fit["passages_used"] == len(res.sources) and fit["passages_found"] >= 1
    silent = Script()  # the model is not asked at all
    res = agents.run_agent(actor=ws["user"], agent=bot.name,
                           question="Which football club won the 1954 world cup final?",
                           llm=silent.model())
    assert "don't know" in res.answer and res.sources == [] and silent.sent == []


def test_knowledge_as_a_search_tool(ws: dict[str, Any], handbook: str) -> None:
    a = _agent(ws, knowledge_bases=[handbook], kb_mode="tool")
    script = Script([call("knowledge_search", query="canteen lunch hours")],
                    "Lunch is served from noon to two.")
    res = agents.run_agent(actor=ws["builder"], agent=a.id, question="When is lunch?",
                           version="draft", llm=script.model())
    assert script.sent[0][1][0]["function"]["name"] == "knowledge_search"
    fed = script.sent[1][0][-1]["content"]
    assert "canteen" in fed and "[handbook.md]" in fed
    assert res.sources and any("canteen" in s["text"] for s in res.sources)
    assert {s["source"] for s in res.sources} == {"handbook.md"}


def test_mcp_streamable_http_tools_behind_the_allow_list(ws: dict[str, Any]) -> None:
    from mcp.server.fastmcp import FastMCP

    server = FastMCP("remote")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    web, port = _serve(server.streamable_http_app())
    try:
        agents.add_mcp_server(actor=ws["builder"], name="remote", transport="http",
                              url=f"http://127.0.0.1:{port}/mcp")
        listed = {t["id"]: t for t in agents.available_tools(actor=ws["builder"])}
        assert "may not reach" in listed["mcp:remote/"]["description"]  # loopback refused
        agents.allow_host(actor=ws["admin"], host="127.0.0.1")
        try:
            assert "mcp:remote/add" in {t["id"] for t in agents.available_tools(
                actor=ws["builder"])}
            a = _agent(ws, tools=["mcp:remote/add"])
            res = agents.run_agent(actor=ws["builder"], agent=a.id, question="2+3?",
                                   version="draft",
                                   llm=Script([call("add", a=2, b=3)], "5").model())
        finally:
            agents.disallow_host(actor=ws["admin"], host="127.0.0.1")
        assert [s["output"] for s in res.steps if s["kind"] == "tool"] == ["5"]
    finally:
        web.should_exit = True


def test_stopping_an_answer_ends_the_run_and_keeps_its_trace(ws: dict[str, Any]) -> None:
    a = _agent(ws)
    run = agents.stream_agent(actor=ws["builder"], agent=a.id, question="Tell me a long story",
                              version="draft",
                              llm=Script(" ".join(["word"] * 5000)).model())
    it = iter(run)
    assert next(it)
    run.stop()
    with pytest.raises(agents.AgentStopped):
        list(it)
    convs = agents.list_conversations(actor=ws["builder"], agent=a.id)
    msgs = agents.get_messages(actor=ws["builder"], conversation_id=convs[0].id)
    assert [m.role for m in msgs] == ["user"]  # no answer stored, the question kept
