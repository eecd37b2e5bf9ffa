"""``POST /v1/chat/completions`` through a real API server (uvicorn on 127.0.0.1, free port), used
by the official ``openai`` client, LangChain's ``ChatOpenAI`` and raw HTTP: answers, streaming,
usage, limits, workspace isolation, keys, bad input, tool calls from an endpoint model, and a
client that leaves mid-stream stopping the generation on a real worker."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from backend.accounts.actor import Actor, Role
from backend.llm.channel import stop_requested
from backend.services import chat as chat_service
from backend.services import models as models_service
from tests.accounts_helpers import make_key, make_user, make_workspace
from tests.test_models_openai import KEY as FAKE_KEY
from tests.test_models_openai import REPLY as FAKE_REPLY
from tests.test_models_openai import fake_openai_app

HELLO = [{"role": "user", "content": "Hello, how are you?"}]
GREEDY: dict[str, Any] = {"temperature": 0, "seed": 7}


def _serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "server did not start"
    return server, thread, f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    from backend.api.app import app

    server, thread, url = _serve(app)
    yield url
    server.should_exit = True
    thread.join(5)


@pytest.fixture(scope="module")
def fake_upstream() -> Iterator[str]:
    server, thread, url = _serve(fake_openai_app([]))
    yield url
    server.should_exit = True
    thread.join(5)


def broken_upstream_app() -> FastAPI:
    """An endpoint that starts an answer, then reports an error in the middle of the stream."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def completions() -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
            yield 'data: {"choices": [{"index": 0, "delta": {"content": "Hel"}}]}\n\n'
            yield 'data: {"error": {"message": "the GPU caught fire"}}\n\n'

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@pytest.fixture(scope="module")
def broken_upstream() -> Iterator[str]:
    server, thread, url = _serve(broken_upstream_app())
    yield url
    server.should_exit = True
    thread.join(5)


@dataclass
class World:
    ws_a: int
    model: str  # the tiny local model, in workspace A
    remote: str  # an endpoint model (the fake upstream), in workspace A
    broken: str  # an endpoint model that fails in the middle of its answer, in A
    embed_only: str  # registered in A without the chat capability
    key_a: str  # a builder of A (a user-role key chats with bots only)
    key_b: str  # a builder of B
    key_b_admin: str  # an admin whose key is for B


@pytest.fixture(scope="module")
def world(tiny_model_dir: Path, fake_upstream: str, broken_upstream: str) -> World:
    ws_a, ws_b = make_workspace("chatA"), make_workspace("chatB")
    owner = Actor.system(ws_a)
    model = models_service.add_local_model(actor=owner, name=f"tiny-{uuid.uuid4().hex[:6]}",
                                           source=str(tiny_model_dir)).name
    remote = models_service.add_openai_model(actor=owner, name=f"remote-{uuid.uuid4().hex[:6]}",
                                             base_url=fake_upstream, remote_model="fake-chat",
                                             api_key=FAKE_KEY, capabilities=["chat", "tools"]).name
    broken = models_service.add_openai_model(actor=owner, name=f"broken-{uuid.uuid4().hex[:6]}",
                                             base_url=broken_upstream, remote_model="any").name
    embed = models_service.add_local_model(actor=owner, name=f"embed-{uuid.uuid4().hex[:6]}",
                                           source=str(tiny_model_dir),
                                           capabilities=["embeddings"]).name
    return World(ws_a=ws_a, model=model, remote=remote, broken=broken, embed_only=embed,
                 key_a=make_key(make_user(Role.builder, [ws_a]), ws_a),
                 key_b=make_key(make_user(Role.builder, [ws_b]), ws_b),
                 key_b_admin=make_key(make_user(Role.admin, [ws_b]), ws_b))


def client(api_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=api_url, api_key=key, max_retries=0, timeout=60)


def test_openai_client_answers_with_usage(api_url: str, world: World) -> None:
    worker_up = chat_service.gpu_worker_alive()
    raw = client(api_url, world.key_a).chat.completions.with_raw_response.create(
        model=world.model, messages=HELLO, max_tokens=24, **GREEDY)  # type: ignore[arg-type]
    res = raw.parse()
    if not worker_up:
        assert raw.headers["x-studio-placement"] == "in-process"
    assert res.object == "chat.completion" and res.model == world.model
    choice = res.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    u = res.usage
    assert u is not None and u.prompt_tokens > 5 and 0 < u.completion_tokens <= 24
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens


