"""Text holding U+0000 (NUL), which Postgres text and jsonb cannot hold, is stored without its NUL
characters in every store: job results, messages, traces, prompt runs, chunks, datasets. Before,
the whole write failed (``\\u0000 cannot be converted to text``) and the job showed SQL."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from backend.accounts.actor import Actor
from backend.db import session_scope
from backend.jobs.kinds import job_kind
from backend.models.agents import Agent, AgentConversation, AgentMessage, AgentTrace, AgentTraceStep
from backend.models.knowledge import KnowledgeChunk, KnowledgeDocument
from backend.models.prompts import PromptRun
from backend.services import datasets as datasets_service
from backend.services import jobs as jobs_service
from backend.services import knowledge as kbs

SYSTEM = Actor.system()
NUL_TEXT = "before\x00after"


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@job_kind("test_nul_result")
def _nul_result(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    ctx.log(f"model said {NUL_TEXT!s}")
    return {"answers": [NUL_TEXT, {"k\x00ey": "v\x00"}], "literal": "keep \\u0000 as typed"}


def test_json_dumps_drops_nul_but_keeps_an_escaped_backslash_u0000() -> None:
    from backend.db import json_dumps

    assert json_dumps({"a\x00": ["b\x00c", "\\u0000", "\\\x00"]}) == \
        '{"a": ["bc", "\\\\u0000", "\\\\"]}'


def test_job_result_with_nul_is_stored() -> None:
    job = jobs_service.submit_job(actor=SYSTEM, kind="test_nul_result", enqueue=False)
    done = jobs_service.run_inline(actor=SYSTEM, job_id=job.id)
    assert done.status == "succeeded", done.error
    assert done.result == {"answers": ["beforeafter", {"key": "v"}],
                           "literal": "keep \\u0000 as typed"}
    log = [line.message for line in jobs_service.job_log_tail(actor=SYSTEM, job_id=job.id)]
    assert "model said beforeafter" in log


def test_messages_and_traces_with_nul_are_stored() -> None:
    with session_scope() as session:
        agent = Agent(name=_unique("nul-agent"), workspace_id=SYSTEM.workspace_id,
                      description=NUL_TEXT, config={"system": NUL_TEXT})
        session.add(agent)
        session.flush()
        conv = AgentConversation(agent_id=agent.id, title=NUL_TEXT, summary=NUL_TEXT,
                                 workspace_id=SYSTEM.workspace_id)
        session.add(conv)
        session.flush()
        trace = AgentTrace(agent_id=agent.id, workspace_id=SYSTEM.workspace_id,
                           conversation_id=conv.id, question=NUL_TEXT, error=NUL_TEXT,
                           plan=[NUL_TEXT])
        session.add(trace)
        session.flush()
        session.add(AgentTraceStep(trace_id=trace.id, seq=0, kind="model", name=NUL_TEXT,
                                   input={"messages": [NUL_TEXT]}, output=NUL_TEXT,
                                   error=NUL_TEXT))
        session.add(AgentMessage(conversation_id=conv.id, role="assistant", content=NUL_TEXT,
                                 sources=[{"text": NUL_TEXT}], trace_id=trace.id))
        conv_id, trace_id = conv.id, trace.id
    with session_scope() as session:
        msg = session.execute(select(AgentMessage).where(
            AgentMessage.conversation_id == conv_id)).scalar_one()
        assert (msg.content, msg.sources) == ("beforeafter", [{"text": "beforeafter"}])
        t = session.get(AgentTrace, trace_id)
        assert t is not None and (t.question, t.error, t.plan) == (
            "beforeafter", "beforeafter", ["beforeafter"])
        step = session.execute(select(AgentTraceStep).where(
            AgentTraceStep.trace_id == trace_id)).scalar_one()
        assert (step.name, step.input, step.output) == (
            "beforeafter", {"messages": ["beforeafter"]}, "beforeafter")


def test_prompt_run_with_nul_is_stored() -> None:
    with session_scope() as session:
        run = PromptRun(workspace_id=SYSTEM.workspace_id, model_name="tiny", system=NUL_TEXT,
                        template=NUL_TEXT, variables={"v": NUL_TEXT},
                        messages=[{"role": "assistant", "content": NUL_TEXT}], output=NUL_TEXT,
                        parsed={"x": NUL_TEXT}, invalid_reason=NUL_TEXT, error=NUL_TEXT)
        session.add(run)
        session.flush()
        run_id = run.id
    with session_scope() as session:
        row = session.get(PromptRun, run_id)
        assert row is not None
        assert (row.output, row.system, row.variables, row.parsed, row.error) == (
            "beforeafter", "beforeafter", {"v": "beforeafter"}, {"x": "beforeafter"},
            "beforeafter")
        assert row.messages == [{"role": "assistant", "content": "beforeafter"}]


def test_chunks_of_a_document_with_nul_are_stored() -> None:
    kb = kbs.create_knowledge_base(actor=SYSTEM, name=_unique("nul-kb"))
    # UTF-16 text may hold U+0000 (an 8-bit file with NUL bytes is refused as binary)
    body = ("Lighthouse keepers log the weather\x00 every hour. " * 20).encode("utf-16")
    job_id = kbs.ingest_files(actor=SYSTEM, kb=kb.name, uploads=[("nul\x00notes.txt", body)],
                              enqueue=False)
    done = jobs_service.run_inline(actor=SYSTEM, job_id=job_id)
    assert done.status == "succeeded", done.error
    with session_scope() as session:
        errors = session.execute(select(KnowledgeDocument.error).where(
            KnowledgeDocument.kb_id == kb.id)).scalars().all()
    assert done.result["failed"] == 0, errors
    with session_scope() as session:
        texts = session.execute(select(KnowledgeChunk.text).join(
            KnowledgeDocument, KnowledgeDocument.id == KnowledgeChunk.document_id).where(
            KnowledgeDocument.kb_id == kb.id)).scalars().all()
    assert texts and all("\x00" not in t for t in texts)
    assert "weather every hour" in texts[0]
    hits = kbs.search(actor=SYSTEM, kb=kb.name, query="lighthouse weather")
    assert hits and "\x00" not in hits[0].text


def test_dataset_with_nul_is_stored_without_it() -> None:
    name = _unique("nul-ds")
    view = datasets_service.add_records(
        actor=SYSTEM, name=name, format="alpaca", description=NUL_TEXT, note=NUL_TEXT,
        records=[{"instruction": f"Say {NUL_TEXT}", "input": "", "output": NUL_TEXT}])
    view = datasets_service.get_dataset(actor=SYSTEM, dataset=name)
    assert view.description == "beforeafter"
    records = datasets_service.load_records(actor=SYSTEM, dataset=name)
    assert "\x00" not in repr(records) and "beforeafter" in repr(records)
    assert view.versions[-1].stats.get("nul_removed") == 2


@job_kind("test_sql_failure")
def _sql_failure(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    from sqlalchemy import text

    with session_scope() as session:
        session.execute(text("SELECT 1 / 0"))
    return {}


@job_kind("test_path_failure")
def _path_failure(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError(f"cannot open {ctx.run_dir}/weights/model.safetensors for reading")


def test_a_failed_job_shows_plain_words_not_sql_or_server_paths() -> None:
    job = jobs_service.submit_job(actor=SYSTEM, kind="test_sql_failure", enqueue=False)
    done = jobs_service.run_inline(actor=SYSTEM, job_id=job.id)
    assert done.status == "failed"
    assert done.error and "SQL" not in done.error and "SELECT" not in done.error
    assert "psycopg" not in done.error and "sqlalche.me" not in done.error
    assert "database" in done.error.lower()
    job = jobs_service.submit_job(actor=SYSTEM, kind="test_path_failure", enqueue=False)
    done = jobs_service.run_inline(actor=SYSTEM, job_id=job.id)
    assert done.status == "failed"
    assert done.error == "RuntimeError: cannot open model.safetensors for reading"
