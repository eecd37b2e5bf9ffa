"""Story: a builder fine-tunes a model by point and click: the fine-tune wizard → a base model →
a small JSONL dataset uploaded in the page (its name filled in from the file) → training started
from the page → the loss live on the page → evaluation (base and tuned answers) → the model
registered → "Try it in the playground" opens the playground with that model chosen."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser import ui


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ft-data") / "team-faq.jsonl"
    rows = [{"instruction": f"What colour is crate {i}?", "output": f"Crate {i} is blue."}
            for i in range(12)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _step(page: Any, label: str) -> None:
    """Click a step of the wizard's step bar."""
    ui.main(page).get_by_test_id("stButtonGroup").get_by_text(label, exact=True).first.click()
    ui.settle(page)
    ui.shot(page, f"step-{label}")


def test_upload_train_evaluate_deploy_try(studio: Any, admin: tuple[str, str], page: Any,
                                          examples: Path) -> None:
    studio.cli("models", "add-tiny", "ft-base")
    ui.goto(page, studio)
    ui.login(page, *admin)
    ui.nav(page, "Fine-tune")
    main = ui.main(page)

    # 1. the base model
    ui.choose(page, "Base model", "ft-base")
    main.get_by_text("LlamaForCausalLM").first.wait_for()
    # clicking the active step keeps it (it used to empty the picker and jump to step 1)
    _step(page, "1 · Choose a model")
    assert "Choose the base model" in ui.text_of(page)
    _step(page, "2 · Prepare data")  # through the step bar, as the person did

    # 2. the data, uploaded in the page: the name comes from the file
    assert "Choose a base model in step 1" not in ui.text_of(page)
    ui.upload(page, "Examples file", examples)
    name_box = main.get_by_label("Dataset name", exact=True).first
    assert name_box.input_value() == "team-faq"
    ui.button(page, "Check and add", timeout_s=120)
    ui.wait_for_text(page, "Saved team-faq version 1 with 12 records.")
    text = ui.text_of(page)
    assert "No dataset yet" not in text and "Choose a base model in step 1" not in text
    main.get_by_text("How the model sees the examples").first.wait_for()  # the preview
    _step(page, "3 · Train")

    # 3. train from the page, few steps
    text = ui.text_of(page)
    assert "Choose a base model (step 1) and a dataset (step 2) first" not in text
    assert "Base model ft-base, dataset team-faq." in text
    main.get_by_text("Quick: one pass, small adapter", exact=True).first.click()
    ui.settle(page)
    ui.fill(page, "Name of the fine-tuned model", "ft-tuned")
    ui.button(page, "Start training")
    ui.wait_for_text(page, re.compile(r"Training started as job #\d+"))
    # the loss shows live while it trains (or once it has finished, on a fast machine)
    ui.wait_for_text(page, re.compile(r"Latest Training loss: [\d.]+ at step \d+"), timeout_s=300)
    assert not ui.errors_shown(page)

    # 4. evaluate: the run ends, with the base and tuned answers side by side
    ui.button(page, "Next: evaluate")
    ui.wait_for_text(page, "Answers before and after", timeout_s=400)
    text = ui.text_of(page)
    assert "Succeeded" in text or "succeeded" in text
    assert "Perplexity" in text
    ui.shot(page, "evaluated")

    # 5. deploy: registered, then tried in the playground with that model chosen
    ui.button(page, "Next: deploy")
    ui.wait_for_text(page, "is registered and ready to use")
    assert "ft-tuned" in ui.text_of(page)
    main.get_by_role("link", name=re.compile("Try it in the playground")).click()
    ui.settle(page)
    ui.shot(page, "playground")
    assert "/playground" in page.url
    picked = ui.main(page).get_by_test_id("stSelectbox").filter(has_text="ft-tuned")
    chips = ui.main(page).get_by_test_id("stMultiSelect").filter(has_text="ft-tuned")
    assert picked.count() or chips.count(), "the playground does not show ft-tuned as chosen"
    assert not ui.errors_shown(page)
