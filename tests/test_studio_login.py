"""The studio's login gate under AppTest: first admin on first start, login, wrong password,
lockout, expiry, logout, the workspace switcher and the admin page."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from backend.accounts import tokens
from backend.accounts.actor import Actor, Role
from backend.db import get_engine
from backend.services import accounts
from tests.accounts_helpers import PASSWORD, actor_of, make_user, make_workspace, unique

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "studio" / "app.py")
ADMIN_PAGE = str(ROOT / "studio" / "pages" / "admin.py")
ACCOUNT_PAGE = str(ROOT / "studio" / "pages" / "account.py")
TIMEOUT = 60


def _texts(at: AppTest) -> str:
    parts = [e.value for kind in ("title", "markdown", "caption", "error", "info", "success",
                                  "warning") for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def _next_run(at: AppTest) -> AppTest:
    """The same browser session's next run, through ``app.py``. (AppTest 1.67 reruns only the
    page script once a file page is showing; a real server always runs ``app.py`` first.)"""
    nxt = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key in at.session_state:
        nxt.session_state[key] = at.session_state[key]
    return nxt.run()


def _login(at: AppTest, username: str, password: str) -> AppTest:
    at.text_input(key="login_username").input(username)
    at.text_input(key="login_password").input(password)
    return at.button(key="login_submit").click().run()


@pytest.fixture(scope="module")
def an_admin() -> accounts.UserView:
    """An admin exists, so the app shows the login form (not the first-admin form)."""
    return make_user(Role.admin)


def test_first_start_asks_for_the_first_admin(fresh_database: str) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert "Create the first admin" in _texts(at)
    at.text_input(key="first_admin_username").input("boss")
    at.text_input(key="first_admin_password").input(PASSWORD)
    at.text_input(key="first_admin_again").input(PASSWORD + "x")
    at.button(key="first_admin_submit").click().run()
    assert "The two passwords differ" in _texts(at)
    assert accounts.needs_first_admin()
    at.text_input(key="first_admin_again").input(PASSWORD)
    at.button(key="first_admin_submit").click().run()
    assert not at.exception, [e.value for e in at.exception]
    actor = at.session_state["actor"]
    assert actor.username == "boss" and actor.is_admin
    assert "Logged in as boss" in " ".join(c.value for c in at.sidebar.caption)
    assert not accounts.needs_first_admin()


def test_login_wrong_password_then_right_then_logout(an_admin: accounts.UserView) -> None:
    user = make_user(Role.builder)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert "Log in to LLM Studio" in _texts(at)
    assert "actor" not in at.session_state
    _login(at, user.username, "not the password")
    assert "Wrong user name or password." in [e.value for e in at.error]
    assert "actor" not in at.session_state
    _login(at, user.username, PASSWORD)
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["actor"] == actor_of(user, 1)
    token = at.session_state["session_token"]
    assert accounts.resume_session(token) is not None
    at.button(key="logout_button").click().run()
    assert "actor" not in at.session_state
    assert accounts.resume_session(token) is None
    assert "Log in to LLM Studio" in _texts(_next_run(at))


def test_wrong_passwords_lock_the_login_form(an_admin: accounts.UserView) -> None:
    user = make_user()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    for _ in range(5):
        _login(at, user.username, "wrong password")
    _login(at, user.username, PASSWORD)
    assert any("Try again in 5 minutes" in e.value for e in at.error)
    assert "actor" not in at.session_state


def test_expired_login_goes_back_to_the_login_form(an_admin: accounts.UserView) -> None:
    user = make_user()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    _login(at, user.username, PASSWORD)
    assert at.session_state["actor"].user_id == user.id
    with get_engine().begin() as conn:
        conn.execute(text("UPDATE studio_sessions SET expires_at = now() - interval '1 minute' "
                          "WHERE token_hash = :h"),
                     {"h": tokens.digest(at.session_state["session_token"])})
    at = _next_run(at)
    assert "actor" not in at.session_state
    assert "Your login has expired" in _texts(at)


def test_workspace_switcher(an_admin: accounts.UserView) -> None:
    ws = make_workspace("switch")
    user = make_user(Role.user, [1, ws])
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    _login(at, user.username, PASSWORD)
    assert at.session_state["actor"].workspace_id == 1
    at.selectbox(key="workspace_switch").select(ws).run()
    assert not at.exception
    assert at.session_state["actor"].workspace_id == ws
    assert accounts.resume_session(at.session_state["session_token"]).actor.workspace_id == ws  # type: ignore[union-attr]


def test_page_without_login_stops_and_with_actor_runs() -> None:
    at = AppTest.from_file(ACCOUNT_PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert "Please log in to use the studio." in _texts(at)
    user = make_user()
    at = AppTest.from_file(ACCOUNT_PAGE, default_timeout=TIMEOUT)
    at.session_state["actor"] = actor_of(user, 1)
    at.run()
    assert not at.exception
    assert user.username in _texts(at)


def test_admin_page_is_for_admins_only() -> None:
    at = AppTest.from_file(ADMIN_PAGE, default_timeout=TIMEOUT)
    at.session_state["actor"] = actor_of(make_user(Role.builder), 1)
    at.run()
    assert "This page is for admins." in [e.value for e in at.error]
    assert not at.tabs


def test_admin_page_creates_a_user_and_shows_the_audit_log() -> None:
    admin = actor_of(make_user(Role.admin), 1)
    at = AppTest.from_file(ADMIN_PAGE, default_timeout=TIMEOUT)
    at.session_state["actor"] = admin
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.label for t in at.tabs] == ["Users", "Workspaces", "API keys", "Secrets",
                                          "Audit log"]
    name = unique("via-page")
    at.text_input(key="admin_new_user_name").input(name)
    at.text_input(key="admin_new_user_pw").input(PASSWORD)
    at.selectbox(key="admin_new_user_role").select("builder")
    at.button(key="FormSubmitter:admin_new_user-Add the user").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert f"User {name} added." in [s.value for s in at.success]
    made = accounts.find_user(actor=Actor.system(), username=name)
    assert made.role == "builder"
    at.session_state["admin_tab:next"] = "audit"  # the Audit log tab
    at.run()
    at.text_input(key="audit_search").input(name).run()
    assert not at.exception
    audit_table = at.dataframe[-1].value
    assert any(name in str(v) for v in audit_table.to_numpy().ravel())


def test_admin_page_makes_a_bot_limited_key_and_keeps_it_on_its_tab() -> None:
    """The key form has a bot and a rate; after "Create the key" the page stays on the API keys
    tab and shows the key (once) until the admin says it is copied."""
    from backend.services import agents, models

    admin = actor_of(make_user(Role.admin), 1)
    owner = Actor.system(1)
    model = models.add_openai_model(actor=owner, name=unique("key-model"),
                                    base_url="http://127.0.0.1:9/v1", remote_model="x")
    bot = agents.create_agent(actor=owner, name=unique("key-bot"), config={"model": model.name})
    agents.publish_agent(actor=owner, agent=bot.id)
    user = make_user(Role.user, [1], prefix="key-user")
    at = AppTest.from_file(ADMIN_PAGE, default_timeout=TIMEOUT)
    at.session_state["actor"] = admin
    at.session_state["admin_tab:next"] = "keys"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.selectbox(key="admin_key_user").select(user.id)
    at.selectbox(key="admin_key_bot").select(bot.name)
    at.number_input(key="admin_key_rate").set_value(60)
    at.text_input(key="admin_key_name").input("support widget")
    at.button(key="admin_key_create").click().run()
    assert not at.exception, [e.value for e in at.exception]
    key = at.code[0].value
    assert key.startswith("sk-studio-")
    assert any("Copy the new key now" in w.value for w in at.warning)
    assert any(bot.name in c.value and "60" in c.value for c in at.caption)
    assert at.session_state["admin_tab"] == "API keys"  # still on its tab
    limit = agents.key_limit(key)
    assert limit is not None and limit.agent == bot.name and limit.rate_per_min == 60
    assert accounts.actor_for_api_key(key).username == user.username
    at.run()  # another rerun (any click elsewhere): the key is still there
    assert at.code and at.code[0].value == key
    at.button(key="admin_new_key_done").click().run()
    assert not at.exception
    assert not [c for c in at.code if c.value == key]


def test_navigation_shows_admin_only_to_admins(an_admin: accounts.UserView) -> None:
    builder = make_user(Role.builder)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    _login(at, builder.username, PASSWORD)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("pages/admin.py")  # builders have no Admin page
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    _login(at, an_admin.username, PASSWORD)
    at.switch_page("pages/admin.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Admin" in [t.value for t in at.title]


def test_navigation_offers_a_user_only_the_users_pages(an_admin: accounts.UserView) -> None:
    """A user-role account gets Home, Chat, Jobs and My account; the builders' pages are not
    registered for it at all, so neither a link nor an address opens them."""
    user = make_user(Role.user)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    _login(at, user.username, PASSWORD)
    for page in ("playground", "knowledge", "agents", "finetune", "pretrain", "models",
                 "settings", "admin"):
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(f"pages/{page}.py")
    for page in ("home", "chat", "jobs", "account"):
        nxt = _next_run(at)
        nxt.switch_page(f"pages/{page}.py").run()
        assert not nxt.exception, (page, [e.value for e in nxt.exception])
        assert not nxt.error, (page, [e.value for e in nxt.error])


def _html(at: AppTest) -> str:
    return "\n".join(str(getattr(e, "proto", e)) for e in at.sidebar.get("html"))


def test_login_is_kept_in_a_cookie_and_logout_clears_it(an_admin: accounts.UserView) -> None:
    user = make_user(Role.builder)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    _login(at, user.username, PASSWORD)
    token = at.session_state["session_token"]
    written = _html(at) + _html(_next_run(at))
    assert f"studio_session={token}; path=/; max-age=" in written
    assert "SameSite=Strict" in written
    logout = [b for b in at.sidebar.button if b.label == "Log out"]
    assert logout, [b.label for b in at.sidebar.button]
    logout[0].click().run()
    assert "actor" not in at.session_state
    assert "studio_session=; path=/; max-age=0" in _html(at) + _html(_next_run(at))
    assert accounts.resume_session(token) is None  # the old cookie is worthless now
