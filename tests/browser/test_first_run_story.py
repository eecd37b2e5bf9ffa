"""Story: a new team opens the studio for the first time, creates the first admin, builds the
tiny demo model on the Models page and tries it, all by point and click."""

from __future__ import annotations

from typing import Any

from tests.browser import ui


def test_first_admin_tiny_model_try_it(studio: Any, page: Any) -> None:
    ui.goto(page, studio)
    main = ui.main(page)
    main.get_by_text("Create the first admin").first.wait_for()
    ui.fill(page, "User name", "owner")
    ui.fill(page, "Password", "first-admin-pw-42")
    ui.fill(page, "Password again", "first-admin-pw-42")
    ui.button(page, "Create the admin")
    page.get_by_test_id("stSidebarNav").wait_for()
    assert "Admin" in ui.nav_titles(page)

    ui.nav(page, "Models")
    assert "No models yet" in ui.text_of(page)
    ui.tab(page, "Tiny demo model")
    ui.fill(page, "Name", "first-tiny", within=page.get_by_test_id("stForm").filter(
        has_text="Build and add"))
    ui.button(page, "Build and add", timeout_s=120)
    ui.wait_for_text(page, "Test its connection below")
    # the new model is picked and its details are open
    assert "first-tiny" in ui.text_of(page)

    # a person clicks Send straight after typing: one click must send
    ui.try_model(page, "Hello, who are you?")
    assert not ui.errors_shown(page)
    # after a reload the login survives (cookie) and the page is still the Models page
    page.reload()
    page.get_by_test_id("stSidebarNav").wait_for()
    ui.settle(page)
    ui.shot(page, "reloaded")
    assert "Models" in ui.text_of(page)
