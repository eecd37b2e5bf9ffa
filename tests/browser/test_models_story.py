"""Story: a builder with a playground draft open picks a model on the Models page, tries it (one
click on Send answers, and so does Ctrl+Enter in the box), then opens it in the playground: the
playground shows that model, and the draft is still there."""

from __future__ import annotations

import re
from typing import Any

from tests.browser import ui

FIRST, PICKED = "story-a-tiny", "story-b-tiny"


def _selected(page: Any, label: str, nth: int = 0) -> str:
    box = ui.main(page).get_by_label(label, exact=True).filter(visible=True).nth(nth)
    value = str(box.evaluate("e => (e.value !== undefined ? e.value : '') || e.innerText || ''"))
    if not value.strip():
        value = str(box.locator("xpath=ancestor::*[@data-testid='stSelectbox'][1]").inner_text())
        value = value.replace(label, "", 1)
    return value.strip()


def test_try_a_model_with_one_click_then_open_it_in_the_playground(
        studio: Any, admin: tuple[str, str], page: Any) -> None:
    studio.cli("models", "add-tiny", FIRST)
    studio.cli("models", "add-tiny", PICKED, "--seed", "2")
    ui.goto(page, studio)
    ui.login(page, *admin)
    main = ui.main(page)

    # a draft in the playground first
    ui.nav(page, "Playground")
    ui.fill(page, "User message template", "Draft about {{ topic }}")
    ui.fill(page, "topic", "tea")

    ui.nav(page, "Models")
    ui.choose(page, "Model", PICKED, exact=True, within=main)
    assert _selected(page, "Model") == PICKED
    # straight after typing, without leaving the box: one click sends
    ui.try_model(page, "Hello, who are you?", name="answered-by-click")
    assert not ui.errors_shown(page)
    # Ctrl+Enter in the box sends too
    box = main.get_by_label("Prompt")
    box.fill("And what is tea?")
    box.press("Control+Enter")
    ui.settle(page, timeout_s=120)
    main.get_by_text("You: And what is tea?").wait_for(timeout=120_000)
    main.get_by_text("tokens in").first.wait_for(timeout=120_000)
    ui.shot(page, "answered-by-ctrl-enter")

    main.get_by_role("link", name=re.compile("Try it in the playground")).click()
    ui.settle(page)
    ui.shot(page, "playground-with-the-model")
    assert "/playground" in page.url
    assert _selected(page, "Model") == PICKED
    assert f"{PICKED} is selected" in ui.text_of(page)
    assert str(main.get_by_label("User message template", exact=True).input_value()) == \
        "Draft about {{ topic }}"
    assert str(main.get_by_label("topic", exact=True).input_value()) == "tea"
    assert not ui.errors_shown(page)
