"""An agent names its model, knowledge bases and saved prompt in its own workspace (issue 23,
item 3): one that does not exist there, or that another workspace owns, is refused when the
agent is created or changed, with the reason, not when it first runs."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from backend.accounts.actor import Role
from backend.services import agents, knowledge, models, prompts
from tests.accounts_helpers import actor_of, make_user, make_workspace


@pytest.fixture(scope="module")
def two(tiny_model_dir: Path) -> dict[str, Any]:
    a, b = make_workspace("refsA"), make_workspace("refsB")
    builder = actor_of(make_user(Role.builder, [a], prefix="refs-builder"), a)
    admin = actor_of(make_user(Role.admin, [a], prefix="refs-admin"), a)
    other = actor_of(make_user(Role.builder, [b], prefix="refs-other"), b)
    tag = uuid.uuid4().hex[:6]
    model = models.add_local_model(actor=builder, name=f"tiny-{tag}", source=str(tiny_model_dir))
    their_model = models.add_local_model(actor=other, name=f"theirs-{tag}",
                                         source=str(tiny_model_dir))
    kb = knowledge.create_knowledge_base(actor=builder, name=f"ours-{tag}")
    their_kb = knowledge.create_knowledge_base(actor=other, name=f"theirs-{tag}")
    prompts.create_prompt(actor=builder, name=f"ours-{tag}", template="{{ question }}",
                          system="Ours.")
    prompts.create_prompt(actor=other, name=f"theirs-{tag}", template="{{ question }}",
                          system="Theirs.")
    their_prompt = prompts.get_prompt(actor=other, name=f"theirs-{tag}")
    return {"builder": builder, "admin": admin, "model": model, "their_model": their_model,
            "kb": kb, "their_kb": their_kb, "prompt": f"ours-{tag}",
            "their_prompt": their_prompt}


def _create(actor: Any, **cfg: Any) -> agents.AgentView:
    return agents.create_agent(actor=actor, name=f"ag-{uuid.uuid4().hex[:6]}", config=cfg)


def test_a_missing_knowledge_base_or_prompt_is_refused_at_creation(two: dict[str, Any]) -> None:
    m = two["model"].name
    with pytest.raises(agents.AgentError, match="no-such-kb") as err:
        _create(two["builder"], model=m, knowledge_bases=[two["kb"].name, "no-such-kb"])
    assert "knowledge base" in str(err.value) and "studio kb list" in str(err.value)
    with pytest.raises(agents.AgentError, match="no-such-prompt") as err:
        _create(two["builder"], model=m, saved_prompt="no-such-prompt")
    assert "prompt" in str(err.value)
    with pytest.raises(agents.AgentError, match="version 7"):
        _create(two["builder"], model=m, saved_prompt=two["prompt"], saved_prompt_version=7)
    with pytest.raises(agents.AgentError, match="no-such-kb"):
        agents.create_bot(actor=two["builder"], name=f"bot-{uuid.uuid4().hex[:6]}", model=m,
                          knowledge_bases=["no-such-kb"])


@pytest.mark.parametrize("who", ["builder", "admin"])
def test_another_workspaces_kb_prompt_or_model_is_refused(two: dict[str, Any], who: str) -> None:
    actor, m = two[who], two["model"].name
    for cfg in ({"knowledge_bases": [two["their_kb"].name]},
                {"knowledge_bases": [str(two["their_kb"].id)]},
                {"saved_prompt": two["their_prompt"].name},
                {"saved_prompt": str(two["their_prompt"].id)}):
        with pytest.raises(agents.AgentError, match="this workspace"):
            _create(actor, model=m, **cfg)
    for ref in (two["their_model"].name, str(two["their_model"].id)):
        with pytest.raises(agents.AgentError):
            _create(actor, model=ref)


def test_an_update_is_refused_the_same_way_and_the_draft_is_kept(two: dict[str, Any]) -> None:
    a = _create(two["builder"], model=two["model"].name, knowledge_bases=[two["kb"].name],
                saved_prompt=two["prompt"])
    with pytest.raises(agents.AgentError, match="gone-kb"):
        agents.update_agent(actor=two["builder"], agent=a.id,
                            config={**a.config, "knowledge_bases": ["gone-kb"]})
    with pytest.raises(agents.AgentError, match=str(two["their_kb"].id)):
        agents.update_agent(actor=two["admin"], agent=a.id,
                            config={**a.config, "knowledge_bases": [str(two["their_kb"].id)]})
    assert agents.get_agent(actor=two["builder"], agent=a.id).config["knowledge_bases"] == [
        two["kb"].name]


def test_own_things_named_by_id_are_stored_by_name(two: dict[str, Any]) -> None:
    a = _create(two["admin"], model=str(two["model"].id),
                knowledge_bases=[str(two["kb"].id)], saved_prompt=two["prompt"])
    assert a.config["model"] == two["model"].name
    assert a.config["knowledge_bases"] == [two["kb"].name]


def test_a_stored_config_naming_another_workspaces_kb_by_id_reads_nothing_there(
        two: dict[str, Any]) -> None:
    """A config saved before these checks may still hold an id: at run time an admin's turn
    reads the agent's own workspace only, like anyone else's."""
    from sqlalchemy import update

    from backend.db import session_scope
    from backend.models.agents import Agent
    from tests.agents_helpers import Script

    a = _create(two["builder"], model=two["model"].name)
    with session_scope() as session:
        session.execute(update(Agent).where(Agent.id == a.id).values(config={
            **a.config, "knowledge_bases": [str(two["their_kb"].id)]}))
    with pytest.raises(LookupError, match=str(two["their_kb"].id)):
        agents.run_agent(actor=two["admin"], agent=a.id, question="hi", version="draft",
                         llm=Script("x").model())
