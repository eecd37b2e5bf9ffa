"""Prompts end to end on the real database: the template sandbox, versions (save, diff, restore),
rendering for other stages, runs on a tiny local model (stats kept and searchable), output
validation, batch evaluation as a job (a scripted endpoint and the tiny model), and the CLI."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from typer.testing import CliRunner

from backend.accounts.actor import Actor, PermissionDenied, Role
from backend.prompts.output import parse_output, schema_from_fields
from backend.prompts.scoring import score_answer
from backend.prompts.template import (
    MissingVariables,
    PromptParts,
    TemplateError,
    render_messages,
    render_template,
    template_variables,
)
from backend.services import models as models_service
from backend.services import prompt_eval
from backend.services import prompts as svc

SYSTEM = Actor.system()


def _name(prefix: str = "p") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- the sandbox ---------------------------------------------------------------------------------

@pytest.mark.parametrize("source", [
    "{{ name.__class__ }}",
    "{{ name.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ items.append(3) }}",
    "{{ self._TemplateReference__context }}",
])
def test_sandbox_refuses_attribute_tricks_with_a_clear_message(source: str) -> None:
    with pytest.raises(TemplateError) as err:
        render_template(source, {"name": "x", "items": [1], "cycler": 1, "self": 1})
    msg = str(err.value)
    assert "Traceback" not in msg and len(msg) < 400
    assert "not allowed" in msg or "not defined" in msg or "unsafe" in msg


def test_sandbox_bounds_output_and_loops() -> None:
    with pytest.raises(TemplateError, match="repeat text"):
        render_template("{{ 'ab' * 10000000 }}", {})
    with pytest.raises(TemplateError, match="loops too much"):
        render_template("{% for i in range(100) %}{% for j in range(1000) %}{% endfor %}"
                        "{% endfor %}", {})
    with pytest.raises(TemplateError, match="longer than"):
        render_template("{% for i in range(2000) %}{{ t }}{% endfor %}", {"t": "x" * 100})
    assert render_template("{{ n|upper }} {% for i in range(3) %}{{ i }}{% endfor %}",
                           {"n": "a"}) == "A 012"


def test_missing_variables_are_named_before_anything_runs() -> None:
    parts = PromptParts(template="Translate {{ text }} into {{ language }}.",
                        system="You are {{ role }}.")
    assert template_variables(parts.system, parts.template) == ["role", "text", "language"]
    with pytest.raises(MissingVariables) as err:
        render_messages(parts, {"text": "hi"})
    assert err.value.names == ["role", "language"]
    assert "role, language" in str(err.value)
    msgs = render_messages(PromptParts(template="Q: {{ q }}", system="Be brief.",
                                       examples=[{"user": "Q: 1+1", "assistant": "2"}]),
                           {"q": "2+2"})
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[-1]["content"] == "Q: 2+2"


def test_syntax_errors_say_where() -> None:
    with pytest.raises(TemplateError, match="line 1"):
        template_variables("Hello {{ name ")


# --- output ----------------------------------------------------------------------------------------

def test_json_output_is_validated_with_the_reason() -> None:
    schema = schema_from_fields([{"name": "city", "type": "string"},
                                 {"name": "population", "type": "integer"}])
    fmt = {"type": "json", "schema": schema}
    ok = parse_output('Here you go:\n```json\n{"city": "Paris", "population": 2100000}\n```', fmt)
    assert ok.valid and ok.value == {"city": "Paris", "population": 2100000}
    bad = parse_output('{"city": "Paris", "population": "many"', fmt)
    assert not bad.valid and "Not valid JSON" in (bad.reason or "")
    wrong = parse_output('{"city": "Paris", "population": "many"}', fmt)
    assert not wrong.valid and "population" in (wrong.reason or "") \
        and "integer" in (wrong.reason or "")
    missing = parse_output('{"city": "Paris"}', fmt)
    assert not missing.valid and "population" in (missing.reason or "")
    lst = parse_output("1. apples\n2. pears\n- plums", {"type": "list"})
    assert lst.valid and lst.value == ["apples", "pears", "plums"]
    with pytest.raises(ValueError, match="not valid JSON"):
        svc.create_prompt(actor=SYSTEM, name=_name(), template="x",
                          output_format={"type": "json", "schema": "{nope"})


def test_scoring_methods() -> None:
    assert score_answer("exact", " Paris ", "Paris") == (1.0, "")
    assert score_answer("exact", "paris", "Paris")[0] == 0.0
    assert score_answer("contains", "It is PARIS.", "paris")[0] == 1.0
    assert score_answer("regex", "id: 42", None, pattern=r"\d+")[0] == 1.0
    assert score_answer("json", "{\"a\": 1}", None)[0] == 1.0
    assert score_answer("json", "{a: 1}", None)[0] == 0.0
    assert score_answer("judge", "x", "y", rubric="r", judge=lambda p: "4 - good")[0] == 0.8


# --- versions ------------------------------------------------------------------------------------

def test_versions_round_trip_diff_and_restore() -> None:
    name = _name()
    p1 = svc.create_prompt(actor=SYSTEM, name=name, template="Summarise: {{ text }}",
                           system="You are terse.", message="first")
    assert (p1.version, p1.latest_version, p1.variables) == (1, 1, ["text"])
    p2 = svc.save_version(actor=SYSTEM, name=name, template="Summarise in {{ n }} words: "
                          "{{ text }}", system="You are terse.",
                          examples=[{"user": "Summarise: a b c", "assistant": "abc"}],
                          message="word limit")
    assert p2.version == 2 and p2.variables == ["n", "text"]
    again = svc.get_prompt(actor=SYSTEM, name=name, version=1)
    assert again.template == "Summarise: {{ text }}" and again.current.message == "first"
    assert [v.version for v in svc.list_versions(actor=SYSTEM, name=name)] == [2, 1]
    diffs = {d.part: d.diff for d in svc.compare_versions(actor=SYSTEM, name=name, a=1, b=2)}
    assert set(diffs) == {"template", "examples"}
    assert "-Summarise: {{ text }}" in diffs["template"]
    assert "+Summarise in {{ n }} words: {{ text }}" in diffs["template"]
    p3 = svc.restore_version(actor=SYSTEM, name=name, version=1)
    assert p3.version == 3 and p3.template == "Summarise: {{ text }}" and p3.examples == []
    assert "Restored version 1" in p3.current.message
    assert svc.compare_versions(actor=SYSTEM, name=name, a=1, b=3) == []
    # what the agent builder calls
    assert name in {p.name for p in svc.list_prompts(actor=SYSTEM)}
    msgs = svc.render_prompt(actor=SYSTEM, name=name, version=2,
                             variables={"n": 3, "text": "long text"})
    assert msgs[0] == {"role": "system", "content": "You are terse."}
    assert msgs[-1]["content"] == "Summarise in 3 words: long text"
    with pytest.raises(svc.PromptNotFound, match="no version 9"):
        svc.get_prompt(actor=SYSTEM, name=name, version=9)
    with pytest.raises(svc.PromptExists):
        svc.create_prompt(actor=SYSTEM, name=name, template="x")


def test_roles_and_workspaces() -> None:
    from tests.accounts_helpers import actor_of, make_user, make_workspace

    ws_a, ws_b = make_workspace("PA"), make_workspace("PB")
    user = actor_of(make_user(Role.user, [ws_a], prefix="pu"), ws_a)
    builder = actor_of(make_user(Role.builder, [ws_a], prefix="pb"), ws_a)
    other = actor_of(make_user(Role.builder, [ws_b], prefix="po"), ws_b)
    name = _name()
    with pytest.raises(PermissionDenied, match="builder"):
        svc.create_prompt(actor=user, name=name, template="x")
    svc.create_prompt(actor=builder, name=name, template="Hi {{ who }}")
    assert svc.render_prompt(actor=builder, name=name, variables={"who": "a"})[-1]["content"] \
        == "Hi a"
    for call in (lambda: svc.render_prompt(actor=user, name=name, variables={"who": "a"}),
                 lambda: svc.get_prompt(actor=user, name=name),
                 lambda: svc.list_prompts(actor=user),
                 lambda: svc.list_runs(actor=user)):
        with pytest.raises(PermissionDenied, match="builder role"):  # users chat with bots
            call()
    with pytest.raises(svc.PromptNotFound):
        svc.get_prompt(actor=other, name=name)
    assert name not in {p.name for p in svc.list_prompts(actor=other)}
    with pytest.raises(PermissionDenied):
        svc.delete_prompt(actor=user, name=name)
    svc.delete_prompt(actor=builder, name=name)
    assert name not in {p.name for p in svc.list_prompts(actor=builder)}


# --- runs on the tiny model -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> str:
    name = _name("tiny")
    models_service.add_local_model(actor=SYSTEM, name=name, source=str(tiny_model_dir),
                                   source_type="folder")
    svc.set_model_price(actor=SYSTEM, model=name, input_per_mtok=1.0, output_per_mtok=2.0)
    return name


def test_run_on_the_tiny_model_keeps_stats_and_is_searchable(tiny: str) -> None:
    name = _name()
    svc.create_prompt(actor=SYSTEM, name=name, template="Tell me about {{ topic }}.",
                      params={"max_new_tokens": 8, "temperature": 0})
    with pytest.raises(MissingVariables, match="topic"):
        svc.run_prompt(actor=SYSTEM, name=name, models=[tiny])
    [col] = svc.run_prompt(actor=SYSTEM, name=name, models=[tiny], variables={"topic": "tea"})
    assert col.error is None and col.done and col.text
    u = col.usage
    assert u is not None and u.prompt_tokens and u.completion_tokens == 8
    assert u.ttft_ms is not None and u.tokens_per_s
    assert col.cost == pytest.approx((u.prompt_tokens * 1.0 + 8 * 2.0) / 1e6)
    run = svc.get_run(actor=SYSTEM, run_id=col.run_id)  # type: ignore[arg-type]
    assert run.text == col.text and run.variables == {"topic": "tea"}
    assert run.prompt_name == name and run.version == 1 and run.tokens_out == 8
    assert run.messages[-1] == {"role": "assistant", "content": col.text}
    assert [r.id for r in svc.list_runs(actor=SYSTEM, search="tea", prompt=name)] == [run.id]
    assert svc.list_runs(actor=SYSTEM, search="no-such-thing-" + uuid.uuid4().hex) == []


def test_invalid_json_answer_is_marked_with_the_reason(scripted: tuple[str, list[Any]]) -> None:
    model, _ = scripted  # answers "JSON: broken" with cut-off JSON, "JSON: wrong" off-schema
    fmt = {"type": "json", "schema": schema_from_fields([{"name": "city", "type": "string"},
                                                         {"name": "population",
                                                          "type": "integer"}])}
    specs = [svc.RunSpec(model=model, parts=PromptParts(template="JSON: {{ q }}"),
                         output_format=fmt)]
    broken = svc.start_runs(actor=SYSTEM, specs=specs, variables={"q": "broken"})
    wrong = svc.start_runs(actor=SYSTEM, specs=specs, variables={"q": "wrong"})
    assert broken.wait(60) and wrong.wait(60)
    b, w = broken.columns[0], wrong.columns[0]
    assert b.parsed is not None and not b.parsed.valid
    assert "Not valid JSON" in (b.parsed.reason or "")
    assert w.parsed is not None and not w.parsed.valid
    assert "population" in (w.parsed.reason or "") and "integer" in (w.parsed.reason or "")
    run = svc.get_run(actor=SYSTEM, run_id=b.run_id)  # type: ignore[arg-type]
    assert run.valid is False and run.invalid_reason == b.parsed.reason


def test_two_columns_and_stop_one(tiny: str) -> None:
    parts = PromptParts(template="Write about {{ x }}")
    live = svc.start_runs(actor=SYSTEM, specs=[
        svc.RunSpec(model=tiny, parts=parts, params={"max_new_tokens": 2000, "temperature": 0}),
        svc.RunSpec(model=tiny, parts=parts, params={"max_new_tokens": 5, "temperature": 0}),
    ], variables={"x": "y"})
    time.sleep(1.0)
    live.stop(0)
    assert live.wait(120)
    a, b = live.columns
    assert a.usage is not None and a.usage.finish_reason == "stopped"
    assert a.usage.completion_tokens < 2000
    assert b.usage is not None and b.usage.completion_tokens == 5


def test_batched_generation_matches_one_at_a_time(tiny_model_dir: Path) -> None:
    from backend.llm.batch import generate_batch
    from backend.llm.local_hf import model_cache, run_local_chat
    from backend.llm.types import GenerationParams

    lm = model_cache().get(str(tiny_model_dir))
    gp = GenerationParams(temperature=0, max_new_tokens=10)
    convs = [[{"role": "user", "content": f"hello {'word ' * i}{i}"}] for i in range(3)]
    batch = generate_batch(lm, convs, gp)
    for conv, ans in zip(convs, batch, strict=True):
        parts: list[Any] = []
        u = run_local_chat(lm, conv, gp, emit=parts.append)
        assert ans.text == "".join(parts) and ans.prompt_tokens == u.prompt_tokens


# --- batch evaluation -----------------------------------------------------------------------------

def scripted_app(seen: list[dict[str, Any]]) -> FastAPI:
    """An OpenAI-compatible endpoint that answers "Q: n" with n*2, except for multiples of 4,
    where it answers wrong (n*2+1): so 15 of 20 rows (n=1..20) are right. "JSON: ..." gets
    cut-off JSON ("broken") or JSON that misses the schema."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        seen.append(body)
        content = body["messages"][-1]["content"]
        if content.startswith("JSON:"):
            answer = ('{"city": "Paris", "population": 21' if "broken" in content
                      else '{"city": "Paris", "population": "many"}')
        else:
            n = int(content.split(":")[1])
            answer = str(n * 2 + (1 if n % 4 == 0 else 0))
        chunks = [{"choices": [{"index": 0, "delta": {"content": answer}}]},
                  {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                  {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1}}]

        async def events() -> Any:
            for c in chunks:
                yield f"data: {json.dumps(c)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@pytest.fixture(scope="module")