def test_stream_deltas_add_up_to_the_plain_answer(api_url: str, world: World) -> None:
    c = client(api_url, world.key_a)
    plain = c.chat.completions.create(model=world.model, messages=HELLO,  # type: ignore[arg-type]
                                      max_tokens=30, **GREEDY)
    chunks = list(c.chat.completions.create(
        model=world.model, messages=HELLO, max_tokens=30, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True}, **GREEDY))
    assert chunks[0].object == "chat.completion.chunk"
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert len([ch for ch in chunks if ch.choices and ch.choices[0].delta.content]) > 3
    assert text == plain.choices[0].message.content
    finals = [ch.choices[0].finish_reason for ch in chunks if ch.choices
              and ch.choices[0].finish_reason]
    assert finals == [plain.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert plain.usage is not None
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens

    # on the wire: Server-Sent Events ending with [DONE]
    with httpx.stream("POST", f"{api_url}/chat/completions", timeout=60,
                      headers={"Authorization": f"Bearer {world.key_a}"},
                      json={"model": world.model, "messages": HELLO, "max_tokens": 5,
                            "stream": True}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in resp.iter_lines() if ln]
    assert all(ln.startswith("data: ") for ln in lines) and lines[-1] == "data: [DONE]"
    assert json.loads(lines[-2][6:])["choices"][0]["finish_reason"] in ("stop", "length")


def test_langchain_chat_openai_invoke_and_stream(api_url: str, world: World) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=api_url, api_key=world.key_a,  # type: ignore[arg-type]
                     model=world.model, temperature=0, seed=7, max_tokens=20, max_retries=0)
    answer = llm.invoke("Hello, how are you?")
    assert isinstance(answer.content, str) and answer.content
    assert answer.usage_metadata and 0 < answer.usage_metadata["output_tokens"] <= 20
    pieces = [ch.content for ch in llm.stream("Hello, how are you?")]
    assert len(pieces) > 3 and "".join(str(p) for p in pieces) == answer.content


def test_other_workspaces_models_look_missing_and_keys_are_required(
        api_url: str, world: World) -> None:
    for key in (world.key_b, world.key_b_admin):
        with pytest.raises(openai.NotFoundError) as theirs:
            client(api_url, key).chat.completions.create(model=world.model, messages=HELLO)  # type: ignore[arg-type]
        with pytest.raises(openai.NotFoundError) as missing:
            client(api_url, key).chat.completions.create(model="no-such-model", messages=HELLO)  # type: ignore[arg-type]
        err = theirs.value.body
        assert isinstance(err, dict) and err["code"] == "model_not_found"
        assert world.model in err["message"] and "/v1/models" in err["message"]
        assert json.dumps(err).replace(world.model, "X") == \
            json.dumps(missing.value.body).replace("no-such-model", "X")
    with pytest.raises(openai.AuthenticationError):
        client(api_url, "sk-studio-not-a-key").chat.completions.create(
            model=world.model, messages=HELLO)  # type: ignore[arg-type]
    res = httpx.post(f"{api_url}/chat/completions", json={"model": world.model,
                                                          "messages": HELLO})
    assert res.status_code == 401 and res.json()["error"]["code"] == "missing_api_key"


def test_max_tokens_limit_gives_length(api_url: str, world: World) -> None:
    res = client(api_url, world.key_a).chat.completions.create(
        model=world.model, messages=HELLO, max_tokens=3, **GREEDY)  # type: ignore[arg-type]
    assert res.choices[0].finish_reason == "length"
    assert res.usage is not None and 0 < res.usage.completion_tokens <= 3


@pytest.mark.parametrize(("body", "status", "says"), [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "must be a JSON object"),
    ({"messages": HELLO}, 400, "'model' is required"),
    ({"model": "M"}, 400, "'messages' is required"),
    ({"model": "M", "messages": []}, 400, "at least one message"),
    ({"model": "M", "messages": "hi"}, 400, "'messages' is invalid"),
    ({"model": "M", "messages": [{"role": "robot", "content": "hi"}]}, 400, 'role "robot"'),
    ({"model": "M", "messages": HELLO, "temperature": 5}, 400,
     "'temperature' is invalid: it must be a number from 0 to 2"),
    ({"model": "M", "messages": HELLO, "max_tokens": "many"}, 400, "'max_tokens' is invalid"),
    ({"model": "M", "messages": HELLO, "n": 3}, 400, "'n' is invalid: it must be 1"),
    ({"model": "M", "messages": HELLO, "stop": ["a"] * 9}, 400, "At most 8 stop strings"),
    ({"model": "E", "messages": HELLO}, 400, "not registered for chat"),
])
def test_bad_requests_say_what_to_fix(api_url: str, world: World, body: Any, status: int,
                                      says: str) -> None:
    if isinstance(body, dict):
        name = {"M": world.model, "E": world.embed_only}.get(body.get("model", ""), "")
        body = json.dumps({**body, "model": name} if "model" in body else body).encode()
    res = httpx.post(f"{api_url}/chat/completions", content=body, timeout=30,
                     headers={"Authorization": f"Bearer {world.key_a}",
                              "Content-Type": "application/json"})
    assert res.status_code == status, res.text
    err = res.json()["error"]
    assert says in err["message"] and err["type"] == "invalid_request_error", err


