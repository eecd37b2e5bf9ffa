"""The /v1 API's contract under outside clients and faults (issue 23, items 5-10): a database
that is down is a 503 with ``Retry-After``; schemas no value satisfies and schemas the grammar
engine cannot compile are 400s that name ``response_format`` and say what to change; a forced
tool call cut by ``max_tokens`` leaves no markup behind; published bots honour ``max_tokens`` and
say ``length`` when they hit it; what OpenAI accepts is accepted.

Runs against the real uvicorn server of ``tests/test_api_chat.py`` (its fixtures are reused)."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.accounts.actor import Actor
from backend.services import agents
from tests import test_api_chat as _chat
from tests.test_api_chat import HELLO, World

api_url, world = _chat.api_url, _chat.world
fake_upstream, broken_upstream = _chat.fake_upstream, _chat.broken_upstream


def post(api_url: str, key: str, body: Any) -> httpx.Response:
    return httpx.post(f"{api_url}/chat/completions", content=json.dumps(body).encode(),
                      timeout=120, headers={"Authorization": f"Bearer {key}",
                                            "Content-Type": "application/json"})


def _stream_text(res: httpx.Response) -> tuple[str, list[str], list[dict[str, Any]]]:
    events = [json.loads(ln[6:]) for ln in res.text.splitlines() if ln.startswith("data: {")]
    assert not any("error" in e for e in events), events
    text = "".join((e["choices"][0]["delta"].get("content") or "") for e in events
                   if e.get("choices"))
    finals = [e["choices"][0]["finish_reason"] for e in events
              if e.get("choices") and e["choices"][0]["finish_reason"]]
    return text, finals, events


# --- 5: the database is down ----------------------------------------------------------------

@pytest.fixture
def database_down() -> Iterator[None]:
    """This process (and so the API server in it) pointed at a database nobody listens on."""
    from backend.config import reset_settings
    from backend.db import dispose_engines, get_engine

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    saved = os.environ["STUDIO_DATABASE_URL"]
    url = get_engine().url.set(host="127.0.0.1", port=port, query={})
    os.environ["STUDIO_DATABASE_URL"] = url.render_as_string(hide_password=False)
    reset_settings()
    dispose_engines()
    try:
        yield
    finally:
        os.environ["STUDIO_DATABASE_URL"] = saved
        reset_settings()
        dispose_engines()


def test_a_database_that_is_down_is_a_503_with_retry_after(api_url: str, world: World,
                                                           database_down: None) -> None:
    auth = {"Authorization": f"Bearer {world.key_a}"}
    calls = [
        ("GET", f"{api_url}/models", None),
        ("GET", f"{api_url}/models/{world.model}", None),
        ("POST", f"{api_url}/chat/completions",
         {"model": world.model, "messages": HELLO, "max_tokens": 4}),
        ("POST", f"{api_url}/chat/completions",
         {"model": world.model, "messages": HELLO, "max_tokens": 4, "stream": True}),
    ]
    for method, url, body in calls:
        res = httpx.request(method, url, json=body, headers=auth, timeout=60)
        assert res.status_code == 503, (url, res.status_code, res.text)
        assert int(res.headers["Retry-After"]) >= 1
        err = res.json()["error"]
        assert err["type"] == "server_error" and err["code"] == "database_unavailable", err
        assert "database" in err["message"].lower()
        assert "postgresql" not in err["message"].lower() and "127.0.0.1" not in err["message"]
    assert httpx.get(api_url.removesuffix("/v1") + "/health", timeout=10).status_code == 200


# --- 6: schemas no value satisfies, schemas the engine cannot compile, long prompts ---------

def _schema(schema: Any) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


@pytest.mark.parametrize("schema", [
    {"not": {}},
    {"type": "object", "properties": {"a": {"not": {}}}, "required": ["a"]},
    {"type": "integer", "minimum": 5, "maximum": 1},
    {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}, "required": ["a"]},
    {"type": "string", "minLength": 5, "maxLength": 2},
])
def test_a_schema_nothing_satisfies_or_the_engine_cannot_compile_is_a_400(
        api_url: str, world: World, schema: Any) -> None:
    res = post(api_url, world.key_a, {"model": world.model, "messages": HELLO, "max_tokens": 8,
                                      "response_format": _schema(schema)})
    assert res.status_code == 400, res.text
    err = res.json()["error"]
    assert err["param"] == "response_format", err
    msg = err["message"]
    assert ".cc" not in msg and "[20" not in msg and "xgrammar" not in msg.lower(), msg
    assert "schema" in msg.lower() and ("remove" in msg.lower() or "change" in msg.lower()), msg


def test_a_false_schema_is_a_400_naming_response_format(api_url: str, world: World) -> None:
    res = post(api_url, world.key_a, {"model": world.model, "messages": HELLO,
                                      "response_format": _schema(False)})
    assert res.status_code == 400, res.text
    err = res.json()["error"]
    assert err["param"] == "response_format" and "no value" in err["message"].lower(), err


def test_a_prompt_too_long_names_the_model_and_messages_never_the_path(
        api_url: str, world: World, tiny_model_dir: Path) -> None:
    long = [{"role": "user", "content": "word " * 3000}]
    res = post(api_url, world.key_a, {"model": world.model, "messages": long, "max_tokens": 4})
    assert res.status_code == 400, res.text
    err = res.json()["error"]
    assert err["param"] == "messages", err
    assert world.model in err["message"] and str(tiny_model_dir) not in err["message"]
    assert tiny_model_dir.name not in err["message"].replace(world.model, "")


# --- 7: a forced tool call cut short -------------------------------------------------------

TOOLS = [{"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"]}}}]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("max_tokens", [1, 5, 12])
def test_a_forced_tool_call_cut_by_max_tokens_is_length_without_markup(
        api_url: str, world: World, max_tokens: int, stream: bool) -> None:
    res = post(api_url, world.key_a, {
        "model": world.model, "messages": HELLO, "tools": TOOLS, "tool_choice": "required",
        "max_tokens": max_tokens, "temperature": 0, "stream": stream})
    if res.status_code == 400:  # refused up front: fine, when it says why
        err = res.json()["error"]
        assert err["param"] == "max_tokens" and "tool" in err["message"], err
        return
    assert res.status_code == 200, res.text
    if stream:
        text, finals, events = _stream_text(res)
        calls = [e for e in events if e.get("choices") and e["choices"][0]["delta"].get(
            "tool_calls")]
        assert finals == ["length"] and not calls, events
    else:
        choice = res.json()["choices"][0]
        text = choice["message"]["content"] or ""
        assert choice["finish_reason"] == "length" and not choice["message"].get("tool_calls")
    assert "<tool_call" not in text and "{" not in text, text


# --- 8, 9: published bots ------------------------------------------------------------------

@pytest.fixture(scope="module")
def bots(world: World) -> dict[str, str]:
    owner = Actor.system(world.ws_a)
    out = {}
    for kind, cfg in (
            ("plain", {"model": world.model,
                       "params": {"temperature": 0, "max_new_tokens": 300}}),
            ("tool", {"model": world.model, "tools": ["calculator"],
                      "params": {"temperature": 0, "max_new_tokens": 120}}),
            # the bot's own settings leave sampling on: the request's temperature 0 decides
            ("sampling", {"model": world.model, "tools": ["calculator"],
                          "params": {"max_new_tokens": 120}})):
        a = agents.create_agent(actor=owner, name=f"{kind}-{uuid.uuid4().hex[:6]}", config=cfg)
        agents.publish_agent(actor=owner, agent=a.id)
        out[kind] = a.name
    return out


@pytest.mark.parametrize("stream", [False, True])
def test_a_bot_honours_max_tokens_and_says_length(api_url: str, world: World,
                                                  bots: dict[str, str], stream: bool) -> None:
    res = post(api_url, world.key_a, {"model": bots["plain"], "messages": HELLO,
                                      "max_tokens": 6, "stream": stream,
                                      "stream_options": {"include_usage": True}
                                      if stream else None})
    assert res.status_code == 200, res.text
    if stream:
        _, finals, events = _stream_text(res)
        usage = events[-1]["usage"]
        assert finals == ["length"], finals
    else:
        body = res.json()
        usage = body["usage"]
        assert body["choices"][0]["finish_reason"] == "length", body
    assert 0 < usage["completion_tokens"] <= 6, usage


@pytest.mark.parametrize("bot", ["tool", "sampling"])
@pytest.mark.parametrize("question", ["Hello, how are you?", "What is 2 + 3?"])
def test_a_bot_with_a_tool_answers_the_same_streamed_or_not(
        api_url: str, world: World, bots: dict[str, str], question: str, bot: str) -> None:
    body = {"model": bots[bot], "messages": [{"role": "user", "content": question}],
            "temperature": 0}
    plain = post(api_url, world.key_a, body)
    assert plain.status_code == 200, plain.text
    streamed = post(api_url, world.key_a, {**body, "stream": True})
    assert streamed.status_code == 200, streamed.text
    text, finals, _ = _stream_text(streamed)
    choice = plain.json()["choices"][0]
    assert text == choice["message"]["content"]
    assert finals == [choice["finish_reason"]]


# --- 10: what OpenAI accepts ---------------------------------------------------------------

@pytest.mark.parametrize("extra", [
    {"max_tokens": 4.0},
    {"max_completion_tokens": 4.0},
    {"max_tokens": 4, "seed": 3.0},
    {"max_tokens": 4, "logprobs": False},
    {"max_tokens": 4, "stop": [""]},
    {"max_tokens": 4, "stop": ""},
    {"max_tokens": 4, "stop": ["", "zzz"]},
    {"max_tokens": 4, "response_format": {"type": "json_schema", "json_schema": None}},
    {"max_tokens": 4, "response_format": {"type": "text", "json_schema": None}},
    {"max_tokens": 4, "top_logprobs": 0},
])
def test_what_openai_accepts_is_accepted(api_url: str, world: World,
                                         extra: dict[str, Any]) -> None:
    res = post(api_url, world.key_a, {"model": world.model, "messages": HELLO, **extra})
    if extra.get("response_format", {}).get("type") == "json_schema":
        # OpenAI's answer to a json_schema format without a schema is a 400 naming it
        assert res.status_code == 400, res.text
        assert res.json()["error"]["param"] == "response_format.json_schema"
        return
    assert res.status_code == 200, res.text


def test_logprobs_true_is_refused_only_as_not_supported(api_url: str, world: World) -> None:
    res = post(api_url, world.key_a, {"model": world.model, "messages": HELLO, "max_tokens": 4,
                                      "logprobs": True})
    assert res.status_code == 400, res.text
    err = res.json()["error"]
    assert err["param"] == "logprobs" and err["code"] == "unsupported_parameter", err
    assert "not supported" in err["message"]


def test_openapi_documents_the_refusals_and_the_stream_events(api_url: str) -> None:
    doc = httpx.get(api_url.removesuffix("/v1") + "/openapi.json", timeout=30).json()
    body = doc["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert "not supported" in body["logprobs"]["description"]
    assert "ignored" in body["stop"]["description"]
    assert "343.0" in body["max_tokens"]["description"]
    op = doc["paths"]["/v1/chat/completions"]["post"]
    sse = op["responses"]["200"]["content"]["text/event-stream"]
    event = sse["itemSchema"]["$ref"].rsplit("/", 1)[1]
    data = doc["components"]["schemas"][event]["properties"]["data"]["contentSchema"]
    assert {"#/components/schemas/ChatCompletionChunk", "#/components/schemas/ErrorResponse"} \
        == {ref["$ref"] for ref in data["oneOf"]}
    fmt = doc["components"]["schemas"]["ResponseFormat"]
    assert fmt["then"]["required"] == ["json_schema"]
    assert "503" in doc["paths"]["/v1/models"]["get"]["responses"]
