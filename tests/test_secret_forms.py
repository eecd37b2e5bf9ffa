"""A secret leaks in transformed forms too (issue 23, item 2): a tool's server may echo the
header it was sent JSON-escaped, URL-encoded, base64-encoded, upper-cased or reversed. Every such
form is scrubbed before the model, the trace, the stored messages or the answer see it."""

from __future__ import annotations

import base64
import html
import json
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request

from backend.agents.runtime import SCRUBBED, Tracer
from backend.services import agents, secrets
from tests.agents_helpers import Script, call
from tests.test_agents import _agent, _serve, ws  # noqa: F401 - the module's workspace fixture

SECRET = 'Pa"ss\\wd/42-xyz'


def forms(secret: str) -> dict[str, str]:
    """The transformed forms of ``secret`` a server might send back."""
    raw = secret.encode()
    return {
        "raw": secret,
        "json": json.dumps(secret)[1:-1],
        "json twice": json.dumps(json.dumps(secret)[1:-1])[1:-1],
        "json slash": json.dumps(secret)[1:-1].replace("/", "\\/"),
        "json unicode": json.dumps(secret + "é")[1:-1][:-6],
        "url": urllib.parse.quote(secret, safe=""),
        "url path": urllib.parse.quote(secret),
        "url plus": urllib.parse.quote_plus(secret),
        "url lower": urllib.parse.quote(secret, safe="").lower(),
        "base64": base64.b64encode(raw).decode(),
        "base64 url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "basic auth": base64.b64encode(b"user:" + raw).decode(),
        "basic auth 2": base64.b64encode(b"me:" + raw + b"!").decode(),
        "upper": secret.upper(),
        "lower": secret.lower(),
        "swapped": secret.swapcase(),
        "reversed": secret[::-1],
        "html": html.escape(secret),
        "hex": raw.hex(),
    }


def test_the_tracer_scrubs_every_covered_form() -> None:
    tracer = Tracer(secrets=[SECRET])
    for name, form in forms(SECRET).items():
        text = f"before {form} after"
        out = tracer.scrub(text)
        assert SECRET.lower() not in out.lower(), name
        if name.startswith("basic auth"):  # the secret's part of a longer base64 text
            assert out != text, name
        else:
            assert out == f"before {SCRUBBED} after", (name, out)
    # ordinary text stays as it was
    assert tracer.scrub("Paris is 21 C; pass the word.") == "Paris is 21 C; pass the word."


class Echo(Script):
    """Calls the tool, then answers with exactly what the tool gave it."""

    def open(self, messages: list[dict[str, Any]], params: dict[str, Any],
             tools: list[dict[str, Any]] | None) -> Any:
        if self.sent:
            self.replies = [str(messages[-1]["content"])]
        return super().open(messages, params, tools)


def echo_app() -> FastAPI:
    app = FastAPI()

    @app.get("/echo")
    def echo(request: Request) -> dict[str, Any]:
        token = request.headers.get("x-token", "")
        return {"temp_c": 21, **{k: v for k, v in forms(token).items()}}

    return app


@pytest.fixture(scope="module")
def echo_server() -> Iterator[int]:
    server, port = _serve(echo_app())
    yield port
    server.should_exit = True


def test_transformed_forms_reach_neither_model_trace_messages_nor_answer(
        ws: dict[str, Any], echo_server: int) -> None:  # noqa: F811
    b = ws["builder"]
    name = f"TOKEN_{uuid.uuid4().hex[:6].upper()}"
    secrets.set_secret(actor=b, name=name, value=SECRET)
    tool = f"echo{uuid.uuid4().hex[:4]}"
    agents.create_http_tool(actor=b, name=tool, url_template=f"http://localhost:{echo_server}/echo",
                            description="echo", headers={"X-Token": "{secret:" + name + "}"})
    a = _agent(ws, tools=[f"http:{tool}"])
    agents.allow_host(actor=ws["admin"], host="localhost")
    try:
        script = Echo([call(tool)])
        res = agents.run_agent(actor=b, agent=a.id, question="Echo?", version="draft",
                               llm=script.model())
    finally:
        agents.disallow_host(actor=ws["admin"], host="localhost")
    steps = {s["name"]: s for s in res.steps if s["kind"] == "tool"}
    assert steps[tool]["error"] is None and "21" in steps[tool]["output"]
    assert "temp_c" in res.answer and SCRUBBED in res.answer
    fed_back = json.dumps(script.sent[1][0])
    trace = agents.get_trace(actor=b, trace_id=res.trace_id)
    conv = agents.list_conversations(actor=b, agent=a.id)
    stored = [m.to_dict() for c in conv for m in agents.get_messages(actor=b,
                                                                    conversation_id=c.id)]
    for where, text in (("model", fed_back),
                        ("trace", json.dumps(trace.to_dict(), default=str)),
                        ("answer", json.dumps(res.to_dict(), default=str)),
                        ("messages", json.dumps(stored, default=str))):
        for form_name, form in forms(SECRET).items():
            if form_name.startswith("basic auth"):
                continue  # the secret's part is scrubbed; the rest of that text is noise
            assert form not in text, (where, form_name)
