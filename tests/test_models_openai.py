"""OpenAI-compatible endpoints through the real code path, against a small local server that
speaks the protocol (FastAPI on 127.0.0.1, free port): streaming, tool calls, parameters,
API keys, errors; embeddings (batched); and the LangChain adapter over local and remote models."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from backend.accounts.actor import Actor
from backend.llm.types import ToolCall
from backend.services import chat as chat_service
from backend.services import models as models_service

SYSTEM = Actor.system()
KEY = "sk-fake-0123456789abcdef"
REPLY = ["Hel", "lo", ", ", "wor", "ld", "!"]


def fake_openai_app(seen: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()

    def authorised(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {KEY}"

    @app.get("/v1/models")
    def models(request: Request) -> Any:
        if not authorised(request):
            return JSONResponse({"error": {"message": "Invalid API key"}}, status_code=401)
        return {"object": "list", "data": [{"id": "fake-chat"}, {"id": "fake-embed"}]}

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        seen.append({"path": "chat", "body": body, "auth": request.headers.get("authorization")})
        if not authorised(request):
            return JSONResponse({"error": {"message": "Invalid API key"}}, status_code=401)
        if body.get("tools"):
            chunks = [
                {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1",
                 "type": "function", "function": {"name": "add", "arguments": ""}}]}}]},
                {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
                 "function": {"arguments": "{\"a\": 2, "}}]}}]},
                {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
                 "function": {"arguments": "\"b\": 3}"}}]}, "finish_reason": "tool_calls"}]},
            ]
        else:
            words = REPLY[: body.get("max_tokens", 100)]
            chunks = [{"choices": [{"index": 0, "delta": {"content": w}}]} for w in words]
            chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        chunks.append({"choices": [], "usage": {"prompt_tokens": 11,
                                                "completion_tokens": len(chunks) - 1}})
        if not body.get("stream"):
            text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks
                           if c["choices"])
            return {"choices": [{"message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}]}

        async def events() -> Any:
            for c in chunks:
                yield f"data: {json.dumps(c)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Any:
        body = await request.json()
        seen.append({"path": "embeddings", "body": body})
        data = [{"index": i, "embedding": [float(len(t)), float(i), 1.0]}
                for i, t in enumerate(body["input"])]
        return {"data": list(reversed(data)), "model": body["model"]}

    return app


@pytest.fixture(scope="module")
def fake_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(fake_openai_app(seen), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "fake OpenAI server did not start"
    yield f"http://127.0.0.1:{port}/v1", seen
    server.should_exit = True
    thread.join(5)


@pytest.fixture(scope="module")
def remote(fake_server: tuple[str, list[dict[str, Any]]]) -> str:
    name = f"remote-{uuid.uuid4().hex[:6]}"
    models_service.add_openai_model(actor=SYSTEM, name=name, base_url=fake_server[0],
                                    remote_model="fake-chat", api_key=KEY,
                                    capabilities=["chat", "tools"])
    return name


def test_streaming_chat_with_params_and_key(remote: str, fake_server: Any) -> None:
    url, seen = fake_server
    stream = chat_service.stream_chat(
        remote, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        {"temperature": 0.2, "top_p": 0.5, "max_new_tokens": 50, "stop": ["END"], "seed": 3},
        actor=SYSTEM)
    pieces = list(stream)
    assert pieces == REPLY
    assert stream.usage and stream.usage.prompt_tokens == 11
    assert stream.usage.completion_tokens == len(REPLY) and stream.usage.where == url
    req = seen[-1]
    assert req["auth"] == f"Bearer {KEY}"
    body = req["body"]
    assert body["model"] == "fake-chat" and body["stream"] is True
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["stop"], body["seed"]) \
        == (0.2, 0.5, 50, ["END"], 3)
    assert "repetition_penalty" not in body  # only sent when asked for
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}


def test_tool_calls_are_assembled_from_fragments(remote: str) -> None:
    tools = [{"type": "function", "function": {"name": "add", "description": "Add numbers",
              "parameters": {"type": "object", "properties": {"a": {"type": "number"},
                                                              "b": {"type": "number"}}}}}]
    result = chat_service.chat(remote, [{"role": "user", "content": "2+3?"}], tools=tools,
                               actor=SYSTEM)
    assert result.tool_calls == [ToolCall(id="call_1", name="add", arguments={"a": 2, "b": 3})]
    assert result.usage and result.usage.finish_reason == "tool_calls"


def test_wrong_key_is_reported_with_the_endpoint_and_a_hint(fake_server: Any) -> None:
    url, _ = fake_server
    m = models_service.add_openai_model(actor=SYSTEM, name=f"badkey-{uuid.uuid4().hex[:6]}",
                                        base_url=url, remote_model="fake-chat", api_key="sk-no")
    result = models_service.test_model(actor=SYSTEM, model=m.id, timeout_s=5)
    assert not result.ok
    assert url in result.message and "401" in result.message and "API key" in result.message


def test_connection_test_passes_and_lists_endpoint_models(remote: str) -> None:
    result = models_service.test_model(actor=SYSTEM, model=remote, timeout_s=5)
    assert result.ok, result.message
    assert result.detail["endpoint_models"] == ["fake-chat", "fake-embed"]
    assert result.detail["reply"] == "".join(REPLY)


def test_remote_embeddings_are_batched_and_ordered(fake_server: Any, remote: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.config import reset_settings

    url, seen = fake_server
    name = f"emb-{uuid.uuid4().hex[:6]}"
    models_service.add_openai_model(actor=SYSTEM, name=name, base_url=url,
                                    remote_model="fake-embed", capabilities=["embeddings"])
    monkeypatch.setenv("STUDIO_EMBEDDING_BATCH_SIZE", "2")
    reset_settings()
    try:
        before = len([s for s in seen if s["path"] == "embeddings"])
        texts = ["a", "bb", "ccc", "dddd", "eeeee"]
        vecs = models_service.embedder(actor=SYSTEM, model=name).embed(texts)
        calls = [s for s in seen if s["path"] == "embeddings"][before:]
        assert [len(c["body"]["input"]) for c in calls] == [2, 2, 1]
        assert vecs.shape == (5, 3) and vecs[:, 0].tolist() == [1, 2, 3, 4, 5]
    finally:
        monkeypatch.delenv("STUDIO_EMBEDDING_BATCH_SIZE")
        reset_settings()
    with pytest.raises(ValueError, match="not registered for chat"):
        chat_service.stream_chat(name, [{"role": "user", "content": "hi"}], actor=SYSTEM)
    with pytest.raises(ValueError, match="not registered for embeddings"):
        models_service.embedder(actor=SYSTEM, model=remote)


def test_default_embeddings_are_the_bundled_minilm() -> None:
    emb = models_service.embedder(actor=SYSTEM)
    assert emb.name == "all-MiniLM-L6-v2"
    vecs = emb.embed(["The cat sits on the mat.", "A cat is sitting on a mat.",
                      "Quarterly revenue grew by ten percent."])
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.3


def test_langchain_adapter_over_a_remote_model_with_tools(remote: str) -> None:
    from langchain_core.messages import HumanMessage
    from langchain_core.tools import tool

    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    llm = chat_service.chat_model(actor=SYSTEM, model=remote, temperature=0)
    msg = llm.invoke([HumanMessage("Hi")])
    assert msg.content == "".join(REPLY)
    assert msg.usage_metadata and msg.usage_metadata["input_tokens"] == 11
    chunks = list(llm.stream("Hi"))
    assert "".join(str(c.content) for c in chunks) == "".join(REPLY)
    called = llm.bind_tools([add]).invoke("What is 2 + 3?")
    assert called.tool_calls and called.tool_calls[0]["name"] == "add"
    assert called.tool_calls[0]["args"] == {"a": 2, "b": 3}


def test_langchain_adapter_over_a_local_model(tiny_model_dir: Path) -> None:
    from langchain_core.messages import HumanMessage, SystemMessage

    name = f"lc-tiny-{uuid.uuid4().hex[:6]}"
    models_service.add_local_model(actor=SYSTEM, name=name, source=str(tiny_model_dir))
    llm = chat_service.chat_model(actor=SYSTEM, model=name, placement="local",
                                  temperature=0, max_new_tokens=12)
    msg = llm.invoke([SystemMessage("Be kind."), HumanMessage("你好")])
    assert msg.usage_metadata and msg.usage_metadata["output_tokens"] == 12
    direct = chat_service.chat(name, [{"role": "system", "content": "Be kind."},
                                      {"role": "user", "content": "你好"}],
                               {"temperature": 0, "max_new_tokens": 12}, actor=SYSTEM,
                               placement="local")
    assert msg.content == direct.text


def test_stream_filters_cut_stop_strings_and_lift_tool_calls() -> None:
    from backend.llm.stream_filters import StopStringFilter, ToolCallFilter

    f = StopStringFilter(["</s>", "STOP"])
    out = "".join(f.feed(p) for p in ["Hello S", "TO", "x <", "/s", "> tail"]) + f.flush()
    assert out == "Hello STOx " and f.hit
    t = ToolCallFilter()
    pieces: list[Any] = []
    for p in ["Let me <tool", "_call>{\"name\": \"add\", \"argu", "ments\": {\"a\": 1}}</tool_",
              "call> done", " <tool_call>not json</tool_call>"]:
        pieces += t.feed(p)
    pieces += t.flush()
    calls = [p for p in pieces if isinstance(p, ToolCall)]
    assert [(c.name, c.arguments) for c in calls] == [("add", {"a": 1})]
    text = "".join(p for p in pieces if isinstance(p, str))
    assert text == "Let me  done <tool_call>not json</tool_call>"
