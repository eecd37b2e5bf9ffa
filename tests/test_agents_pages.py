"""The Agents page (builders) and the Chat page (everyone) under AppTest, against the real
database and the tiny local model, in English and Chinese."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from backend.accounts.actor import Role
from backend.services import agents, models
from tests.accounts_helpers import actor_of, make_user, make_workspace

APP = Path(__file__).resolve().parent.parent / "studio" / "app.py"


@pytest.fixture(scope="module")
def place(tiny_model_dir: Path) -> dict[str, Any]:
    wid = make_workspace("pages")
    builder = actor_of(make_user(Role.builder, [wid], prefix="page-builder"), wid)
    user = actor_of(make_user(Role.user, [wid], prefix="page-user"), wid)
    model = models.add_local_model(actor=builder, name=f"tiny-{uuid.uuid4().hex[:6]}",
                                   source=str(tiny_model_dir)).name
    bot = agents.create_agent(actor=builder, name=f"bot-{uuid.uuid4().hex[:4]}",
                              config={"model": model, "params": {"temperature": 0,
                                                                 "max_new_tokens": 6},
                                      "suggestions": ["What can you do?"]})
    agents.publish_agent(actor=builder, agent=bot.id)
    return {"builder": builder, "user": user, "model": model, "bot": bot.name, "bot_id": bot.id}


def _app(actor: Any, page: str, lang: str = "en") -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["actor"] = actor
    at.session_state["lang"] = lang
    at.switch_page(f"pages/{page}.py")
    return at


def test_builder_creates_an_agent_and_tries_it_with_a_trace(place: dict[str, Any]) -> None:
    at = _app(place["builder"], "agents").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["agents_pick"] == place["bot_id"]
    at.selectbox(key="agents_pick").set_value(0).run()  # a new agent
    name = f"made-{uuid.uuid4().hex[:4]}"
    form_inputs = [t for t in at.text_input if t.label == "Name"]
    form_inputs[0].input(name)
    at.button[[b.label for b in at.button].index("Create the agent")].click().run()
    assert not at.exception, [e.value for e in at.exception]
    made = agents.get_agent(actor=place["builder"], agent=name)
    assert made.config["model"] == place["model"]
    assert at.session_state["agents_pick"] == made.id
    at.chat_input(key="build_input").set_value("Hello").run()
    assert not at.exception, [e.value for e in at.exception]
    convs = agents.list_conversations(actor=place["builder"], agent=made.id)
    assert len(convs) == 1 and convs[0].messages == 2
    assert any(e.label.startswith("Trace #") for e in at.expander)
    at.button(key=[b.key for b in at.button if b.label == "Publish"][0]).click().run()
    assert agents.get_agent(actor=place["builder"], agent=made.id).published_version == 1


def test_user_chats_with_published_bots_only(place: dict[str, Any]) -> None:
    at = _app(place["user"], "chat").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="chat_bot").value == place["bot"]
    at.button[[b.label for b in at.button].index("What can you do?")].click().run()
    assert not at.exception, [e.value for e in at.exception]
    mine = agents.list_conversations(actor=place["user"])
    assert [c.title for c in mine] == ["What can you do?"]
    assert not any(e.label.startswith("Trace") for e in at.expander)  # no builder controls
    at = _app(place["user"], "agents").run()
    assert not at.exception and at.info  # builders only


@pytest.mark.parametrize("page", ["agents", "chat"])
def test_pages_render_in_chinese_with_a_bot_open(place: dict[str, Any], page: str) -> None:
    from tests.i18n_walk import untranslated

    at = _app(place["builder"], page, lang="zh_CN").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("\u4e00" <= ch <= "\u9fff" for t in at.title for ch in t.value)
    data = {a.name for a in agents.list_agents(actor=place["builder"])} | {
        place["model"], place["builder"].username, "What can you do?"}
    data |= {f"🤖 {n}" for n in data}
    left = untranslated(at._tree, data=data)
    assert not left, "\n".join(left)


def test_a_question_after_new_conversation_goes_into_the_new_one(place: dict[str, Any]) -> None:
    """Issue 22 finding 10: the picker kept its old pick, so the first question after "New
    conversation" went into the previous conversation."""
    at = _app(place["user"], "chat").run()
    at.chat_input(key="chat_input").set_value("First question").run()
    assert not at.exception, [e.value for e in at.exception]
    first = at.session_state["chat_conversation_" + str(place["bot_id"])]
    at.button(key=f"chat_new_{place['bot_id']}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "chat_conversation_" + str(place["bot_id"]) not in at.session_state
    at.chat_input(key="chat_input").set_value("Second question").run()
    assert not at.exception, [e.value for e in at.exception]
    second = at.session_state["chat_conversation_" + str(place["bot_id"])]
    assert second != first
    titles = {c.id: (c.title, c.messages) for c in agents.list_conversations(
        actor=place["user"], agent=place["bot_id"])}
    assert titles[first] == ("First question", 2) and titles[second] == ("Second question", 2)
    # picking the first one in the history shows it again, and the next question goes there
    at.radio(key=f"chat_hist_{place['bot_id']}").set_value(first).run()
    at.chat_input(key="chat_input").set_value("Third question").run()
    assert not at.exception, [e.value for e in at.exception]
    counts = {c.id: c.messages for c in agents.list_conversations(
        actor=place["user"], agent=place["bot_id"])}
    assert counts[first] == 4 and counts[second] == 2
