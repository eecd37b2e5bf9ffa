"""The /v1 API's contract under real clients and a fuzzer (issue 9): no request body gives a 500,
errors name the API's own fields and fill ``param``, and ``/openapi.json`` describes the real
request, responses, streaming and auth well enough for schemathesis to fuzz it.

Runs against the real uvicorn server of ``tests/test_api_chat.py`` (its fixtures are reused);
chats run in this process (no gpu worker in this module)."""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import pytest

from tests import test_api_chat as _chat
from tests.test_api_chat import HELLO, World

# the real API server and its world (models, keys), shared with tests/test_api_chat.py
api_url, world = _chat.api_url, _chat.world
fake_upstream, broken_upstream = _chat.fake_upstream, _chat.broken_upstream


def post(api_url: str, key: str, body: Any, *, raw: bool = False) -> httpx.Response:
    content = body if raw else json.dumps(body).encode()
    return httpx.post(f"{api_url}/chat/completions", content=content, timeout=60,
                      headers={"Authorization": f"Bearer {key}",
                               "Content-Type": "application/json"})


@pytest.mark.parametrize("role", [{}, [], ["user"], 1, None, True])
def test_a_role_that_is_not_text_is_a_400(api_url: str, world: World, role: Any) -> None:
    res = post(api_url, world.key_a, {"model": world.model,
                                      "messages": [{"role": role, "content": "hi"}]})
    assert res.status_code == 400, res.text
    err = res.json()["error"]
    assert err["param"] == "messages.0.role" and "use one of" in err["message"]


