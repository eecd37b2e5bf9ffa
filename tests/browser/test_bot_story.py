"""Story: a business user builds a bot in three steps on the Agents page over a knowledge base of
a few long pages and the tiny demo model (its context: 1,024 tokens), asks it the first question
on the Chat page, and gets an answer with its sources (no "the prompt has N tokens" error, no
server path anywhere), gives it a thumbs-up that the Feedback tab then lists, and finds the
bot's share link. The model has random weights: the answer is gibberish, so the test asserts
that an answer and its sources exist, not what they say."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.browser import ui

WORDS = ("amber", "birch", "cedar", "delta", "ember", "fjord", "granite", "harbor", "iris",
         "juniper", "kestrel", "lantern", "meadow", "nectar", "orchid", "pebble", "quartz",
         "raven", "saffron", "thistle", "umber", "violet", "willow", "yarrow", "zephyr")
BOT = "handbook-bot"


def _page_text(i: int) -> str:
    """A long page with words of its own (pages sharing text would be dropped as boilerplate):
    the top passages of five such pages hold about 2,000 of the tiny model's tokens."""
    w = WORDS
    return f"# Garage {w[i]}\n\n" + " ".join(
        f"In the {w[(i * 7 + j) % 25]} wing the gate opens with the {w[(i + j * 3) % 25]} card, "
        f"and {w[(i * j + 5) % 25]} visitors park by the {w[(i * 11 + j * 2) % 25]} stairs."
        for j in range(40))


def test_bot_in_three_steps_answers_with_sources_feedback_and_share_link(
        studio: Any, admin: tuple[str, str], page: Any, tmp_path: Path) -> None:
    # what the story starts from, seeded through the CLI: the demo model, a knowledge base,
    # side by side with the first steps on the page (the ingest waits for the worker's embedder)
    files = []
    for i in range(1, 6):
        path = tmp_path / f"garage{i}.md"
        path.write_text(_page_text(i))
        files.append(str(path))
    pool = ThreadPoolExecutor(3)
    made_model = pool.submit(studio.cli, "models", "add-tiny", "demo")
    made_kb = pool.submit(studio.cli, "kb", "create", "Handbook")
    ingested = pool.submit(lambda: (made_kb.result(), studio.cli(
        "kb", "ingest", "Handbook", *files, "--wait")))
    pool.shutdown(wait=False)

    ui.goto(page, studio)
    ui.login(page, *admin)
    made_model.result()
    made_kb.result()
    ui.nav(page, "Agents")
    ui.tab(page, "Bot in three steps")
    ui.choose(page, "Step 1: knowledge base", "Handbook")
    ui.choose(page, "Step 2: model", "demo")
    ui.fill(page, "Step 3: the bot's name", BOT)
    # the advanced section holds the passages to retrieve and the context budget
    page.get_by_text("Advanced", exact=True).filter(visible=True).first.click()
    ui.fill(page, "Passages to retrieve (top-k)", "5")
    assert page.get_by_label("Context budget in tokens (0: the model's whole context)",
                             exact=True).filter(visible=True).count() == 1
    ui.button(page, "Create and publish the bot")
    ui.wait_for_text(page, f"{BOT} is ready to chat and to share.")
    # the share link is shown with the result
    shown = ui.text_of(page)
    assert re.search(rf"https?://\S+/chat\?bot={BOT}", shown), shown[-1500:]

    # a short answer keeps the story quick (random weights say nothing in any length): the
    # CLI changes the bot's longest answer
    studio.cli("agents", "update", BOT, "--max-new-tokens", "24", "--publish")

    page.get_by_role("link", name=f"Chat with {BOT}").first.click()
    ui.settle(page)
    ui.shot(page, "chat-page")
    assert "bot=" + BOT in page.url

    ingested.result()  # the documents are in before the first question
    ui.chat(page, "How does the gate of the garage open?")
    answer = ui.main(page).get_by_test_id("stChatMessage").last
    answer.wait_for()
    ui.wait_for_text(page, re.compile(r"^Sources \(\d\)$"), timeout_s=180)
    ui.shot(page, "answered")
    text = ui.text_of(page)
    assert not ui.errors_shown(page), ui.errors_shown(page)
    assert "reads at most" not in text and "tokens but the model" not in text
    assert str(studio.data_dir) not in text and "/models/tiny/" not in text
    assert str(answer.inner_text()).strip(), "the answer is empty"
    n = int(re.search(r"Sources \((\d)\)", text).group(1))  # type: ignore[union-attr]
    assert 1 <= n <= 5
    # the sources open on a click and name the uploaded files
    page.get_by_text(re.compile(r"^Sources \(\d\)$")).first.click()
    ui.settle(page)
    assert re.search(r"\[1\] garage\d\.md", ui.text_of(page)), ui.text_of(page)[-1500:]

    # thumbs up, recorded: the Agents page's usage counts it
    ui.button(page, "👍", within=answer)
    ui.shot(page, "thumbs")
    assert not ui.errors_shown(page)
    ui.nav(page, "Agents")
    page.get_by_role("tab", name="Usage").first.wait_for()
    ui.tab(page, "Usage")
    thumbs = ui.main(page).get_by_test_id("stMetric").filter(visible=True).filter(
        has_text="👍").first
    thumbs.wait_for()
    assert str(thumbs.get_by_test_id("stMetricValue").inner_text()).strip() == "1"

    # the Chat page's Share button shows the same link
    ui.nav(page, "Chat")
    page.get_by_role("button", name="Share").first.wait_for()
    ui.button(page, "Share")
    link = page.get_by_test_id("stCode").filter(visible=True).first
    link.wait_for()
    url = str(link.inner_text()).strip()
    assert re.fullmatch(rf"https?://\S+/chat\?bot={BOT}", url), url
    ui.shot(page, "share-link")
    # the link opens the bot's chat (this visitor is logged in; logged-out visitors are the
    # share-link story's)
    page.goto(url)
    ui.settle(page)
    ui.shot(page, "share-link-opened")
    assert BOT in ui.text_of(page) and not ui.errors_shown(page)
