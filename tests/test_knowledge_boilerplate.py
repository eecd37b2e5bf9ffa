"""What most pages of one upload share (a generated manual's navigation, banner and footer) is
left out of the index, and no chunk is shorter than a sensible minimum: domain tests on
real-looking HTML, without the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.knowledge.boilerplate import (
    boilerplate_of_files,
    find_boilerplate,
    line_key,
    strip_boilerplate,
)
from backend.knowledge.ingest import prepare
from backend.knowledge.loaders import LINK, DocumentError, ParsedDocument, Section, load_html
from backend.knowledge.splitting import ChunkDraft, merge_short, min_chunk_chars, split_document
from tests.knowledge_files import MANUAL_TOPICS, NAVIGATION_TEXT, manual_pages


def _docs() -> dict[str, ParsedDocument]:
    return {name: load_html(data, name) for name, data in manual_pages().items()}


def test_a_pages_own_navigation_lines_are_dropped_by_the_loader_alone() -> None:
    """One page, no other to compare with: lines made of links and navigation words go."""
    doc = load_html(manual_pages()["backup.html"], "backup.html")
    text = "\n".join(s.text for s in doc.sections)
    assert "Backups are kept for\nfourteen days" in text or "fourteen days" in text
    for line in text.split("\n"):
        assert line.strip() not in ("Prev", "Up", "Next", "Home")
        assert not line.startswith(("Next:", "Previous:")), line
    # the banner and footer are not navigation words: one page alone cannot tell
    assert "Gadget Toolkit 2.4 Manual" in text


def test_templates_key_lines_by_their_shape_not_their_link_targets() -> None:
    assert line_key("Next: Tuples, Up: Manual", f"Next: {LINK}, Up: {LINK}") == \
        line_key("Next: Lists, Up: Manual", f"Next: {LINK}, Up: {LINK}")
    # a lone link is content (a list of pages): it keys on its own text
    assert line_key("Tuples", LINK) != line_key("Lists", LINK)
    assert line_key("Chapter 3 of 15") == line_key("Chapter 12 of 15")


def test_what_most_pages_of_the_manual_share_is_dropped_and_their_content_kept() -> None:
    docs = _docs()
    keys = find_boilerplate(docs.values())
    assert keys
    for name, doc in docs.items():
        stripped = strip_boilerplate(doc, keys)
        text = "\n".join(s.text for s in stripped.sections)
        for junk in NAVIGATION_TEXT:
            assert junk not in text, (name, junk, text)
        slug = name.removesuffix(".html")
        body = next(b for s, _t, b in MANUAL_TOPICS if s == slug)
        assert " ".join(body.split()[:6]) in " ".join(text.split()), (name, text)
        assert stripped.meta["boilerplate_lines"] >= 2  # banner, footer (the loader took the links)


def test_fewer_than_three_pages_share_nothing_and_a_mixed_upload_keeps_its_content() -> None:
    docs = list(_docs().values())
    assert find_boilerplate(docs[:2]) == frozenset()
    other = [load_html(f"<html><body><h1>Note {i}</h1><p>Unrelated note number {i} about "
                       f"topic {chr(65 + i)}.</p></body></html>".encode(), f"n{i}.html")
             for i in range(20)]
    # 15 manual pages among 35: the manual's banner is in fewer than half of them
    keys = find_boilerplate(docs + other)
    assert line_key("Gadget Toolkit 2.4 Manual — FULL") not in keys
    # and no note's own text is taken as shared
    assert all(strip_boilerplate(o, keys).sections == o.sections for o in other)


def test_a_page_that_is_only_the_template_is_refused() -> None:
    docs = _docs()
    keys = find_boilerplate(docs.values())
    empty = load_html(b"<html><body><div><b>Gadget Toolkit 2.4 Manual</b> &mdash; FULL</div>"
                      b"<p>Copyright 2024 The Gadget Project. Found a mistake in this manual? "
                      b"Report it on the\nproject's tracker.</p></body></html>", "empty.html")
    with pytest.raises(DocumentError, match="no text of its own"):
        strip_boilerplate(empty, keys)


def test_boilerplate_of_files_reads_the_upload_per_type(tmp_path: Path) -> None:
    files = []
    for name, data in manual_pages().items():
        (tmp_path / name).write_bytes(data)
        files.append((tmp_path / name, "html", name))
    (tmp_path / "a.md").write_text("# A\n\nGadget Toolkit 2.4 Manual — FULL\n")
    files.append((tmp_path / "a.md", "md", "a.md"))
    shared = boilerplate_of_files(files)
    assert set(shared) == {"html"}
    doc, drafts = prepare(tmp_path / "backup.html", "html", "backup.html", chunk_size=300,
                          chunk_overlap=50, splitter="heading", boilerplate=shared["html"])
    joined = "\n".join(d.text for d in drafts)
    assert "fourteen days" in joined and "FULL" not in joined and "Prev" not in joined


@pytest.mark.parametrize("splitter", ["heading", "recursive", "sentence"])
@pytest.mark.parametrize("size", [100, 300, 1000])
def test_no_chunk_is_shorter_than_the_minimum(splitter: str, size: int) -> None:
    doc = ParsedDocument("Guide", [
        Section("Intro text that is long enough to stand on its own as a chunk of the guide, "
                "more or less.", ["Guide"]),
        Section("FULL", ["Guide", "Status"]),
        Section("A second section with enough words in it to be a chunk of its own. " * 6,
                ["Guide", "Details"]),
        Section("See also.", ["Guide", "Links"]),
    ])
    drafts = split_document(doc, chunk_size=size, chunk_overlap=min(50, size // 4),
                            splitter=splitter)
    minimum = min_chunk_chars(size)
    assert all(len(d.text) >= minimum for d in drafts), [d.text for d in drafts]
    joined = "\n".join(d.text for d in drafts)
    assert "FULL" in joined and "See also." in joined  # merged, not lost


def test_merge_short_joins_a_neighbour_on_the_same_page_and_keeps_records() -> None:
    drafts = [ChunkDraft("tiny", ["A"], 1), ChunkDraft("x" * 80, ["B"], 1),
              ChunkDraft("y" * 80, [], 2), ChunkDraft("end", [], 2),
              ChunkDraft("Q: a\nA: b", [], None, {"record": 1})]
    out = merge_short(drafts, 40)
    assert [d.text[:4] for d in out] == ["A\nti", "yyyy", "Q: a"]
    assert out[0].heading_path == ["B"] and out[1].text.endswith("end")
    # one short document stays one chunk
    assert [d.text for d in merge_short([ChunkDraft("short", [])], 40)] == ["short"]
