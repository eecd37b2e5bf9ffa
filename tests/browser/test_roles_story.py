"""Stories: roles, API keys and share links.

1. An admin adds a user-role account and, on the Admin page's API keys tab, a key for one bot with
   a rate: the page stays on that tab and shows the key until the admin says it is copied. The
   user then logs in and sees only Home, Chat, Jobs and My account; the playground's address
   does not open the playground. Over the API the key lists that bot only.
2. A bot's share link opened by someone not logged in shows the login form (no "Page not found"),
   the login lands on the bot's chat, and a reload stays there.

The bot is seeded through the CLI (the tiny demo model, an agent published at once)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

from tests.browser import ui

BOT = "pg-helper"
USER, USER_PW = "ann", "ann-password-1"


def _seed_bot(studio: Any) -> None:
    if BOT in studio.cli("agents", "list").stdout:
        return
    studio.cli("models", "add-tiny", "demo")
    studio.cli("agents", "create", BOT, "--model", "demo", "--publish")


def _no_page_not_found(page: Any) -> None:
    assert not page.get_by_text("Page not found").count(), ui.shot(page, "page-not-found")


def _on_the_bots_address(page: Any) -> None:
    url = urlparse(page.url)
    assert url.path == "/chat" and parse_qs(url.query).get("bot") == [BOT], page.url


def _heading(page: Any, text: str) -> Any:
    return ui.main(page).get_by_role("heading", name=text)


def test_admin_makes_a_user_and_a_bot_key_and_the_user_sees_only_the_users_pages(
        studio: Any, admin: tuple[str, str], page: Any) -> None:
    _seed_bot(studio)
    ui.goto(page, studio)
    ui.login(page, *admin)
    ui.nav(page, "Admin")

    # a user-role account, from the Users tab
    page.get_by_text("Add a user", exact=True).filter(visible=True).first.click()
    form = page.get_by_test_id("stForm").filter(has_text="Add the user")
    ui.fill(page, "User name", USER, within=form)
    ui.fill(page, "Password", USER_PW, within=form)
    ui.choose(page, "Role", "User", exact=True, within=form)
    ui.button(page, "Add the user", within=form)
    ui.wait_for_text(page, f"User {USER} added.")

    # a key for the bot with a rate, from the API keys tab
    ui.tab(page, "API keys")
    ui.choose(page, "User", USER, exact=True)
    ui.choose(page, "Bot", BOT, exact=True)
    ui.fill(page, "Requests a minute", "60")
    ui.fill(page, "What it is for", "support widget")
    ui.button(page, "Create the key")
    ui.wait_for_text(page, "Copy the new key now")
    selected = page.get_by_role("tab", selected=True).filter(visible=True)
    assert selected.first.inner_text().strip() == "API keys", ui.shot(page, "tab-jumped")
    key = re.search(r"sk-studio-[A-Za-z0-9_\-]+", ui.text_of(page))
    assert key, ui.text_of(page)
    assert f"for the bot {BOT} only, at most 60 requests a minute" in ui.text_of(page)
    # the page reruns (the admin types elsewhere on the tab): the key is still shown
    ui.fill(page, "What it is for", "another")
    assert key.group(0) in ui.text_of(page)
    ui.button(page, "I have copied the key")
    assert key.group(0) not in ui.text_of(page)
    assert not ui.errors_shown(page)

    # over the API the key sees the bot only, and reaches nothing else
    auth = {"Authorization": f"Bearer {key.group(0)}"}
    listed = httpx.get(f"{studio.api_url}/models", headers=auth, timeout=60)
    assert listed.status_code == 200, listed.text
    assert [m["id"] for m in listed.json()["data"]] == [BOT]
    raw = httpx.post(f"{studio.api_url}/chat/completions", headers=auth, timeout=60, json={
        "model": "demo", "messages": [{"role": "user", "content": "hi"}]})
    assert raw.status_code in (403, 404), raw.text

    # the user logs in: the users' pages only
    ui.logout(page)
    ui.login(page, USER, USER_PW)
    assert ui.nav_titles(page) == ["Home", "Chat", "Jobs", "My account"], ui.nav_titles(page)
    ui.goto(page, studio, "playground", name="user-opens-playground")
    _no_page_not_found(page)
    ui.wait_for_text(page, "This page needs the builder role")
    assert not _heading(page, "Playground").count(), ui.shot(page, "playground-shown")
    assert not page.get_by_role("textbox").filter(visible=True).count()  # no prompt editor
    assert ui.nav_titles(page) == ["Home", "Chat", "Jobs", "My account"]
    ui.nav(page, "Chat")
    _heading(page, f"🤖 {BOT}").or_(_heading(page, BOT)).first.wait_for()
    assert not ui.errors_shown(page)


def test_share_link_survives_the_login_and_a_reload(studio: Any, admin: tuple[str, str],
                                                    page: Any) -> None:
    _seed_bot(studio)
    viewer, viewer_pw = "viewer", "viewer-password-1"
    if viewer not in studio.cli("users", "list").stdout:
        studio.cli("users", "create", viewer, "--password-stdin", input=viewer_pw + "\n")

    ui.goto(page, studio, f"chat?bot={BOT}", name="share-link-logged-out")
    _no_page_not_found(page)
    ui.main(page).get_by_role("heading", name="Log in to LLM Studio").wait_for()
    ui.login(page, viewer, viewer_pw)
    _no_page_not_found(page)
    _on_the_bots_address(page)
    _heading(page, "Chat").wait_for()
    ui.main(page).get_by_role("heading", name=re.compile(re.escape(BOT))).wait_for()
    assert ui.nav_titles(page) == ["Home", "Chat", "Jobs", "My account"]

    page.reload()
    page.wait_for_selector('[data-testid="stApp"]')
    ui.settle(page)
    ui.shot(page, "reloaded")
    _no_page_not_found(page)
    assert not page.get_by_role("heading", name="Log in to LLM Studio").count()
    _heading(page, "Chat").wait_for()
    ui.main(page).get_by_role("heading", name=re.compile(re.escape(BOT))).wait_for()
    _on_the_bots_address(page)
