"""Story: a builder makes a knowledge base from a small generated HTML manual (15 pages that
share a banner, a "Prev | Up | Next | Home" table and a footer), watches it being indexed, and
asks it a question in the retrieval test: the right page comes first, no navigation text is
cited, and each hit shows a relevance a person can read, in the order shown."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from tests.browser import ui
from tests.knowledge_files import NAVIGATION_TEXT, manual_pages


def _metric(page: Any, label: str) -> str:
    box = ui.main(page).get_by_test_id("stMetric").filter(has_text=label).first
    return str(box.get_by_test_id("stMetricValue").inner_text()).strip()


def _open_tab(page: Any) -> str:
    return str(page.get_by_role("tab", selected=True).first.inner_text()).strip()


def test_knowledge_base_from_an_html_manual(studio: Any, admin: tuple[str, str], page: Any,
                                            tmp_path: Path) -> None:
    files = []
    for name, data in manual_pages().items():
        (tmp_path / name).write_bytes(data)
        files.append(tmp_path / name)

    ui.goto(page, studio)
    ui.login(page, *admin)
    ui.nav(page, "Knowledge")
    ui.fill(page, "Name", "Gadget manual")
    ui.button(page, "Create the knowledge base")
    ui.wait_for_text(page, "Upload documents next")
    # a new base goes on to its Upload tab
    assert _open_tab(page) == "Upload"
    assert _metric(page, "Documents") == "0"

    ui.upload(page, "Files: PDF", files)
    ui.button(page, "Upload and index")
    # the page stays on the tab the person is working in
    assert _open_tab(page) == "Upload"
    main = ui.main(page)
    # progress shows, and the counters follow the job without a reload (0 before the upload;
    # a small upload may be done before the first look)
    seen: list[tuple[str, str, str]] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        text = ui.text_of(page)
        seen.append((_metric(page, "Documents"), _metric(page, "Chunks"),
                     "file " if re.search(r"file \d+/15", text) else ""))
        if seen[-1][0] == "15" and "done: 15 indexed, 0 failed" in text:
            break
        time.sleep(0.5)
    ui.shot(page, "indexed")
    assert seen[-1][0] == "15", seen
    assert int(seen[-1][1].replace(",", "")) >= 15, seen
    assert any(s[2] for s in seen) or len(seen) < 4, "no per-file progress was shown"
    assert _open_tab(page) == "Upload"
    assert "Failed" not in main.get_by_test_id("stDataFrame").first.inner_text()

    ui.tab(page, "Retrieval test")
    ui.fill(page, "Question", "How long are backups kept before they are deleted?")
    ui.wait_for_text(page, re.compile(r"relevance \d+%"))
    ui.shot(page, "retrieval")
    assert _open_tab(page) == "Retrieval test"
    text = ui.text_of(page)
    results = text[text.index("1. "):]
    hits = re.findall(r"(?m)^(\d+)\. (\S+\.html).*?relevance (\d+)%", results)
    assert hits, results[:2000]
    assert hits[0][1] == "backup.html", hits
    shown = [int(h[2]) for h in hits]
    assert shown == sorted(shown, reverse=True) and 0 < shown[0] <= 100, hits
    for junk in NAVIGATION_TEXT:
        assert junk not in results, (junk, results[:3000])
    assert not ui.errors_shown(page)
