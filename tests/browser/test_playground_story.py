"""Story: a builder designs a prompt in the playground by point and click: writes a template with
variables, runs two tiny models side by side, saves two versions and reads their diff, evaluates
the prompt over an uploaded CSV (a column it lacks comes from the editor's value), downloads the
results, visits another page and comes back to the same draft."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

from tests.browser import ui

ALPHA, BETA = "pg-alpha", "pg-beta"


def _selected(page: Any, label: str, nth: int = 0) -> str:
    """The value a visible selectbox shows (the nth one with this label)."""
    box = ui.main(page).get_by_label(label, exact=True).filter(visible=True).nth(nth)
    value = str(box.evaluate("e => (e.value !== undefined ? e.value : '') || e.innerText || ''"))
    if not value.strip():  # the value drawn beside the search box
        value = str(box.locator("xpath=ancestor::*[@data-testid='stSelectbox'][1]").inner_text())
        value = value.replace(label, "", 1)
    return value.strip()


def _multiselected(page: Any, label: str) -> str:
    box = page.get_by_test_id("stMultiSelect").filter(
        has=page.get_by_text(label, exact=True)).filter(visible=True).first
    return str(box.inner_text())


def _value(page: Any, label: str) -> str:
    return str(page.get_by_label(label, exact=True).filter(visible=True).first.input_value())


def test_template_two_models_versions_evaluation_download_and_the_draft_stays(
        studio: Any, admin: tuple[str, str], page: Any, tmp_path: Path) -> None:
    studio.cli("models", "add-tiny", ALPHA)
    studio.cli("models", "add-tiny", BETA, "--seed", "1")
    ui.goto(page, studio)
    ui.login(page, *admin)
    ui.nav(page, "Playground")
    main = ui.main(page)

    # a template with two variables
    ui.fill(page, "System message", "You answer in one short sentence.")
    ui.fill(page, "User message template", "{{ tone }} question: {{ question }}")
    ui.fill(page, "tone", "Friendly")
    ui.fill(page, "question", "What is tea?")

    # two models side by side
    ui.fill(page, "Models side by side", "2")
    for i, model in enumerate((ALPHA, BETA)):
        box = main.get_by_label("Model", exact=True).filter(visible=True).nth(i)
        box.click()
        page.get_by_role("option", name=model, exact=True).first.click()
        ui.settle(page)
    assert _selected(page, "Model", 0) == ALPHA and _selected(page, "Model", 1) == BETA
    for i in (0, 1):  # short answers keep the story fast
        main.get_by_text("Settings", exact=True).nth(i).click()
        ui.fill(page, "Max new tokens", "8", within=main.get_by_test_id("stExpander").filter(
            visible=True).filter(has_text="Temperature").nth(i))
    ui.button(page, "Run the prompt", timeout_s=180)
    main.get_by_text(re.compile(r"\d+ tokens out")).nth(1).wait_for(timeout=180_000)
    heads = ui.text_of(page)
    assert ALPHA in heads and BETA in heads and not ui.errors_shown(page)

    # save two versions and read the diff
    ui.fill(page, "Prompt name", "story-prompt")
    ui.fill(page, "What changed", "first")
    ui.button(page, "Save")
    ui.wait_for_text(page, "Saved story-prompt version 1.")
    ui.fill(page, "User message template", "{{ tone }} question, briefly: {{ question }}")
    ui.fill(page, "What changed", "briefly")
    ui.button(page, "Save")
    ui.wait_for_text(page, "Saved story-prompt version 2.")
    ui.tab(page, "Versions")
    ui.wait_for_text(page, "+++ v2/template")
    diff = ui.text_of(page)
    assert "-{{ tone }} question: {{ question }}" in diff
    assert "+{{ tone }} question, briefly: {{ question }}" in diff

    # batch evaluation over a CSV that has no `tone` column: the editor's value fills it
    ui.tab(page, "Batch evaluation")
    text = ui.text_of(page)
    assert "Runs version 2 of story-prompt" in text, text
    data = tmp_path / "questions.csv"
    data.write_text("question,expected\nWhat is tea?,A drink\nWhat is rain?,Water\n"
                    "What is a cat?,An animal\n")
    ui.upload(page, "Data file", data)
    ui.wait_for_text(page, "3 rows")
    text = ui.text_of(page)
    assert "tone" in text and "Friendly" in text, text  # says which column it fills, with what
    models = _multiselected(page, "Models (1-4)")
    assert ALPHA in models or BETA in models, models  # a model is preselected
    ui.fill(page, "Max new tokens", "4", within=main)
    ui.button(page, "Start the evaluation", timeout_s=120)
    download = main.get_by_role("button", name="Download the results (CSV)")
    download.wait_for(timeout=240_000)
    ui.settle(page)
    ui.shot(page, "evaluated")
    assert "Runs version 2 of story-prompt" in ui.text_of(page)  # still on this tab
    with page.expect_download() as got:
        download.click()
    rows = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text())))
    assert len(rows) == 3 * len(models.split(", ")) or len(rows) >= 3, rows
    assert all("Friendly" in r["variables"] for r in rows), rows[:2]
    assert not ui.errors_shown(page)

    # another page, then back: the draft is where it was
    ui.nav(page, "Models")
    ui.nav(page, "Playground")
    assert _value(page, "System message") == "You answer in one short sentence."
    assert _value(page, "User message template") == "{{ tone }} question, briefly: {{ question }}"
    assert _value(page, "tone") == "Friendly" and _value(page, "question") == "What is tea?"
    assert _value(page, "Models side by side") == "2"
    assert _selected(page, "Model", 0) == ALPHA and _selected(page, "Model", 1) == BETA
    assert _value(page, "Prompt name") == "story-prompt"
    ui.tab(page, "Batch evaluation")
    assert main.get_by_role("button", name="Download the results (CSV)").count() == 1
    assert not ui.errors_shown(page)