@pytest.mark.parametrize("body", [
    {"messages": [{"role": "user", "content": {"a": 1}}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
    {"messages": [{"role": "assistant", "content": None, "tool_calls": [1]}]},
    {"messages": [{"role": "assistant", "tool_calls": [{"id": "x", "function": {"name": "f"}}]}]},
    {"messages": [{"role": "tool", "content": "x", "tool_call_id": 5}]},
    {"messages": ["hello"]},
    {"messages": HELLO, "tools": [{"type": "function", "function": {}}]},
    {"messages": HELLO, "tools": "all"},
    {"messages": HELLO, "tool_choice": {"type": "function"}},
    {"messages": HELLO, "tool_choice": "required"},
    {"messages": HELLO, "response_format": {"type": "xml"}},
    {"messages": HELLO, "response_format": {"type": "json_schema"}},
    {"messages": HELLO, "response_format": {"type": "json_schema",
                                            "json_schema": {"name": "x", "schema": {"type": 5}}}},
    {"messages": HELLO, "stream_options": {"include_usage": "yes"}},
    {"messages": HELLO, "temperature": "0.5"},
    {"messages": HELLO, "max_tokens": 5.5},
    {"messages": HELLO, "max_tokens": True},
    {"messages": HELLO, "seed": -1},
    {"messages": HELLO, "stop": [1]},
])
def test_malformed_parts_are_400s_that_name_the_field(api_url: str, world: World,
                                                      body: dict[str, Any]) -> None:
    res = post(api_url, world.key_a, {"model": world.model, **body})
    assert res.status_code == 400, res.text
    err = res.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"], err


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("temperature", [1e-300, 1e-40, 5e-324])
def test_tiny_temperatures_decode_greedily(api_url: str, world: World, temperature: float,
                                           stream: bool) -> None:
    body = {"model": world.model, "messages": HELLO, "max_tokens": 8, "stream": stream}
    res = post(api_url, world.key_a, {**body, "temperature": temperature})
    assert res.status_code == 200, res.text
    greedy = post(api_url, world.key_a, {**body, "temperature": 0})

    def text(r: httpx.Response) -> str:
        if not stream:
            return str(r.json()["choices"][0]["message"]["content"])
        events = [json.loads(ln[6:]) for ln in r.text.splitlines()
                  if ln.startswith("data: {")]
        assert not any("error" in e for e in events), events
        return "".join(e["choices"][0]["delta"].get("content") or "" for e in events)

    assert text(res) == text(greedy) != ""


@pytest.mark.parametrize(("body", "param", "says"), [
    ({"max_tokens": 0}, "max_tokens", "'max_tokens' is invalid: it must be a whole number"),
    ({"max_completion_tokens": 10**7}, "max_completion_tokens", "max_completion_tokens"),
    ({"temperature": 3}, "temperature", "a number from 0 to 2"),
    ({"temperature": -1}, "temperature", "a number from 0 to 2"),
    ({"top_p": 0}, "top_p", "above 0 and at most 1"),
    ({"seed": 2**40}, "seed", "from 0 to 4294967295"),
    ({"stop": ["a"] * 9}, "stop", "At most 8 stop strings"),
    ({"stream": "yes"}, "stream", "a JSON boolean"),
    ({"stream": 1}, "stream", "a JSON boolean"),
    ({"frequency_penalty": 9}, "frequency_penalty", "from -2 to 2"),
    ({"logprobs": True}, "logprobs", "not supported"),
])
def test_errors_use_the_api_field_names_and_fill_param(api_url: str, world: World,
                                                       body: dict[str, Any], param: str,
                                                       says: str) -> None:
    res = post(api_url, world.key_a, {"model": world.model, "messages": HELLO, **body})
    assert res.status_code == 400, res.text
    err = res.json()["error"]
    assert err["param"] == param and says in err["message"], err
    assert "max_new_tokens" not in err["message"]


def test_a_prompt_longer_than_the_context_is_a_400(api_url: str, world: World) -> None:
    long = [{"role": "user", "content": "word " * 3000}]
    res = post(api_url, world.key_a, {"model": world.model, "messages": long, "max_tokens": 4})
    assert res.status_code == 400, res.text
    assert "reads at most 1024" in res.json()["error"]["message"]


def test_openapi_describes_body_auth_responses_and_streaming(api_url: str) -> None:
    doc = httpx.get(api_url.removesuffix("/v1") + "/openapi.json").json()
    op = doc["paths"]["/v1/chat/completions"]["post"]
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"model", "messages"} <= set(body["required"])
    for field in ("temperature", "max_tokens", "stream", "tools", "tool_choice",
                  "response_format", "stop", "seed"):
        assert field in body["properties"], field
    assert doc["components"]["schemas"]["ChatMessage"]["properties"]["role"]["enum"]
    assert doc["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http", "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["ApiKey"]["description"]}
    assert op["security"] == [{"ApiKey": []}]
    assert {"200", "400", "401", "404", "429", "503"} <= set(op["responses"])
    assert "422" not in op["responses"]
    assert set(op["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert "Retry-After" in op["responses"]["503"]["headers"]
    models = doc["paths"]["/v1/models"]["get"]
    assert {"200", "401"} <= set(models["responses"]) and models["security"]


# --- fuzzing -------------------------------------------------------------------------------

FUZZ_EXAMPLES = int(os.environ.get("STUDIO_FUZZ_EXAMPLES", "40"))


def _fuzz(api_url: str, world: World, mode: str, examples: int) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        negative_data_rejection,
        response_schema_conformance,
        status_code_conformance,
    )

    from backend.api.app import app

    schema = schemathesis.openapi.from_dict(app.openapi())
    op = schema["/v1/chat/completions"]["POST"]
    generation = (schemathesis.GenerationMode.POSITIVE if mode == "positive"
                  else schemathesis.GenerationMode.NEGATIVE)
    seen: dict[int, int] = {}

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=generation))
    def run(case: Any) -> None:
        if isinstance(case.body, dict):
            model = case.body.get("model")
            if isinstance(model, str) and model:  # a valid name: make it one that exists
                case.body["model"] = world.model
            for key in ("max_tokens", "max_completion_tokens"):  # keep answers short
                value = case.body.get(key)
                if isinstance(value, int) and not isinstance(value, bool) \
                        and 8 < value <= 131072:
                    case.body[key] = 8
            if case.body.get("max_tokens") is None and \
                    case.body.get("max_completion_tokens") is None:
                case.body["max_tokens"] = 4  # not the model's default 512: keep fuzzing quick
        try:
            res = case.call(base_url=api_url.removesuffix("/v1"),
                            headers={"Authorization": f"Bearer {world.key_a}"}, timeout=60)
        except Exception:
            import faulthandler
            import sys

            faulthandler.dump_traceback(sys.stderr)  # where the server (this process) got stuck
            raise
        seen[res.status_code] = seen.get(res.status_code, 0) + 1
        assert res.status_code < 500, (case.body, res.text[:500])
        checks = [not_a_server_error, status_code_conformance]
        if res.headers.get("content-type", [""])[0].startswith("application/json"):
            checks.append(response_schema_conformance)
        if mode == "negative":
            checks.append(negative_data_rejection)
        case.validate_response(res, checks=checks)

    run()
    assert sum(seen.values()) >= examples // 2, seen
    if mode == "positive":
        assert seen.get(200), f"no fuzzed request was answered: {seen}"


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzzing_the_openapi_document_finds_no_500(api_url: str, world: World,
                                                   mode: str) -> None:
    _fuzz(api_url, world, mode, FUZZ_EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzzing_longer_finds_no_500(api_url: str, world: World, mode: str) -> None:
    _fuzz(api_url, world, mode, 600)
