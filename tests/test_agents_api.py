"""Published agents end to end on the tiny local model: the service, the CLI (`studio agents`,
`studio keys create --agent --rate`) and the OpenAI-compatible API through the official
``openai`` client (listing, streaming equals not streaming, extra fields, limited keys, 429)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

from backend.accounts.actor import Role
from backend.services import accounts, agents, models
from tests.accounts_helpers import actor_of, make_key, make_user, make_workspace
from tests.test_api_chat import _serve


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    from backend.api.app import app

    server, thread, url = _serve(app)
    yield url
    server.should_exit = True
    thread.join(5)


@pytest.fixture(scope="module")
def bot(tiny_model_dir: Path) -> dict[str, Any]:
    wid = make_workspace("bots")
    builder_user = make_user(Role.builder, [wid], prefix="bot-builder")
    builder = actor_of(builder_user, wid)
    model = models.add_local_model(actor=builder, name=f"tiny-{uuid.uuid4().hex[:6]}",
                                   source=str(tiny_model_dir)).name
    cfg = {"model": model, "tools": ["calculator", "current_datetime"],
           "params": {"temperature": 0, "max_new_tokens": 12}}
    a = agents.create_agent(actor=builder, name=f"helper-{uuid.uuid4().hex[:4]}", config=cfg)
    agents.publish_agent(actor=builder, agent=a.id)
    other = agents.create_agent(actor=builder, name=f"other-{uuid.uuid4().hex[:4]}", config=cfg)
    agents.publish_agent(actor=builder, agent=other.id)
    draft = agents.create_agent(actor=builder, name=f"draft-{uuid.uuid4().hex[:4]}", config=cfg)
    return {"ws": wid, "builder": builder, "builder_user": builder_user, "model": model,
            "name": a.name, "other": other.name, "draft": draft.name,
            "key": make_key(builder_user, wid)}


def test_the_agent_runs_end_to_end_on_the_tiny_model(bot: dict[str, Any]) -> None:
    run = agents.stream_agent(actor=bot["builder"], agent=bot["name"], question="Hello there",
                              placement="local")
    pieces = list(run)
    res = run.result
    assert res is not None and res.answer == "".join(pieces) and res.answer.strip()
    models_steps = [s for s in res.steps if s["kind"] == "model"]
    assert models_steps and models_steps[0]["completion_tokens"] > 0
    assert models_steps[0]["input"][0]["role"] == "system"
    again = agents.run_agent(actor=bot["builder"], agent=bot["name"], question="And again?",
                             conversation_id=res.conversation_id)
    msgs = agents.get_messages(actor=bot["builder"], conversation_id=again.conversation_id)
    assert [m.role for m in msgs] == ["user", "assistant", "user", "assistant"]


def _cli(*args: str, key: str | None = None) -> tuple[int, Any]:
    from backend.cli import app

    res = CliRunner().invoke(app, (["--api-key", key] if key else []) + list(args))
    out = res.stdout.strip()
    try:
        return res.exit_code, json.loads(out) if out else None
    except json.JSONDecodeError:
        return res.exit_code, out + res.stderr


def test_cli_create_list_show_run_publish_delete(bot: dict[str, Any]) -> None:
    key = bot["key"]
    name = f"cli-{uuid.uuid4().hex[:4]}"
    code, out = _cli("agents", "create", name, "--model", bot["model"], "--tool", "calculator",
                     "--prompt", "Be brief.", "--type", "plan", "--json", key=key)
    assert code == 0, out
    assert out["config"]["type"] == "plan" and out["config"]["tools"] == ["calculator"]
    code, out = _cli("agents", "create", name, "--model", bot["model"], "--json", key=key)
    assert code == 1 and "already exists" in out["error"]
    code, out = _cli("agents", "create", "x", "--model", "nope", "--json", key=key)
    assert code == 1 and "No model" in out["error"]
    code, listed = _cli("agents", "list", "--json", key=key)
    assert name in {a["name"] for a in listed}
    code, out = _cli("agents", "publish", name, "--json", key=key)
    assert code == 0 and out["published_version"] == 1
    code, shown = _cli("agents", "show", name, "--json", key=key)
    assert shown["versions"][0]["version"] == 1
    code, out = _cli("agents", "create", f"{name}-t", "--model", bot["model"], "--json",
                     "--publish", "-t", "0", "-n", "8", key=key)
    assert out["config"]["params"] == {"temperature": 0, "max_new_tokens": 8}
    code, ran = _cli("agents", "run", f"{name}-t", "Hi", "--json", key=key)
    assert code == 0, ran
    assert set(ran) >= {"answer", "sources", "steps", "conversation_id", "trace_id"}
    code, ran2 = _cli("agents", "run", f"{name}-t", "More", "--conversation",
                      str(ran["conversation_id"]), "--json", key=key)
    assert code == 0 and ran2["conversation_id"] == ran["conversation_id"]
    code, out = _cli("agents", "delete", name, "--json", key=key)
    assert code == 0
    code, out = _cli("agents", "show", name, "--json", key=key)
    assert code == 1 and "No agent" in out["error"]


def test_api_lists_and_serves_published_bots(api_url: str, bot: dict[str, Any]) -> None:
    client = openai.OpenAI(base_url=api_url, api_key=bot["key"])
    ids = {m.id for m in client.models.list()}
    assert {bot["model"], bot["name"], bot["other"]} <= ids and bot["draft"] not in ids
    card = client.models.retrieve(bot["name"])
    assert card.id == bot["name"] and (card.model_extra or {})["kind"] == "agent"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(bot["draft"])
    ask = [{"role": "user", "content": "Hello, how are you?"}]
    full = client.chat.completions.create(model=bot["name"], messages=ask)  # type: ignore[arg-type]
    text = full.choices[0].message.content
    assert text and full.model == bot["name"]
    extra = full.model_extra or {}
    assert extra["trace_id"] > 0 and extra["sources"] == []
    trace = agents.get_trace(actor=bot["builder"], trace_id=extra["trace_id"])
    assert trace.question == "Hello, how are you?"
    stream = client.chat.completions.create(model=bot["name"], messages=ask,  # type: ignore[arg-type]
                                            stream=True)
    pieces, last = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        last = chunk
    assert "".join(pieces) == text  # greedy: streamed equals not streamed
    assert last is not None and (last.model_extra or {}).get("trace_id")
    with pytest.raises(openai.NotFoundError):  # a draft is not served
        client.chat.completions.create(model=bot["draft"], messages=ask)  # type: ignore[arg-type]


def test_keys_limited_to_an_agent_and_rate_limited(api_url: str, bot: dict[str, Any]) -> None:
    code, out = _cli("keys", "create", "--agent", bot["name"], "--rate", "3/min", "--json",
                     key=bot["key"])
    assert code == 0, out
    limited = out["key"]
    assert out["agent"] == bot["name"] and out["rate_per_min"] == 3
    code, out = _cli("keys", "create", "--agent", "no-such-bot", "--json", key=bot["key"])
    assert code == 1 and "No agent" in out["error"]
    code, out = _cli("keys", "create", "--rate", "fast", "--json", key=bot["key"])
    assert code == 1 and "N/min" in out["error"]
    ask = [{"role": "user", "content": "Hi"}]
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {limited}"},
                      timeout=120) as http:
        listed = http.get("/models").json()["data"]
        assert [m["id"] for m in listed] == [bot["name"]]  # one bot, no models
        assert http.get(f"/models/{bot['model']}").status_code == 404
        assert http.get(f"/models/{bot['name']}").json()["id"] == bot["name"]
        r = http.post("/chat/completions", json={"model": bot["other"], "messages": ask})
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        r = http.post("/chat/completions", json={"model": bot["model"], "messages": ask})
        assert r.status_code == 404
        for _ in range(3):  # the refused requests above were not counted
            r = http.post("/chat/completions", json={"model": bot["name"], "messages": ask})
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
        r = http.post("/chat/completions", json={"model": bot["name"], "messages": ask})
        assert r.status_code == 429  # the fourth served request in 60 s
        assert int(r.headers["retry-after"]) >= 1 and "3 requests a minute" in r.text
    bad = httpx.post(f"{api_url}/chat/completions", json={"model": bot["name"], "messages": ask},
                     headers={"Authorization": "Bearer sk-studio-wrong"})
    assert bad.status_code == 401
    revoked = accounts.create_api_key(actor=bot["builder"], name="soon revoked")
    accounts.revoke_api_key(actor=bot["builder"], key_id=revoked.view.id)
    r = httpx.post(f"{api_url}/chat/completions", json={"model": bot["name"], "messages": ask},
                   headers={"Authorization": f"Bearer {revoked.key}"})
    assert r.status_code == 401
    far = make_workspace("far")
    stranger = make_key(make_user(Role.user, [far], prefix="far"), far)
    r = httpx.post(f"{api_url}/chat/completions", json={"model": bot["name"], "messages": ask},
                   headers={"Authorization": f"Bearer {stranger}"})
    assert r.status_code == 404  # another workspace's bot looks absent
