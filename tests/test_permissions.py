"""Who may do what. Each service function against each role (allowed and refused), and workspace
isolation: a user of workspace A cannot read, search or chat with anything of workspace B
through the services, the CLI (``--api-key`` + ``--json``) or the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from backend.accounts.actor import Actor, PermissionDenied, Role
from backend.services import (
    accounts,
    agents,
    audit,
    corpora,
    datasets,
    finetune,
    jobs,
    knowledge,
    models,
    pretrain,
    prompt_eval,
    prompts,
    secrets,
    workspaces,
)
from tests.accounts_helpers import (
    PASSWORD,
    SYSTEM,
    actor_of,
    make_key,
    make_user,
    make_workspace,
    unique,
)

ROLES = (Role.user, Role.builder, Role.admin)


@dataclass
class World:
    """Two workspaces, A and B, each with a user, a builder and an admin, a job, a model and a
    secret; and API keys for A's user and builder and B's user."""

    ws_a: int
    ws_b: int
    actors: dict[Role, Actor]
    b_actor: Actor
    job_a: int
    job_b: int
    model_a: str
    model_b: str
    model_b_id: int
    key_a_user: str
    key_a_builder: str
    key_b_user: str
    extras: dict[str, Any] = field(default_factory=dict)

    def actor(self, role: Role) -> Actor:
        return self.actors[role]


def _job(workspace_id: int, created_by: Actor | None = None) -> int:
    actor = created_by or Actor.system(workspace_id)
    if created_by is not None and not created_by.has_role(Role.builder):
        actor = Actor(user_id=created_by.user_id, username=created_by.username,
                      role=Role.builder, workspace_id=workspace_id)
    return jobs.submit_job(actor=actor, kind="demo", params={"steps": 1, "step_seconds": 0},
                           title=unique("permissions"), enqueue=False).id


def _model(workspace_id: int) -> models.ModelView:
    return models.add_openai_model(actor=Actor.system(workspace_id), name=unique("model"),
                                   base_url="http://127.0.0.1:9/v1", remote_model="remote",
                                   api_key="sk-endpoint-key-123456")


@pytest.fixture(scope="module")
def world() -> World:
    ws_a, ws_b = make_workspace("A"), make_workspace("B")
    users = {role: make_user(role, [ws_a], prefix=f"a-{role.value}") for role in ROLES}
    actors = {role: actor_of(u, ws_a) for role, u in users.items()}
    b_user = make_user(Role.user, [ws_b], prefix="b-user")
    b_actor = actor_of(b_user, ws_b)
    job_a = _job(ws_a, actors[Role.user])
    job_b = _job(ws_b, b_actor)
    model_a, model_b = _model(ws_a), _model(ws_b)
    secrets.set_secret(actor=Actor.system(ws_b), name="B_ONLY", value="b-secret-value-1")
    secrets.set_secret(actor=Actor.system(ws_a), name="A_ONLY", value="a-secret-value-1")
    return World(
        ws_a=ws_a, ws_b=ws_b, actors=actors, b_actor=b_actor, job_a=job_a, job_b=job_b,
        model_a=model_a.name, model_b=model_b.name, model_b_id=model_b.id,
        key_a_user=make_key(users[Role.user], ws_a),
        key_a_builder=make_key(users[Role.builder], ws_a),
        key_b_user=make_key(b_user, ws_b),
    )


# ------------------------------------------------------------------------------ the matrix

Call = Callable[[Actor, World], object]


def _new_user(w: World) -> int:
    return make_user(Role.user, [w.ws_a], prefix="target").id


def _rotate(actor: Actor, w: World) -> object:
    from tests.test_accounts import rotate_and_back

    return rotate_and_back(actor)


def _own_key(actor: Actor, w: World) -> object:
    made = accounts.create_api_key(actor=actor, name="mine")
    return accounts.revoke_api_key(actor=actor, key_id=made.view.id)


def _move(actor: Actor, w: World) -> object:
    job = _job(w.ws_a)
    return workspaces.move_item(actor=actor, kind="jobs", item_id=job, to_workspace_id=w.ws_b)


def _set_and_use_secret(actor: Actor, w: World) -> object:
    name = unique("S").replace("-", "_")
    secrets.set_secret(actor=actor, name=name, value="value-of-the-secret")
    assert secrets.reveal_secret(actor=actor, name=name) == "value-of-the-secret"
    return secrets.delete_secret(actor=actor, name=name)


def _model_lifecycle(actor: Actor, w: World) -> object:
    m = models.add_openai_model(actor=actor, name=unique("m"), base_url="http://127.0.0.1:9/v1",
                                remote_model="x")
    models.set_api_key(actor=actor, model=m.id, api_key="sk-new-key-987654")
    return models.remove_model(actor=actor, model=m.id)


def _workspace_lifecycle(actor: Actor, w: World) -> object:
    ws = workspaces.create_workspace(actor=actor, name=unique("tmp"))
    workspaces.update_workspace(actor=actor, workspace_id=ws.id, description="x")
    return workspaces.delete_workspace(actor=actor, workspace_id=ws.id)


def _membership(actor: Actor, w: World) -> object:
    uid = _new_user(w)
    workspaces.add_member(actor=actor, workspace_id=w.ws_b, user_id=uid)
    return workspaces.remove_member(actor=actor, workspace_id=w.ws_b, user_id=uid)


def _agent_lifecycle(actor: Actor, w: World) -> object:
    a = agents.create_agent(actor=actor, name=unique("agent"), config={"model": w.model_a})
    agents.update_agent(actor=actor, agent=a.id, description="x")
    agents.publish_agent(actor=actor, agent=a.id)
    agents.list_versions(actor=actor, agent=a.id)
    agents.unpublish_agent(actor=actor, agent=a.id)
    copy = agents.duplicate_agent(actor=actor, agent=a.id)
    agents.delete_agent(actor=actor, agent=copy.id)
    return agents.delete_agent(actor=actor, agent=a.id)


def _published_agent(w: World) -> agents.AgentView:
    if "agent" not in w.extras:
        admin = Actor.system(w.ws_a)
        a = agents.create_agent(actor=admin, name=unique("bot"), config={"model": w.model_a})
        w.extras["agent"] = agents.publish_agent(actor=admin, agent=a.id)
    return w.extras["agent"]  # type: ignore[no-any-return]


def _agent_chat(actor: Actor, w: World) -> object:
    from tests.agents_helpers import Script

    bot = _published_agent(w)
    res = agents.run_agent(actor=actor, agent=bot.name, question="hi",
                           llm=Script("hello").model())
    agents.give_feedback(actor=actor, message_id=res.message_id, rating=1)
    agents.get_messages(actor=actor, conversation_id=res.conversation_id)
    agents.list_conversations(actor=actor)
    agents.list_agents(actor=actor)
    agents.get_agent(actor=actor, agent=bot.id)
    agents.published_agents(actor=actor)
    return agents.delete_conversation(actor=actor, conversation_id=res.conversation_id)


def _agent_form_lists(actor: Actor, w: World) -> object:
    agents.chat_model_names(actor=actor)
    agents.knowledge_base_names(actor=actor)
    return agents.saved_prompt_names(actor=actor)


def _kb_bot_chat(actor: Actor, w: World) -> object:
    """A user asks a published bot that searches a knowledge base and uses a saved prompt:
    the bot reads them although the user may not read them directly."""
    from tests.agents_helpers import Script

    if "kb_bot" not in w.extras:
        owner = Actor.system(w.ws_a)
        name = unique("bot-prompt")
        prompts.create_prompt(actor=owner, name=name, template="{{ q }}", system="Be brief.")
        bot = agents.create_agent(actor=owner, name=unique("kb-bot"), config={
            "model": w.model_a, "knowledge_bases": [knowledge.get_knowledge_base(
                actor=owner, kb=_kb(w)).name], "saved_prompt": name})
        w.extras["kb_bot"] = agents.publish_agent(actor=owner, agent=bot.id)
    res = agents.run_agent(actor=actor, agent=w.extras["kb_bot"].name,
                           question="Where are the secrets kept?", llm=Script("ok").model())
    assert any("blue binder" in str(s.get("text")) for s in res.sources), res.sources
    return res


def _agent_review(actor: Actor, w: World) -> object:
    from tests.agents_helpers import Script

    bot = _published_agent(w)
    agents.list_feedback(actor=actor)
    agents.usage(actor=actor)
    agents.create_bot(actor=actor, name=unique("kb-bot"), model=w.model_a, knowledge_bases=[],
                      publish=False)
    res = agents.run_agent(actor=actor, agent=bot.name, question="hi", version="draft",
                           llm=Script("x").model())
    return agents.get_trace(actor=actor, trace_id=res.trace_id)


def _agent_tools(actor: Actor, w: World) -> object:
    name = unique("t").replace("-", "_")
    agents.create_http_tool(actor=actor, name=name, url_template="https://example.com/x")
    agents.list_http_tools(actor=actor)
    agents.openapi_tools(actor=actor, document='{"servers": [{"url": "https://a.example"}], '
                         '"paths": {"/x": {"get": {"operationId": "getX"}}}}')
    agents.import_openapi(actor=actor, document='{"servers": [{"url": "https://a.example"}], '
                          f'"paths": {{"/x": {{"get": {{"operationId": "{name}x"}}}}}}}}')
    agents.delete_http_tool(actor=actor, name=name)
    agents.add_mcp_server(actor=actor, name=name, transport="http", url="http://10.0.0.1/mcp")
    agents.list_mcp_servers(actor=actor)
    agents.list_allowed_hosts(actor=actor)
    agents.available_tools(actor=actor)
    return agents.delete_mcp_server(actor=actor, name=name)


def _agent_admin(actor: Actor, w: World) -> object:
    agents.allow_host(actor=actor, host="wiki.intranet")
    agents.disallow_host(actor=actor, host="wiki.intranet")
    key = accounts.create_api_key(actor=actor, name="limited")
    return agents.set_key_limit(actor=actor, key_id=key.view.id, rate_per_min=5)


def _prompt_lifecycle(actor: Actor, w: World) -> object:
    name = unique("prompt")
    prompts.create_prompt(actor=actor, name=name, template="Hi {{ who }}")
    prompts.save_version(actor=actor, name=name, template="Hello {{ who }}")
    prompts.restore_version(actor=actor, name=name, version=1)
    return prompts.delete_prompt(actor=actor, name=name)
def _prompt_reads(actor: Actor, w: World) -> object:
    if "prompt" not in w.extras:
        w.extras["prompt"] = prompts.create_prompt(actor=Actor.system(w.ws_a), name=unique("p"),
                                                   template="Hi {{ who }}").name
    prompts.get_prompt(actor=actor, name=w.extras["prompt"])
    prompts.list_versions(actor=actor, name=w.extras["prompt"])
    prompts.gallery(actor=actor)
    try:  # the role is checked first; then the endpoint (nobody listens) fails
        return prompts.run_prompt(actor=actor, name=w.extras["prompt"], models=[w.model_a],
                                  variables={"who": "you"}, timeout_s=5)
    except PermissionDenied:
        raise
    except Exception:  # noqa: BLE001
        return None


def _raw_chat(actor: Actor, w: World) -> object:
    from backend.services import chat

    chat.chat_model(actor=actor, model=w.model_a)
    try:  # the role is checked first; then the endpoint (nobody listens) fails
        return chat.stream_chat(w.model_a, [{"role": "user", "content": "hi"}], actor=actor)
    except PermissionDenied:
        raise
    except Exception:  # noqa: BLE001
        return None


def _corpus_a(w: World) -> int:
    """A small corpus in workspace A (made once), from text that ships with Python."""
    if "corpus_a" not in w.extras:
        import tempfile
        from pathlib import Path
        from pydoc_data.topics import topics

        folder = Path(tempfile.mkdtemp(prefix="perm-corpus-"))
        for name in sorted(topics)[:6]:
            (folder / f"{name}.txt").write_text(topics[name])
        w.extras["corpus_a"] = corpora.add_corpus(actor=Actor.system(w.ws_a), name=unique("c"),
                                                  paths=[folder], heldout_fraction=0.3).id
    return int(w.extras["corpus_a"])


def _read_corpus(actor: Actor, w: World) -> object:
    cid = _corpus_a(w)
    corpora.get_version(actor=actor, corpus=cid)
    corpora.corpus_sample(actor=actor, corpus=cid)
    return corpora.get_corpus(actor=actor, corpus=cid)


def _corpus_lifecycle(actor: Actor, w: World) -> object:
    from pydoc_data.topics import topics

    made = corpora.add_corpus(actor=actor, name=unique("c"), uploads=[
        ("a.txt", topics["assert"].encode()), ("b.md", topics["if"].encode())])
    assert made.latest is not None
    corpora.record_token_files(actor=actor, version_id=made.latest.id, key="k", info={})
    return corpora.delete_corpus(actor=actor, corpus=made.id)


def _launch_pretrain(actor: Actor, w: World) -> object:
    job = pretrain.launch_pretrain(actor=actor, corpus=_corpus_a(w), name=unique("pt"),
                                   overrides={"max_steps": 10}, enqueue=False)
    return jobs.cancel_job(actor=SYSTEM, job_id=job.id)
def _kb(w: World) -> int:
    """A small knowledge base of workspace A with one document (made once per module)."""
    if "kb" not in w.extras:
        owner = Actor.system(w.ws_a)
        kb = knowledge.create_knowledge_base(actor=owner, name=unique("kb"))
        job_id = knowledge.ingest_files(actor=owner, kb=kb.id, uploads=[
            ("a.md", b"# A\n\nWorkspace A keeps its secrets in the blue binder.")], enqueue=False)
        jobs.run_inline(actor=owner, job_id=job_id)
        w.extras["kb"] = kb.id
    return int(w.extras["kb"])


def _kb_lifecycle(actor: Actor, w: World) -> object:
    kb = knowledge.create_knowledge_base(actor=actor, name=unique("kb"))
    knowledge.update_knowledge_base(actor=actor, kb=kb.id, description="x", chunk_size=500)
    knowledge.reindex(actor=actor, kb=kb.id, enqueue=False)
    return knowledge.delete_knowledge_base(actor=actor, kb=kb.id)


def _kb_docs(actor: Actor, w: World) -> object:
    owner = Actor.system(w.ws_a)
    kb = knowledge.create_knowledge_base(actor=owner, name=unique("kb"))
    job_id = knowledge.ingest_files(actor=actor, kb=kb.id, uploads=[("n.txt", b"some notes")],
                                    enqueue=False)
    jobs.run_inline(actor=owner, job_id=job_id)
    chunk = knowledge.list_chunks(actor=actor, kb=kb.id)[0]
    knowledge.update_chunk(actor=actor, kb=kb.id, chunk_id=chunk.id, enabled=False)
    doc = knowledge.list_documents(actor=actor, kb=kb.id)[0]
    return knowledge.delete_document(actor=actor, kb=kb.id, document_id=doc.id)


_QA = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}]


def _dataset_lifecycle(actor: Actor, w: World) -> object:
    d = datasets.add_records(actor=actor, name=unique("ds"), records=_QA, format="chat")
    datasets.add_dataset(actor=actor, name=d.name, filename="more.jsonl",
                         data=b'{"instruction": "q2", "output": "a2"}')
    datasets.get_dataset(actor=actor, dataset=d.id)
    datasets.load_records(actor=actor, dataset=d.id)
    return datasets.delete_dataset(actor=actor, dataset=d.id)


def _start_qa(actor: Actor, w: World) -> object:
    try:  # the role is checked first; then the missing knowledge base is named
        return datasets.start_qa_generation(actor=actor, kb=unique("no-kb"), model=w.model_a,
                                            enqueue=False)
    except LookupError:
        return None


def _start_finetune(actor: Actor, w: World) -> object:
    d = datasets.add_records(actor=SYSTEM if not actor.is_admin else actor, name=unique("ds"),
                             records=_QA, format="chat")
    try:  # the role is checked first; A's only model is an endpoint, which is then refused
        return finetune.start_finetune(actor=actor, base_model=w.model_a, dataset=d.id,
                                       config=finetune.make_config(), enqueue=False)
    except ValueError as err:
        assert "not a model folder" in str(err)
        return None


MATRIX: dict[str, tuple[Role, Call]] = {
    # jobs
    "jobs.list_jobs": (Role.user, lambda a, w: jobs.list_jobs(actor=a)),
    "jobs.get_job (own)": (Role.user, lambda a, w: jobs.get_job(actor=a, job_id=_job(
        w.ws_a, a))),
    "jobs.job_counts": (Role.user, lambda a, w: jobs.job_counts(actor=a)),
    "jobs.job_metrics (own)": (Role.user, lambda a, w: jobs.job_metrics(actor=a, job_id=_job(
        w.ws_a, a))),
    "jobs.job_log_tail (own)": (Role.user, lambda a, w: jobs.job_log_tail(actor=a, job_id=_job(
        w.ws_a, a))),
    "jobs.submit_job": (Role.builder, lambda a, w: jobs.submit_job(
        actor=a, kind="demo", params={"steps": 1}, title=unique("submit"), enqueue=False)),
    "jobs.cancel_job": (Role.builder, lambda a, w: jobs.cancel_job(actor=a, job_id=_job(w.ws_a))),
    "jobs.retry_job": (Role.builder, lambda a, w: jobs.retry_job(
        actor=a, job_id=jobs.cancel_job(actor=SYSTEM, job_id=_job(w.ws_a)).id)),
    # models registry
    "models.list_models": (Role.builder, lambda a, w: models.list_models(actor=a)),
    "models.get_model": (Role.builder, lambda a, w: models.get_model(actor=a, model=w.model_a)),
    "models.add_openai_model + models.set_api_key + models.remove_model": (Role.builder, _model_lifecycle),
    # accounts
    "accounts.create_user": (Role.admin, lambda a, w: accounts.create_user(
        actor=a, username=unique("new"), password=PASSWORD)),
    "accounts.list_users": (Role.admin, lambda a, w: accounts.list_users(actor=a)),
    "accounts.find_user": (Role.admin, lambda a, w: accounts.find_user(
        actor=a, username=a.username)),
    "accounts.get_user (other)": (Role.admin, lambda a, w: accounts.get_user(
        actor=a, user_id=w.b_actor.user_id)),  # type: ignore[arg-type]
    "accounts.get_user (self)": (Role.user, lambda a, w: accounts.get_user(
        actor=a, user_id=a.user_id)),  # type: ignore[arg-type]
    "accounts.update_user": (Role.admin, lambda a, w: accounts.update_user(
        actor=a, user_id=_new_user(w), role=Role.builder)),
    "accounts.set_password (other)": (Role.admin, lambda a, w: accounts.set_password(
        actor=a, user_id=_new_user(w), new_password="another password")),
    "accounts.delete_user": (Role.admin, lambda a, w: accounts.delete_user(
        actor=a, user_id=_new_user(w))),
    "accounts.create_api_key (own) + accounts.revoke_api_key": (Role.user, _own_key),
    "accounts.create_api_key (other)": (Role.admin, lambda a, w: accounts.create_api_key(
        actor=a, user_id=_new_user(w), workspace_id=w.ws_a)),
    "accounts.list_api_keys (own)": (Role.user, lambda a, w: accounts.list_api_keys(actor=a)),
    "accounts.list_api_keys (other)": (Role.admin, lambda a, w: accounts.list_api_keys(
        actor=a, user_id=w.b_actor.user_id)),
    "accounts.set_user_language": (Role.user, lambda a, w: accounts.set_user_language(
        actor=a, language="en")),
    # workspaces
    "workspaces.list_workspaces": (Role.user, lambda a, w: workspaces.list_workspaces(actor=a)),
    "workspaces.list_members (own)": (Role.user, lambda a, w: workspaces.list_members(
        actor=a, workspace_id=w.ws_a)),
    "workspaces.workspace_contents (own)": (Role.user, lambda a, w:
                                            workspaces.workspace_contents(actor=a,
                                                                          workspace_id=w.ws_a)),
    "workspaces.create_workspace + workspaces.update_workspace + workspaces.delete_workspace": (
        Role.admin, _workspace_lifecycle),
    "workspaces.add_member + workspaces.remove_member": (Role.admin, _membership),
    "workspaces.movable_kinds": (Role.admin, lambda a, w: workspaces.movable_kinds(actor=a)),
    "workspaces.list_items": (Role.admin, lambda a, w: workspaces.list_items(
        actor=a, kind="jobs", workspace_id=w.ws_a)),
    "workspaces.move_item": (Role.admin, _move),
    # secrets
    "secrets.set_secret + secrets.reveal_secret + secrets.delete_secret": (Role.builder, _set_and_use_secret),
    "secrets.list_secrets": (Role.builder, lambda a, w: secrets.list_secrets(actor=a)),
    "secrets.rotate_secret_key": (Role.admin, _rotate),
    # corpora and pre-training
    "corpora.list_corpora": (Role.builder, lambda a, w: corpora.list_corpora(actor=a)),
    "corpora.get_corpus + corpora.get_version + corpora.corpus_sample": (Role.builder, _read_corpus),
    "corpora.add_corpus + corpora.record_token_files + corpora.delete_corpus": (
        Role.builder, _corpus_lifecycle),
    "pretrain.presets": (Role.builder, lambda a, w: pretrain.presets(actor=a)),
    "pretrain.plan_run": (Role.builder, lambda a, w: pretrain.plan_run(actor=a, preset="small")),
    "pretrain.compare_tokenizers": (Role.builder, lambda a, w: pretrain.compare_tokenizers(
        actor=a, corpus=_corpus_a(w), vocab_size=400)),
    "pretrain.launch_pretrain": (Role.builder, _launch_pretrain),
    "pretrain.run_result (own)": (Role.builder, lambda a, w: pretrain.run_result(
        actor=a, job_id=_job(w.ws_a, a))),
    # knowledge bases
    "knowledge.list_knowledge_bases": (Role.builder, lambda a, w: knowledge.list_knowledge_bases(
        actor=a)),
    "knowledge.get_knowledge_base": (Role.builder, lambda a, w: knowledge.get_knowledge_base(
        actor=a, kb=_kb(w))),
    "knowledge.search + knowledge.highlight": (Role.builder, lambda a, w: (knowledge.search(
        actor=a, kb=_kb(w), query="blue binder"), knowledge.highlight(
        actor=a, query="blue", text="the blue binder"))),
    "knowledge.list_chunks + knowledge.count_chunks": (Role.builder, lambda a, w: (
        knowledge.list_chunks(actor=a, kb=_kb(w)), knowledge.count_chunks(actor=a, kb=_kb(w)))),
    "knowledge.list_documents": (Role.builder, lambda a, w: knowledge.list_documents(
        actor=a, kb=_kb(w))),
    "knowledge.embedding_map": (Role.builder, lambda a, w: knowledge.embedding_map(
        actor=a, kb=_kb(w))),
    "knowledge.kb_jobs": (Role.builder, lambda a, w: knowledge.kb_jobs(actor=a, kb=_kb(w))),
    "knowledge.create_knowledge_base + knowledge.update_knowledge_base + knowledge.reindex + "
    "knowledge.delete_knowledge_base": (Role.builder, _kb_lifecycle),
    "knowledge.ingest_files + knowledge.update_chunk + knowledge.delete_document": (
        Role.builder, _kb_docs),
    # audit
    "audit.list_audit": (Role.admin, lambda a, w: audit.list_audit(actor=a)),
    "audit.audit_facets": (Role.admin, lambda a, w: audit.audit_facets(actor=a)),
    # datasets and fine-tuning
    "datasets.list_datasets": (Role.builder, lambda a, w: datasets.list_datasets(actor=a)),
    "datasets.validate_file": (Role.user, lambda a, w: datasets.validate_file(
        actor=a, filename="x.jsonl", data=b'{"instruction": "q", "output": "a"}')),
    "datasets.add_records datasets.add_dataset datasets.get_dataset datasets.load_records "
    "datasets.delete_dataset": (Role.builder, _dataset_lifecycle),
    "datasets.build_from_feedback": (Role.builder, lambda a, w: datasets.build_from_feedback(
        actor=a, name=unique("fb"), save=False)),
    "datasets.save_qa_pairs": (Role.builder, lambda a, w: datasets.save_qa_pairs(
        actor=a, name=unique("qa"), pairs=[{"question": "q", "answer": "a"}])),
    "datasets.start_qa_generation": (Role.builder, _start_qa),
    "finetune.list_runs": (Role.builder, lambda a, w: finetune.list_runs(actor=a)),
    "finetune.make_config finetune.methods_available": (Role.user, lambda a, w: (
        finetune.make_config(preset="quick"), finetune.methods_available())),
    "finetune.start_finetune": (Role.builder, _start_finetune),
    # agents
    "agents.create_agent agents.update_agent agents.publish_agent agents.list_versions "
    "agents.unpublish_agent agents.duplicate_agent agents.delete_agent": (Role.builder,
                                                                         _agent_lifecycle),
    "agents.run_agent agents.give_feedback agents.get_messages agents.list_conversations "
    "agents.list_agents agents.get_agent agents.published_agents agents.delete_conversation": (
        Role.user, _agent_chat),
    "agents.chat_model_names agents.knowledge_base_names agents.saved_prompt_names": (
        Role.builder, _agent_form_lists),
    "agents.run_agent (a bot on a knowledge base, its model and saved prompt)": (
        Role.user, _kb_bot_chat),
    "agents.list_feedback agents.usage agents.create_bot agents.get_trace": (Role.builder,
                                                                             _agent_review),
    "agents.create_http_tool agents.list_http_tools agents.openapi_tools agents.import_openapi "
    "agents.delete_http_tool agents.add_mcp_server agents.list_mcp_servers "
    "agents.list_allowed_hosts agents.available_tools agents.delete_mcp_server": (
        Role.builder, _agent_tools),
    "agents.allow_host agents.disallow_host agents.set_key_limit": (Role.admin, _agent_admin),
    # prompts
    "prompts.create_prompt + prompts.save_version + prompts.restore_version + "
    "prompts.delete_prompt": (Role.builder, _prompt_lifecycle),
    "prompts.list_prompts": (Role.builder, lambda a, w: prompts.list_prompts(actor=a)),
    "prompts.list_runs": (Role.builder, lambda a, w: prompts.list_runs(actor=a)),
    "prompts.get_prompt prompts.list_versions prompts.gallery prompts.run_prompt": (
        Role.builder, _prompt_reads),
    "prompt_eval.parse_data_file": (Role.builder, lambda a, w: prompt_eval.parse_data_file(
        actor=a, data="q\nhello\n", filename="rows.csv")),
    # models and chatting with them directly (users chat with the published bots)
    "models.model_spec": (Role.builder, lambda a, w: models.model_spec(actor=a, model=w.model_a)),
    "chat.stream_chat chat.chat_model": (Role.builder, _raw_chat),
    "prompts.set_model_price": (Role.builder, lambda a, w: prompts.set_model_price(
        actor=a, model=w.model_a, input_per_mtok=None, output_per_mtok=None)),
}


@pytest.mark.parametrize("role", ROLES, ids=[r.value for r in ROLES])
@pytest.mark.parametrize("name", list(MATRIX))
def test_role_matrix(name: str, role: Role, world: World) -> None:
    needed, call = MATRIX[name]
    actor = world.actor(role)
    if role.rank >= needed.rank:
        call(actor, world)  # allowed: it runs through
    else:
        with pytest.raises(PermissionDenied, match=f"needs the {needed.value} role"):
            call(actor, world)


def test_every_public_service_function_is_in_the_matrix() -> None:
    """A new service function must be added here, with the role it needs."""
    import re

    text = " ".join(MATRIX) + " " + " ".join([
        # sign-in functions take credentials instead of an actor; the rest are helpers that
        # check membership or read the caller's own data
        "accounts.login accounts.logout accounts.resume_session accounts.switch_workspace",
        "accounts.actor_for_api_key accounts.needs_first_admin accounts.create_first_admin",
        "accounts.get_user_language accounts.user_workspaces accounts.actor_may_use_workspace",
        "workspaces.get_workspace workspaces.find_workspace workspaces.require_member",
        "secrets.encrypted_columns",
        # agents: the API's helpers (after it authenticated the key) and streaming under run_agent
        "agents.key_limit agents.check_rate agents.stream_agent",
        # the pretrain job kind runs inside a job (its actor comes from the job's params)
        "pretrain.run_pretrain_job",
        "secrets.encrypted_columns knowledge.embedder_for_index",
        # fine-tuning: read a local model's files (tested in tests/test_finetune.py); the job
        "datasets.preview datasets.base_tokenizer finetune.base_model_info finetune.estimate_run",
        "finetune.export_zip finetune.run_finetune_job datasets.run_qa_generation",
    ])
    covered = set(re.findall(r"\w+\.\w+", text))
    import inspect

    missing = []
    for module in (accounts, workspaces, secrets, audit, agents, corpora, pretrain, knowledge,
                   datasets, finetune):
        for fname, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ != module.__name__ or fname.startswith("_"):
                continue
            short = f"{module.__name__.rsplit('.', 1)[1]}.{fname}"
            if short not in covered:
                missing.append(short)
    assert missing == []


def test_user_sees_only_their_own_jobs(world: World) -> None:
    user, builder = world.actor(Role.user), world.actor(Role.builder)
    other = _job(world.ws_a)  # someone else's job in the same workspace
    assert other not in {j.id for j in jobs.list_jobs(actor=user)}
    assert other in {j.id for j in jobs.list_jobs(actor=builder)}
    with pytest.raises(jobs.JobNotFound):
        jobs.get_job(actor=user, job_id=other)


# ------------------------------------------------------------ workspace isolation: services


@pytest.mark.parametrize("role", [Role.user, Role.builder], ids=["user", "builder"])
def test_workspace_isolation_through_services(role: Role, world: World) -> None:
    a = world.actor(role)
    assert world.job_b not in {j.id for j in jobs.list_jobs(actor=a, limit=1000)}
    assert world.job_b not in {j.id for j in jobs.list_jobs(actor=a, search="demo")}
    with pytest.raises(jobs.JobNotFound):
        jobs.get_job(actor=a, job_id=world.job_b)
    with pytest.raises((jobs.JobNotFound, PermissionDenied)):
        jobs.job_log_tail(actor=a, job_id=world.job_b)
    with pytest.raises(PermissionDenied):
        workspaces.list_members(actor=a, workspace_id=world.ws_b)
    with pytest.raises(workspaces.WorkspaceNotFound):
        workspaces.get_workspace(actor=a, workspace_id=world.ws_b)
    assert world.ws_b not in {w.id for w in workspaces.list_workspaces(actor=a)}
    assert not {b.workspace_id for b in agents.published_agents(actor=a)} - {world.ws_a}
    if role == Role.user:  # a user reaches no model or knowledge base directly, not even A's
        for call in (lambda: models.list_models(actor=a),
                     lambda: models.get_model(actor=a, model=world.model_a),
                     lambda: knowledge.list_knowledge_bases(actor=a),
                     lambda: knowledge.search(actor=a, kb=_kb(world), query="blue binder"),
                     lambda: knowledge.list_chunks(actor=a, kb=_kb(world))):
            with pytest.raises(PermissionDenied, match="needs the builder role"):
                call()
        return
    names = {m.name for m in models.list_models(actor=a)}
    assert world.model_a in names and world.model_b not in names
    assert world.model_b not in {m.name for m in models.list_models(actor=a,
                                                                    search=world.model_b)}
    for ref in (world.model_b, world.model_b_id):
        with pytest.raises(models.ModelNotFound):
            models.get_model(actor=a, model=ref)
    with pytest.raises(models.ModelNotFound):  # chatting with B's model fails before any call
        from backend.services import chat

        chat.stream_chat(world.model_b_id, [{"role": "user", "content": "hi"}], actor=a)
    kb_b = knowledge.create_knowledge_base(actor=Actor.system(world.ws_b), name=unique("kb-b"))
    assert kb_b.id not in {k.id for k in knowledge.list_knowledge_bases(actor=a)}
    for ref in (kb_b.id, kb_b.name):
        with pytest.raises(knowledge.KnowledgeBaseNotFound):
            knowledge.search(actor=a, kb=ref, query="anything")
        with pytest.raises(knowledge.KnowledgeBaseNotFound):
            knowledge.list_chunks(actor=a, kb=ref)
    if role == Role.builder:
        assert "B_ONLY" not in {s.name for s in secrets.list_secrets(actor=a)}
        with pytest.raises(PermissionDenied):
            secrets.list_secrets(actor=a, workspace_id=world.ws_b)
        with pytest.raises(PermissionDenied):
            secrets.reveal_secret(actor=a, name="B_ONLY", workspace_id=world.ws_b)
        with pytest.raises(secrets.SecretNotFound):
            secrets.reveal_secret(actor=a, name="B_ONLY")


def test_admin_moves_things_between_workspaces(world: World) -> None:
    admin = world.actor(Role.admin)
    b = world.b_actor
    job = _job(world.ws_a)
    model = _model(world.ws_a)
    assert "models" in workspaces.movable_kinds(actor=admin)
    assert workspaces.move_item(actor=admin, kind="jobs", item_id=job,
                                to_workspace_id=world.ws_b) == {"jobs": 1}
    workspaces.move_item(actor=admin, kind="models", item_id=model.id,
                         to_workspace_id=world.ws_b)
    b_builder = replace(b, role=Role.builder)
    assert models.get_model(actor=b_builder, model=model.name).workspace_id == world.ws_b
    with pytest.raises(models.ModelNotFound):
        models.get_model(actor=world.actor(Role.builder), model=model.name)
    moved = audit.list_audit(actor=admin, actions=["move"], target_type="models",
                             target_id=str(model.id))
    assert moved and moved[0].details["to_workspace"] == world.ws_b
    # a name clash in the target workspace is refused with a clear message
    twin = models.add_openai_model(actor=Actor.system(world.ws_a), name=model.name,
                                   base_url="http://127.0.0.1:9/v1", remote_model="x")
    with pytest.raises(workspaces.WorkspaceError, match="same name"):
        workspaces.move_item(actor=admin, kind="models", item_id=twin.id,
                             to_workspace_id=world.ws_b)
    with pytest.raises(workspaces.WorkspaceError, match="still holds"):
        workspaces.delete_workspace(actor=admin, workspace_id=world.ws_b)


# ----------------------------------------------------------------- isolation: the CLI


def _cli(*args: str, key: str | None = None) -> tuple[int, Any]:
    from backend.cli import app

    argv = (["--api-key", key] if key else []) + list(args)
    res = CliRunner().invoke(app, argv)
    out = res.stdout.strip()
    try:
        return res.exit_code, json.loads(out) if out else None
    except json.JSONDecodeError:
        return res.exit_code, out + res.stderr


def test_cli_acts_as_the_api_key(world: World) -> None:
    code, listed = _cli("jobs", "list", "--json", "--limit", "1000", key=world.key_a_user)
    assert code == 0
    ids = {j["id"] for j in listed}
    assert world.job_a in ids and world.job_b not in ids
    code, out = _cli("jobs", "show", str(world.job_b), "--json", key=world.key_a_user)
    assert code == 1 and out == {"error": f"No job #{world.job_b}."}
    code, out = _cli("jobs", "show", str(world.job_b), "--json", key=world.key_b_user)
    assert code == 0 and out["id"] == world.job_b
    code, listed = _cli("models", "list", "--json", key=world.key_a_builder)
    assert code == 0
    names = {m["name"] for m in listed}
    assert world.model_a in names and world.model_b not in names
    code, out = _cli("secrets", "list", "--workspace", str(world.ws_b), "--json",
                     key=world.key_a_builder)
    assert code == 1 and "error" in out
    code, out = _cli("secrets", "list", "--json", key=world.key_a_builder)
    assert code == 0 and "A_ONLY" in {s["name"] for s in out} and "b-secret" not in str(out)
    # roles hold on the CLI too
    code, out = _cli("users", "list", "--json", key=world.key_a_builder)
    assert code == 1 and "needs the admin role" in out["error"]
    code, out = _cli("jobs", "demo", "--json", key=world.key_a_user)
    assert code == 1 or "needs the builder role" in str(out)
    # without a key the CLI is the operator and sees both workspaces
    code, listed = _cli("jobs", "list", "--json", "--limit", "1000")
    assert {world.job_a, world.job_b} <= {j["id"] for j in listed}


def test_cli_rejects_a_bad_key_and_reads_the_setting(world: World,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.config import reset_settings

    res = subprocess.run([sys.executable, "-m", "backend.cli", "--api-key", "sk-studio-not-a-key",
                          "jobs", "list", "--json"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "not valid" in json.loads(res.stdout)["error"]
    monkeypatch.setenv("STUDIO_API_KEY", world.key_b_user)
    reset_settings()
    try:
        code, listed = _cli("jobs", "list", "--json", "--limit", "1000")
        ids = {j["id"] for j in listed}
        assert world.job_b in ids and world.job_a not in ids
    finally:
        monkeypatch.undo()
        reset_settings()


def test_cli_user_management(world: World) -> None:
    from backend.cli import app

    name = unique("cli-admin")
    res = CliRunner().invoke(app, ["users", "create", name, "--admin", "--password-stdin",
                                   "--json"], input=PASSWORD + "\n")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["role"] == "admin"
    code, users = _cli("users", "list", "--json", "--search", name)
    assert code == 0 and [u["username"] for u in users] == [name]
    assert PASSWORD not in json.dumps(users)
    code, out = _cli("users", "set-role", name, "builder", "--json")
    assert code == 0 and out["role"] == "builder"
    code, out = _cli("keys", "create", "--user", name, "--workspace", "1", "--json")
    assert code == 0 and out["key"].startswith("sk-studio-")
    code, out = _cli("workspaces", "list", "--json", key=out["key"])
    assert code == 0 and [w["id"] for w in out] == [1]
    code, out = _cli("audit", "list", "--user", "system", "--search", name, "--json")
    assert code == 0 and {e["action"] for e in out} >= {"create", "update"}
    assert os.environ.get("STUDIO_API_KEY") is None


def test_cli_keys_create_for_a_bot_says_whose_key(world: World) -> None:
    """README's `studio keys create --agent BOT --rate 60/min`: the operator's CLI (no user of its
    own) asks for --user in plain words; with --user, or with a key (the caller), it works."""
    bot = _published_agent(world)
    ws = str(world.ws_a)
    code, out = _cli("keys", "create", "--agent", bot.name, "--rate", "60/min", "-w", ws,
                     "--json")
    assert code == 1 and "--user NAME" in out["error"], out
    user = make_user(Role.user, [world.ws_a], prefix="bot-key")
    code, out = _cli("keys", "create", "--user", user.username, "--agent", bot.name, "--rate",
                     "60/min", "-w", ws, "--json")
    assert code == 0, out
    assert out["agent"] == bot.name and out["rate_per_min"] == 60
    assert accounts.actor_for_api_key(out["key"]).username == user.username
    code, out = _cli("keys", "create", "--name", "mine", "--json", key=world.key_a_user)
    assert code == 0 and out["username"] == world.actor(Role.user).username  # the caller


# ----------------------------------------------------------------- isolation: the API


def test_api_models_list_per_key_workspace(world: World) -> None:
    from backend.api.app import app

    client = TestClient(app)
    res = client.get("/v1/models", headers={"Authorization": f"Bearer {world.key_a_builder}"})
    assert res.status_code == 200
    body = res.json()
    assert body["object"] == "list"
    names = {m["id"] for m in body["data"]}
    assert world.model_a in names and world.model_b not in names
    res = client.get(f"/v1/models/{world.model_b}",
                     headers={"Authorization": f"Bearer {world.key_a_builder}"})
    assert res.status_code == 404 and res.json()["error"]["code"] == "model_not_found"
    b_builder = make_key(make_user(Role.builder, [world.ws_b], prefix="b-builder"), world.ws_b)
    res = client.get(f"/v1/models/{world.model_b}",
                     headers={"Authorization": f"Bearer {b_builder}"})
    assert res.status_code == 200 and res.json()["id"] == world.model_b


def test_api_user_key_sees_and_uses_bots_only(world: World) -> None:
    """A user-role key lists the workspace's published bots, no model; chatting with a model
    directly is a 403 in OpenAI's error format, and the models' cards are not found."""
    from backend.api.app import app

    bot = _published_agent(world)
    client = TestClient(app)
    auth = {"Authorization": f"Bearer {world.key_a_user}"}
    res = client.get("/v1/models", headers=auth)
    assert res.status_code == 200
    cards = res.json()["data"]
    assert bot.name in {c["id"] for c in cards}
    assert {c["kind"] for c in cards} == {"agent"} and world.model_a not in {c["id"] for c in cards}
    res = client.get(f"/v1/models/{world.model_a}", headers=auth)
    assert res.status_code == 404 and res.json()["error"]["code"] == "model_not_found"
    assert client.get(f"/v1/models/{bot.name}", headers=auth).json()["kind"] == "agent"
    res = client.post("/v1/chat/completions", headers=auth, json={
        "model": world.model_a, "messages": [{"role": "user", "content": "hi"}]})
    assert res.status_code == 403, res.text
    err = res.json()["error"]
    assert err["code"] == "permission_denied" and "published bots" in err["message"]
    # the CLI with the same key refuses the builder's reads too
    code, out = _cli("models", "list", "--json", key=world.key_a_user)
    assert code == 1 and "needs the builder role" in out["error"]


def test_api_refuses_missing_bad_and_revoked_keys(world: World) -> None:
    from backend.api.app import app

    client = TestClient(app)
    res = client.get("/v1/models")
    assert res.status_code == 401 and res.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in res.json()["error"]["message"]
    res = client.get("/v1/models", headers={"Authorization": "Basic abc"})
    assert res.status_code == 401 and res.json()["error"]["code"] == \
        "invalid_authorization_header"
    res = client.get("/v1/models", headers={"Authorization": "Bearer sk-studio-nope"})
    assert res.status_code == 401 and "not valid" in res.json()["error"]["message"]
    user = make_user(Role.user, [world.ws_a])
    made = accounts.create_api_key(actor=SYSTEM, user_id=user.id, workspace_id=world.ws_a)
    ok = client.get("/v1/models", headers={"Authorization": f"Bearer {made.key}"})
    assert ok.status_code == 200
    accounts.revoke_api_key(actor=SYSTEM, key_id=made.view.id)
    res = client.get("/v1/models", headers={"Authorization": f"Bearer {made.key}"})
    assert res.status_code == 401 and "revoked" in res.json()["error"]["message"]
    assert client.get("/health").status_code == 200  # the one open route
