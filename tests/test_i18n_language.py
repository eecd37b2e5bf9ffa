"""Choosing the language: browser default, the sidebar switch, memory per browser and per user;
numbers, dates and durations written the chosen language's way."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from backend.accounts.actor import Actor, Role
from backend.services import accounts
from studio import formatting
from studio.components.language import (
    QUERY_PARAM,
    WIDGET_KEY,
    default_language,
    language_from_accept_header,
)
from studio.i18n import _, current_language, normalize_language, translate, using_language

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "studio" / "app.py")
TIMEOUT = 60


@pytest.mark.parametrize(("tag", "lang"), [
    ("zh-CN", "zh_CN"), ("zh_CN", "zh_CN"), ("zh", "zh_CN"), ("zh-Hans-CN", "zh_CN"),
    ("zh-TW", "zh_CN"), ("en-US", "en"), ("en", "en"), ("fr-FR", None), ("", None), (None, None),
])
def test_normalize_language(tag: str | None, lang: str | None) -> None:
    assert normalize_language(tag) == lang


def test_accept_language_header() -> None:
    assert language_from_accept_header("zh-CN,zh;q=0.9,en;q=0.8") == "zh_CN"
    assert language_from_accept_header("en-US,en;q=0.9,zh-CN;q=0.8") == "en"
    assert language_from_accept_header("fr-FR,fr;q=0.9,zh-CN;q=0.8,en;q=0.7") == "zh_CN"
    assert language_from_accept_header("en;q=0.5, zh;q=0.9") == "zh_CN"
    assert language_from_accept_header("de-DE,fr;q=0.9") is None
    assert language_from_accept_header("zh;q=0") is None
    assert language_from_accept_header(None) is None


def test_default_follows_a_chinese_browser_else_english() -> None:
    assert default_language("zh_CN") == "zh_CN"
    assert default_language("en") == "en"
    assert default_language(None) == "en"


def test_using_language_translates_and_formats() -> None:
    moment = datetime(2026, 3, 5, 14, 30, tzinfo=UTC)
    with using_language("zh_CN"):
        assert current_language() == "zh_CN"
        assert _("Jobs") == "任务"
        assert formatting.format_duration(3725) == "1小时2分钟"
        assert "2026年3月5日" in formatting.format_datetime(moment)
        assert formatting.format_relative(moment - timedelta(minutes=5), now=moment) == "5分钟前"
        assert formatting.format_number(1234567.5) == "1,234,567.5"
        assert formatting.format_percent_value(0.42) == "42%"
    assert current_language() == "en"
    assert _("Jobs") == "Jobs"
    assert formatting.format_duration(3725) == "1 hr 2 min"
    assert formatting.format_datetime(moment).startswith("Mar 5, 2026")
    assert translate("Jobs", "zh_CN") == "任务"


def _app(**state: object) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["actor"] = state.pop("actor", Actor.system())
    for key, value in state.items():
        at.session_state[key] = value
    return at


def test_switch_in_the_sidebar_changes_every_string() -> None:
    # (one interaction per AppTest: under AppTest, a rerun of an st.navigation app drops the
    # entry script's sidebar elements from the tree, so each step starts a fresh session)
    at = _app()
    at.run()
    assert not at.exception
    switch = at.sidebar.selectbox(key=WIDGET_KEY)
    assert switch.value == "en" and switch.options == ["English", "简体中文"]
    assert switch.label == "🌐 Language"
    assert at.query_params[QUERY_PARAM] in ("en", ["en"])

    switch.select("zh_CN").run()
    assert not at.exception
    assert at.session_state["lang"] == "zh_CN"
    assert at.title[0].value == "欢迎使用 LLM Studio"
    assert at.query_params[QUERY_PARAM] in ("zh_CN", ["zh_CN"])

    back = _app(lang="zh_CN")
    back.run()
    assert back.sidebar.selectbox(key=WIDGET_KEY).label == "🌐 语言"
    back.sidebar.selectbox(key=WIDGET_KEY).select("en").run()
    assert not back.exception
    assert back.title[0].value == "Welcome to LLM Studio"
    assert back.query_params[QUERY_PARAM] in ("en", ["en"])


def test_address_remembers_the_browser_choice() -> None:
    """A reload keeps ``?lang=zh_CN``; a new session opened with it starts in Chinese."""
    at = _app()
    at.query_params[QUERY_PARAM] = "zh_CN"
    at.run()
    assert not at.exception
    assert at.session_state["lang"] == "zh_CN"
    assert at.title[0].value == "欢迎使用 LLM Studio"


def test_login_screen_has_the_switch() -> None:
    """Before anyone logs in, the switch is already there (and the login page is translated)."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params[QUERY_PARAM] = "zh_CN"
    at.run()
    assert not at.exception
    assert at.sidebar.selectbox(key=WIDGET_KEY).value == "zh_CN"


@pytest.fixture
def member() -> Actor:
    name = f"lang_{uuid.uuid4().hex[:8]}"
    user = accounts.create_user(actor=Actor.system(), username=name,
                                password="correct horse battery staple 42", role=Role.builder)
    return Actor(user_id=user.id, username=name, role=Role.builder, workspace_id=1)


def test_users_language_follows_them(member: Actor) -> None:
    # first visit: the browser's choice (English) is saved on the account
    at = _app(actor=member)
    at.run()
    assert not at.exception
    assert accounts.get_user_language(actor=member) == "en"

    # the user switches: saved on the account
    at.sidebar.selectbox(key=WIDGET_KEY).select("zh_CN").run()
    assert not at.exception
    assert accounts.get_user_language(actor=member) == "zh_CN"

    # another browser, which last showed English: the account's language wins after login
    other = _app(actor=member)
    other.query_params[QUERY_PARAM] = "en"
    other.run()
    assert not other.exception
    assert other.session_state["lang"] == "zh_CN"
    assert other.sidebar.selectbox(key=WIDGET_KEY).value == "zh_CN"