def scripted() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(scripted_app(seen), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    name = _name("scripted")
    models_service.add_openai_model(actor=SYSTEM, name=name, base_url=f"http://127.0.0.1:{port}/v1",
                                    remote_model="scripted")
    yield name, seen
    server.should_exit = True
    thread.join(5)


def test_batch_eval_scores_every_row_per_model(scripted: tuple[str, list[Any]], tiny: str) -> None:
    from backend.services import jobs as jobs_service

    model, seen = scripted
    name = _name()
    svc.create_prompt(actor=SYSTEM, name=name, template="Q: {{ n }}")
    rows = [{"n": n, "expected": str(n * 2)} for n in range(1, 21)]
    with pytest.raises(ValueError, match="Row 1"):
        prompt_eval.submit_eval(actor=SYSTEM, rows=[{"m": 1, "expected": "2"}], models=[model],
                                prompt=name)
    before = len(seen)
    job_id = prompt_eval.submit_eval(actor=SYSTEM, rows=rows, models=[model, tiny], prompt=name,
                                     scoring="exact", batch_size=8, concurrency=4,
                                     params={"max_new_tokens": 4, "temperature": 0},
                                     enqueue=False)
    job = jobs_service.run_inline(actor=SYSTEM, job_id=job_id)
    assert job.status == "succeeded", job.error
    res = prompt_eval.eval_results(actor=SYSTEM, job_id=job_id)
    assert len([r for r in res.rows if r["model"] == model]) == 20
    assert len([r for r in res.rows if r["model"] == tiny]) == 20
    assert len(seen) - before == 20
    summary = {s["model"]: s for s in res.summary}
    assert summary[model]["score"] == pytest.approx(15 / 20)
    assert summary[model]["scored"] == 20 and summary[model]["errors"] == 0
    wrong = sorted(r["row"] for r in res.rows if r["model"] == model and r["score"] == 0)
    assert wrong == [4, 8, 12, 16, 20]
    assert summary[tiny]["rows"] == 20 and summary[tiny]["score"] is not None
    csv_text = prompt_eval.eval_csv(actor=SYSTEM, job_id=job_id)
    assert csv_text.splitlines()[0].startswith("row,model,variables,expected,output,score")
    assert len(csv_text.strip().splitlines()) == 41


def test_eval_of_a_json_prompt_on_a_local_model_is_constrained(tiny: str) -> None:
    """A JSON output format reaches the local model in an evaluation too (the batched path
    cannot constrain, so such rows are decoded one at a time): every answer is valid JSON for
    the schema, which the tiny model never writes on its own."""
    from backend.services import jobs as jobs_service

    fmt = {"type": "json", "schema": schema_from_fields([{"name": "city", "type": "string"}])}
    job_id = prompt_eval.submit_eval(actor=SYSTEM, rows=[{"q": q} for q in ("a", "b", "c")],
                                     models=[tiny], parts=PromptParts(template="City: {{ q }}"),
                                     output_format=fmt, scoring="regex", pattern=".*",
                                     params={"max_new_tokens": 40, "temperature": 0},
                                     batch_size=8, enqueue=False)
    job = jobs_service.run_inline(actor=SYSTEM, job_id=job_id)
    assert job.status == "succeeded", job.error
    rows = prompt_eval.eval_results(actor=SYSTEM, job_id=job_id).rows
    assert len(rows) == 3
    for r in rows:
        assert r["error"] is None and r["valid"], (r["output"], r["invalid_reason"])
        assert isinstance(json.loads(r["output"])["city"], str)


# --- CLI ---------------------------------------------------------------------------------------------

def _cli(*args: str) -> tuple[int, Any]:
    from backend.cli import app

    res = CliRunner().invoke(app, list(args))
    try:
        return res.exit_code, json.loads(res.stdout)
    except json.JSONDecodeError:
        return res.exit_code, res.stdout + res.stderr


def test_cli_create_show_run_and_eval(tiny: str, scripted: tuple[str, list[Any]],
                                      tmp_path: Path) -> None:
    name = _name()
    code, out = _cli("prompts", "create", name, "--template", "Q: {{ n }}", "--system", "Math.",
                     "--message", "v1", "--json")
    assert code == 0 and out["version"] == 1 and out["variables"] == ["n"]
    code, out = _cli("prompts", "save", name, "--template", "Q:{{ n }}", "--json")
    assert code == 0 and out["version"] == 2
    code, out = _cli("prompts", "show", name, "--version", "1", "--json")
    assert code == 0 and out["template"] == "Q: {{ n }}" and out["system"] == "Math."
    code, out = _cli("prompts", "diff", name, "1", "2", "--json")
    assert code == 0 and [d["part"] for d in out] == ["template"]
    code, out = _cli("prompts", "run", name, "--var", "n=3", "--model", tiny, "--model",
                     scripted[0], "-n", "4", "--temperature", "0", "--json")
    assert code == 0, out
    assert [r["model"] for r in out["runs"]] == [tiny, scripted[0]]
    for r in out["runs"]:
        assert {"model", "text", "tokens_in", "tokens_out", "ttft_ms", "tokens_per_s"} <= set(r)
    assert out["runs"][1]["text"] == "6" and out["runs"][0]["tokens_out"] == 4
    code, out = _cli("prompts", "run", name, "--model", tiny, "--json")
    assert code == 1 and "n" in out["error"]
    data = tmp_path / "rows.csv"
    data.write_text("n,expected\n" + "".join(f"{n},{n * 2}\n" for n in range(1, 9)))
    code, out = _cli("prompts", "eval", name, "--data", str(data), "--model", scripted[0],
                     "--wait", "--json")
    assert code == 0, out
    assert len(out["rows"]) == 8 and out["summary"][0]["score"] == pytest.approx(6 / 8)
    code, out = _cli("prompts", "list", "--search", name, "--json")
    assert code == 0 and [p["name"] for p in out] == [name]


def test_knowledge_base_context_fills_the_context_variable() -> None:
    from backend.services import jobs as jobs_service
    from backend.services import knowledge

    kb = knowledge.create_knowledge_base(actor=SYSTEM, name=_name("kb"))
    job_id = knowledge.ingest_files(actor=SYSTEM, kb=kb.id, uploads=[
        ("refunds.txt", b"Refunds are possible within 30 days of purchase."),
        ("shipping.txt", b"Parcels ship from Rotterdam every Tuesday by sea freight."),
    ], enqueue=False)
    assert jobs_service.run_inline(actor=SYSTEM, job_id=job_id).status == "succeeded"
    name = _name()
    svc.create_prompt(actor=SYSTEM, name=name,
                      template="Context:\n{{ context }}\n\nCustomer: {{ question }}",
                      context={"kb": kb.name, "query_variable": "question", "k": 1})
    assert svc.prompt_variables(actor=SYSTEM, template="{{ context }} {{ question }}",
                                context={"kb": kb.name, "query_variable": "question"}) \
        == ["question"]
    with pytest.raises(MissingVariables, match="question"):
        svc.render_prompt(actor=SYSTEM, name=name, variables={})
    msgs = svc.render_prompt(actor=SYSTEM, name=name,
                             variables={"question": "when do parcels ship from Rotterdam?"})
    user = msgs[-1]["content"]
    assert "Rotterdam every Tuesday" in user and "Refunds" not in user
    assert user.endswith("Customer: when do parcels ship from Rotterdam?")


@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_gallery_templates_render_with_their_samples(language: str) -> None:
    items = svc.gallery(actor=SYSTEM, language=language)
    assert {g.key for g in items} == {"role", "classify", "cot", "extract", "summarise",
                                      "translate", "support"}
    for g in items:
        msgs = render_messages(PromptParts(template=g.template, system=g.system,
                                           examples=g.examples), g.sample)
        assert msgs[-1]["role"] == "user" and "{{" not in msgs[-1]["content"]
    extract = next(g for g in items if g.key == "extract")
    assert parse_output('{"name": "Ana", "email": "a@b.example"}', extract.output_format).valid


def test_json_output_asks_for_structured_decoding_where_the_chat_service_can() -> None:
    params = svc.chat_params({"temperature": 0}, {"type": "json", "schema": {"type": "object"}})
    if svc.supports_response_format():
        assert params["response_format"] == {
            "type": "json_schema", "json_schema": {"name": "answer",
                                                   "schema": {"type": "object"}}}
    else:
        assert "response_format" not in params
    assert "response_format" not in svc.chat_params({}, {"type": "text"})


def test_copy_as_code_snippets() -> None:
    snippets = svc.code_snippets(actor=SYSTEM, model="m1", messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "It's 2+2?"}],
        params={"temperature": 0.2, "max_new_tokens": 50})
    assert "OpenAI(base_url=" in snippets["python"] and "max_tokens=50" in snippets["python"]
    assert '"model": "m1"' in snippets["curl"] and "/v1/chat/completions" in snippets["curl"]
    compile(snippets["python"], "snippet", "exec")  # valid Python
    import shlex

    body = shlex.split(snippets["curl"].replace("\\\n", " "))[-1]
    assert json.loads(body)["messages"][1]["content"] == "It's 2+2?"
