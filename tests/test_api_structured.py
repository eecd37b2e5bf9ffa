"""Structured output (issue 9): OpenAI's ``response_format`` (``json_object``, ``json_schema``) and
forced tool calls. Local models are constrained by the grammar sampler, so even the tiny random
model answers valid JSON for the schema every time; endpoint models get the settings passed on.
Checked through ``stream_chat`` (what the playground and agents call), the official ``openai``
client's ``parse`` and LangChain's ``ChatOpenAI.with_structured_output``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import jsonschema
import openai
import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel

from backend.accounts.actor import Actor
from backend.services import chat as chat_service
from backend.services import models as models_service
from tests import test_api_chat as _chat
from tests.test_api_chat import World, _serve, client

api_url, world = _chat.api_url, _chat.world
fake_upstream, broken_upstream = _chat.fake_upstream, _chat.broken_upstream

ASK = [{"role": "user", "content": "Describe a person as JSON."}]


class Person(BaseModel):
    name: str
    age: int
    kind: Literal["friend", "colleague"]
    tags: list[str]


PERSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                   "kind": {"enum": ["friend", "colleague"]},
                   "tags": {"type": "array", "items": {"type": "string"}},
                   "address": {"type": "object", "properties": {
                       "city": {"type": "string"}, "zip": {"type": "string"}},
                       "required": ["city"]}},
    "required": ["name", "age", "kind", "tags", "address"],
    "additionalProperties": False,
}
TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"]}}},
    {"type": "function", "function": {"name": "echo", "parameters": {
        "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}}]
PERSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON_SCHEMA}}


@pytest.mark.parametrize(("temperature", "seeds"), [
    (1.0, range(2)),
    pytest.param(0, [0], marks=pytest.mark.slow),
    pytest.param(1.0, range(2, 8), marks=pytest.mark.slow),
    pytest.param(1.5, range(4), marks=pytest.mark.slow),
])
def test_the_tiny_model_answers_valid_json_for_the_schema_every_time(
        world: World, temperature: float, seeds: Any) -> None:
    actor = Actor.system(world.ws_a)
    for seed in seeds:
        res = chat_service.chat(world.model, ASK, {
            "temperature": temperature, "seed": seed, "max_new_tokens": 90,
            "response_format": PERSON_FORMAT}, actor=actor, placement="local")
        data = json.loads(res.text)  # the budget runs out: still complete
        jsonschema.validate(data, PERSON_SCHEMA)
        assert res.usage is not None and res.usage.completion_tokens <= 90
        assert res.usage.finish_reason == "stop"


def test_json_object_gives_a_json_object(world: World) -> None:
    actor = Actor.system(world.ws_a)
    for seed in range(4):
        res = chat_service.chat(world.model, ASK, {
            "temperature": 1.2, "seed": seed, "max_new_tokens": 40,
            "response_format": {"type": "json_object"}}, actor=actor, placement="local")
        assert isinstance(json.loads(res.text), dict), res.text


def test_unconstrained_the_tiny_model_is_not_json(world: World) -> None:
    """The constraint does the work: the same model without it writes no JSON."""
    res = chat_service.chat(world.model, ASK, {"temperature": 0, "max_new_tokens": 30},
                            actor=Actor.system(world.ws_a), placement="local")
    with pytest.raises(json.JSONDecodeError):
        json.loads(res.text)


def test_openai_client_parse_and_streaming(api_url: str, world: World) -> None:
    c = client(api_url, world.key_a)
    done = c.chat.completions.parse(model=world.model, messages=ASK,  # type: ignore[arg-type]
                                    response_format=Person, max_tokens=80, temperature=0.8,
                                    seed=3)
    person = done.choices[0].message.parsed
    assert isinstance(person, Person) and person.kind in ("friend", "colleague")
    chunks = list(c.chat.completions.create(
        model=world.model, messages=ASK, stream=True, max_tokens=80,  # type: ignore[arg-type]
        response_format=PERSON_FORMAT, temperature=0.8, seed=4))  # type: ignore[arg-type]
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    jsonschema.validate(json.loads(text), PERSON_SCHEMA)


@pytest.mark.parametrize("method", [
    "json_schema",
    pytest.param("function_calling", marks=pytest.mark.slow),
    pytest.param("json_mode", marks=pytest.mark.slow),
])
def test_langchain_with_structured_output(api_url: str, world: World, method: str) -> None:
    from langchain_openai import ChatOpenAI

    # the tiny tokenizer spells a forced tool call in ~90 tokens at the least
    llm = ChatOpenAI(base_url=api_url, api_key=world.key_a,  # type: ignore[arg-type]
                     model=world.model, temperature=0.7, seed=1, max_tokens=150, max_retries=0)
    if method == "json_mode":
        out = llm.with_structured_output(method="json_mode").invoke("A person as JSON.")
        assert isinstance(out, dict)
        return
    person = llm.with_structured_output(Person, method=method).invoke(  # type: ignore[arg-type]
        "Describe a person.")
    assert isinstance(person, Person)


@pytest.mark.slow
def test_forced_tool_calls_every_time(world: World) -> None:
    actor = Actor.system(world.ws_a)
    for choice, names in (("required", {"add", "echo"}),
                          ({"type": "function", "function": {"name": "echo"}}, {"echo"})):
        for seed in range(3):
            res = chat_service.chat(world.model, ASK, {
                "temperature": 1.0, "seed": seed, "max_new_tokens": 120,
                "tool_choice": choice}, TOOLS, actor=actor, placement="local")
            assert len(res.tool_calls) == 1 and res.tool_calls[0].name in names, res
            fn = next(t["function"] for t in TOOLS if t["function"]["name"] ==
                      res.tool_calls[0].name)
            jsonschema.validate(res.tool_calls[0].arguments, fn["parameters"])


def test_forced_tool_calls(world: World, api_url: str) -> None:
    tools = TOOLS
    actor = Actor.system(world.ws_a)
    # tool_choice "none" sends no tools, so none is called
    res = chat_service.chat(world.model, ASK, {"temperature": 0, "max_new_tokens": 20,
                                               "tool_choice": "none"}, tools, actor=actor,
                            placement="local")
    assert res.tool_calls == []
    # through the API
    c = client(api_url, world.key_a)
    out = c.chat.completions.create(model=world.model, messages=ASK, tools=tools,  # type: ignore[arg-type]
                                    tool_choice={"type": "function", "function": {"name": "add"}},
                                    max_tokens=100, temperature=0.5, seed=2)
    call = out.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert out.choices[0].finish_reason == "tool_calls" and call.function.name == "add"  # type: ignore[union-attr]
    assert set(json.loads(call.function.arguments)) == {"a", "b"}  # type: ignore[union-attr]


def test_a_schema_the_engine_cannot_follow_is_a_400(api_url: str, world: World) -> None:
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}}}
    res = httpx.post(f"{api_url}/chat/completions", timeout=30,
                     headers={"Authorization": f"Bearer {world.key_a}"},
                     json={"model": world.model, "messages": ASK, "response_format": bad})
    assert res.status_code == 400, res.text
    err = res.json()["error"]
    assert err["param"] == "response_format"
    assert "response_format" in err["message"] and "$ref" in err["message"]


# --- endpoint models: passed on as they are ------------------------------------------------

def recording_upstream(seen: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Any:
        from fastapi.responses import StreamingResponse

        body = await request.json()
        seen.append(body)
        text = json.dumps({"name": "Ada", "age": 36, "kind": "colleague", "tags": []})

        async def events() -> Any:
            yield "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text},
                                                      "finish_reason": "stop"}]}) + "\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    server, thread, url = _serve(recording_upstream(seen))
    yield url, seen
    server.should_exit = True
    thread.join(5)


def test_endpoint_models_get_response_format_and_tool_choice(
        api_url: str, world: World, recorded: tuple[str, list[dict[str, Any]]]) -> None:
    url, seen = recorded
    name = models_service.add_openai_model(
        actor=Actor.system(world.ws_a), name=f"rec-{uuid.uuid4().hex[:6]}", base_url=url,
        remote_model="upstream-model", capabilities=["chat", "tools"]).name
    c = client(api_url, world.key_a)
    done = c.chat.completions.parse(model=name, messages=ASK, response_format=Person)  # type: ignore[arg-type]
    assert done.choices[0].message.parsed == Person(name="Ada", age=36, kind="colleague", tags=[])
    rf = seen[-1]["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["name"] == "Person"
    assert rf["json_schema"]["schema"]["required"] == ["name", "age", "kind", "tags"]
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    c.chat.completions.create(model=name, messages=ASK, tools=tools, tool_choice="required")  # type: ignore[arg-type]
    assert seen[-1]["tool_choice"] == "required" and seen[-1]["tools"][0]["function"]["name"] == "add"
    with pytest.raises(openai.BadRequestError):  # a schema that is not JSON Schema: refused here
        c.chat.completions.create(model=name, messages=ASK, response_format={  # type: ignore[arg-type]
            "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 7}}})
