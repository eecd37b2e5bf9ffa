"""Story: an admin pre-trains a small model from scratch by point and click: a corpus from
uploaded text files, a tokenizer, a short training run, the model registered, then a chat."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser import ui


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Thirty text files of real English prose (CPython's reference topics, shipped with it)."""
    from pydoc_data.topics import topics

    folder = tmp_path_factory.mktemp("corpus")
    files = []
    for name, text in sorted(topics.items())[:30]:
        path = folder / f"{name}.txt"
        path.write_text(text, encoding="utf-8")
        files.append(path)
    return files


def test_corpus_tokenizer_train_register_chat(studio: Any, admin: tuple[str, str], page: Any,
                                              corpus_files: list[Path]) -> None:
    ui.goto(page, studio)
    ui.login(page, *admin)
    ui.nav(page, "Pre-train")

    # 1. a corpus from 30 uploaded files: the statistics count every file
    ui.fill(page, "Name", "python-docs")
    ui.upload(page, 0, corpus_files)
    ui.button(page, "Build the corpus", timeout_s=180)
    ui.wait_for_text(page, re.compile(r"30 files read"), timeout_s=180)
    assert not re.search(r"\b0 files read", ui.text_of(page))

    # 2. the tokenizer, trained on the corpus and compared
    ui.tab(page, "Tokenizer")
    ui.button(page, "Compare tokenizers", timeout_s=180)
    ui.wait_for_text(page, "Characters per token", timeout_s=120)
    assert not ui.errors_shown(page)

    # 3. a short run of the tiny preset, launched from the page
    ui.tab(page, "Model and launch")
    ui.fill(page, "Steps", "10")
    ui.fill(page, "Name of the model", "docs-gpt")
    ui.button(page, "Launch pre-training")
    ui.wait_for_text(page, re.compile(r"Launched job #\d+"))
    # the person follows the run: it ends registered, and its stage says done
    ui.tab(page, "Runs")
    ui.wait_for_text(page, re.compile(r"Registered the model docs-gpt"), timeout_s=300)
    run_text = ui.text_of(page)
    assert "Registering the model" not in run_text
    assert not ui.errors_shown(page)

    # 4. chat with the new model from the Models page
    ui.nav(page, "Models")
    ui.choose(page, "Model", "docs-gpt")
    ui.try_model(page, "The for statement", name="chatted")
    assert not ui.errors_shown(page)