def test_tool_calls_from_an_endpoint_model(api_url: str, world: World) -> None:
    c = client(api_url, world.key_a)
    tools = [{"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}}]
    raw = c.chat.completions.with_raw_response.create(
        model=world.remote, messages=[{"role": "user", "content": "2+3?"}], tools=tools)  # type: ignore[arg-type, list-item]
    assert raw.headers["x-studio-placement"] == "endpoint"
    choice = raw.parse().choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "add" and json.loads(call.function.arguments) == {"a": 2, "b": 3}  # type: ignore[union-attr]
    chunks = list(c.chat.completions.create(
        model=world.remote, messages=[{"role": "user", "content": "2+3?"}],  # type: ignore[arg-type]
        tools=tools, stream=True))  # type: ignore[list-item]
    deltas = [tc for ch in chunks if ch.choices for tc in ch.choices[0].delta.tool_calls or []]
    assert [(d.index, d.function.name) for d in deltas] == [(0, "add")]  # type: ignore[union-attr]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    text = c.chat.completions.create(model=world.remote, messages=HELLO)  # type: ignore[arg-type]
    assert text.choices[0].message.content == "".join(FAKE_REPLY)


def test_an_error_mid_stream_is_an_error_event(api_url: str, world: World) -> None:
    c = client(api_url, world.key_a)
    got: list[str] = []
    with pytest.raises(openai.APIError, match="the GPU caught fire"):
        for ch in c.chat.completions.create(model=world.broken, messages=HELLO,  # type: ignore[arg-type]
                                            stream=True):
            got.append(ch.choices[0].delta.content or "")
    assert "".join(got) == "Hel"  # what came before the error was delivered
    with pytest.raises(openai.APIStatusError, match="the GPU caught fire") as plain:
        c.chat.completions.create(model=world.broken, messages=HELLO)  # type: ignore[arg-type]
    assert plain.value.status_code == 502
    # the server is fine afterwards
    assert c.chat.completions.create(model=world.remote, messages=HELLO).choices[0].message.content  # type: ignore[arg-type]


def _generating() -> int:
    """Local generation threads running in this process (the in-process placement)."""
    return sum(t.name == "generate" for t in threading.enumerate())


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_leaves_stops_in_process_generation(api_url: str, world: World,
                                                          stream: bool) -> None:
    if chat_service.gpu_worker_alive():
        pytest.skip("a gpu worker is alive, so chats do not run in this process")
    # greedy, the tiny model never ends on its own: 3000 tokens take ~20 s here
    body = {"model": world.model, "messages": HELLO, "max_tokens": 3000, "temperature": 0,
            "stream": stream}
    seen: list[int] = []
    try:
        with httpx.stream("POST", f"{api_url}/chat/completions", json=body, timeout=3.0,
                          headers={"Authorization": f"Bearer {world.key_a}"}) as resp:
            for n, _ in enumerate(resp.iter_lines()):  # streaming: leave after a few chunks
                seen.append(_generating())
                if n >= 6:
                    break
        assert stream, "a 3000-token answer came back within the timeout"
    except httpx.ReadTimeout:  # not streaming: the client gives up waiting
        assert not stream
        seen.append(_generating())  # at once, before the server notices (it polls)
    assert max(seen) == 1, "no generation was running while the client waited"
    deadline = time.monotonic() + 3
    while _generating() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _generating() == 0, "the generation went on after the client left"


def test_through_a_worker_and_leaving_mid_stream_stops_it(api_url: str, world: World,
                                                         worker: Any) -> None:
    c = client(api_url, world.key_a)
    raw = c.chat.completions.with_raw_response.create(
        model=world.model, messages=HELLO, max_tokens=30, **GREEDY)  # type: ignore[arg-type]
    assert raw.headers["x-studio-placement"] == "worker"
    local = chat_service.chat(world.model, HELLO, {"max_new_tokens": 30, **GREEDY},
                              actor=Actor.system(world.ws_a), placement="local")
    assert raw.parse().choices[0].message.content == local.text

    with httpx.stream("POST", f"{api_url}/chat/completions", timeout=60,
                      headers={"Authorization": f"Bearer {world.key_a}"},
                      json={"model": world.model, "messages": HELLO, "max_tokens": 3000,
                            "temperature": 0, "stream": True}) as resp:
        rid = resp.headers["x-request-id"]
        assert resp.headers["x-studio-placement"] == "worker"
        for n, _ in enumerate(resp.iter_lines()):
            if n >= 6:
                break
    r = chat_service.channel_redis()
    deadline = time.monotonic() + 5
    while not stop_requested(r, rid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stop_requested(r, rid), "leaving the stream did not stop the generation"
    # the worker is free again: the next chat answers at once
    res = c.chat.completions.create(model=world.model, messages=HELLO, max_tokens=3, **GREEDY)  # type: ignore[arg-type]
    assert res.choices[0].finish_reason == "length"
