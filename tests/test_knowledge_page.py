"""The Knowledge page under AppTest against the real database, in English and Chinese: a base
with its stats and documents, the latest upload's per-file progress, the retrieval test (single
and side by side, matches highlighted), chunk editing, the embedding map, creating a base."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from backend.accounts.actor import Actor
from backend.services import jobs
from backend.services import knowledge as kbs
from studio.components.page_tabs import next_key
from tests import knowledge_files as files

PAGE = Path(__file__).resolve().parent.parent / "studio" / "pages" / "knowledge.py"
SYSTEM = Actor.system()


@pytest.fixture(scope="module")
def kb_id() -> int:
    kb = kbs.create_knowledge_base(actor=SYSTEM, name=f"page-kb-{uuid.uuid4().hex[:6]}",
                                   description="Office handbook for the page test")
    job_id = kbs.ingest_files(actor=SYSTEM, kb=kb.id, uploads=[
        ("manual.md", files.MARKDOWN.encode()), ("parking.html", files.HTML.encode()),
        ("broken.pdf", b"%PDF-1.4 nothing here")], enqueue=False)
    assert jobs.run_inline(actor=SYSTEM, job_id=job_id).status == "succeeded"
    return kb.id


def _app(kb: int, lang: str = "en", tab: str | None = None) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.session_state["actor"] = SYSTEM
    at.session_state["lang"] = lang
    at.session_state["kb_pick"] = kb
    if tab:
        at.session_state[next_key("kb_tab")] = tab
    return at


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_base_overview_documents_and_upload_progress(kb_id: int) -> None:
    at = _app(kb_id)
    at.run()
    _ok(at)
    assert at.title[0].value == "Knowledge"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Documents"] == "2" and metrics["Failed files"] == "1"
    tables = [t.value for t in at.dataframe]
    docs = tables[0]
    assert set(docs["Document"]) == {"manual.md", "parking.html", "broken.pdf"}
    assert "damaged PDF" in " ".join(docs["Problem"])
    # only the open tab runs: the upload tab's table comes when it is opened
    assert not any("Latest upload" in s.value for s in at.subheader)
    at.session_state[next_key("kb_tab")] = "upload"
    at.run()
    _ok(at)
    assert at.session_state["kb_tab"] == "Upload"
    # the latest upload: its job and each file's status, read from the database
    per_file = at.dataframe[0].value
    assert set(per_file["Document"]) == {"manual.md", "parking.html", "broken.pdf"}
    assert any("Latest upload" in s.value for s in at.subheader)
    at.session_state[next_key("kb_tab")] = "documents"
    at.run()
    at.text_input(key="kb_doc_search").input("parking").run()
    _ok(at)
    assert list(at.dataframe[0].value["Document"]) == ["parking.html"]


def test_retrieval_test_highlights_and_compares(kb_id: int) -> None:
    at = _app(kb_id, tab="retrieval")
    at.run()
    at.text_input(key="kb_query").input("descaling with citric acid").run()
    _ok(at)
    assert at.session_state["kb_tab"] == "Retrieval test"  # the tab stayed open
    md = _markdown(at)
    assert "manual.md" in md and "<mark>citric</mark>" in md
    # a relevance people can read, in the order shown
    shown = [int(x) for x in re.findall(r"relevance (\d+)%", md)]
    assert shown and shown == sorted(shown, reverse=True) and 0 < shown[0] <= 100
    assert any("Descaling" in c.value for c in at.caption)
    at.radio(key="kb_mode").set_value("compare").run()
    _ok(at)
    heads = {s.value for s in at.subheader}
    assert {"Vector (meaning)", "Keyword (BM25)", "Hybrid (vector + keyword)"} <= heads


def test_chunk_edit_and_map(kb_id: int) -> None:
    at = _app(kb_id, tab="chunks")
    at.run()
    chunk = next(c for c in kbs.list_chunks(actor=SYSTEM, kb=kb_id) if "citric" in c.text)
    # each chunk's label shows the start of its text
    assert any("Welcome to the manual" in e.label for e in at.expander)
    at.selectbox(key="kb_chunk_doc").set_value(chunk.document_id).run()
    _ok(at)
    # the pager counts what the filter shows
    at.text_input(key="kb_chunk_search").input("citric").run()
    _ok(at)
    assert len([e for e in at.expander if " #" in e.label]) == 1
    assert any("of 1" in c.value for c in at.caption)
    at.text_area(key=f"kb_chunk_text_{chunk.id}").input(chunk.text + " Use a soft cloth.")
    at.button(key=f"kb_chunk_save_{chunk.id}").click().run()
    _ok(at)
    saved = next(c for c in kbs.list_chunks(actor=SYSTEM, kb=kb_id) if c.id == chunk.id)
    assert saved.edited and saved.text.endswith("Use a soft cloth.")
    assert any("Chunk saved" in s.value for s in at.success)
    assert at.session_state["kb_tab"] == "Chunks"
    at.session_state[next_key("kb_tab")] = "map"
    at.run()
    _ok(at)
    assert at.get("plotly_chart"), "the embedding map is missing"


def test_create_a_base_through_the_form(kb_id: int) -> None:
    name = f"form-kb-{uuid.uuid4().hex[:6]}"
    at = _app(kb_id)
    at.run()
    at.text_input(key="kb_new_name").input(name)
    at.selectbox(key="kb_new_language").set_value("zh")
    at.button(key="FormSubmitter:kb_create-Create the knowledge base").click().run()
    _ok(at)
    made = kbs.get_knowledge_base(actor=SYSTEM, kb=name)
    assert made.settings["language"] == "zh"
    assert at.session_state["kb_pick"] == made.id
    assert at.session_state["kb_tab"] == "Upload"  # what comes next
    kbs.delete_knowledge_base(actor=SYSTEM, kb=made.id)


def test_page_in_chinese(kb_id: int) -> None:
    at = _app(kb_id, "zh_CN", tab="retrieval")
    # (typed through session state: AppTest formats options outside the script's session)
    at.session_state["kb_query"] = "bicycles"
    at.run()
    _ok(at)
    assert at.title[0].value == "知识库"
    assert {"文档", "文本块"} <= {m.label for m in at.metric}
    assert "parking.html" in _markdown(at)
    assert any("语义排名" in c.value for c in at.caption)
