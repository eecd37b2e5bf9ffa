"""The Pre-train page under AppTest, in English and Chinese, against the real database: a corpus
is listed with its statistics, a bad upload is refused in words, tokenizers are compared, the
estimate is shown, a run is launched and shows up under Runs."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from backend.accounts.actor import Actor
from backend.services import corpora
from backend.services import jobs as jobs_service

PAGE = Path(__file__).resolve().parent.parent / "studio" / "pages" / "pretrain.py"
SYSTEM = Actor.system()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> corpora.CorpusView:
    from pydoc_data.topics import topics

    folder = tmp_path_factory.mktemp("page-docs")
    for name in sorted(topics)[:12]:
        (folder / f"{name}.txt").write_text(topics[name])
    return corpora.add_corpus(actor=SYSTEM, name=f"page-docs-{uuid.uuid4().hex[:6]}",
                              paths=[folder], heldout_fraction=0.2)


def _app(lang: str = "en") -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.session_state["actor"] = SYSTEM
    at.session_state["lang"] = lang
    return at


def _text(at: AppTest) -> str:
    kinds = ("markdown", "caption", "info", "warning", "success", "error", "title", "subheader",
             "code")
    return "\n".join(str(e.value) for k in kinds for e in getattr(at, k))


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_page_renders_corpus_estimate_and_runs(corpus: corpora.CorpusView, lang: str) -> None:
    at = _app(lang)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.text_input(key="pretrain_corpus_search").input(corpus.name).run()
    assert list(at.dataframe[0].value.iloc[:, 0]) == [corpus.name]
    assert at.metric[0].value == str(corpus.latest.documents)  # type: ignore[union-attr]
    # the estimate for the default (tiny) preset is on screen before launch
    labels = [m.label for m in at.metric]
    assert ("Parameters" if lang == "en" else "参数量") in labels
    if lang == "zh_CN":
        assert "预训练" in at.title[0].value


def test_bad_upload_is_refused_in_words(corpus: corpora.CorpusView) -> None:
    at = _app()
    at.run()
    at.text_input(key="pretrain_corpus_name").input("page-empty")
    at.button(key="FormSubmitter:pretrain_add_corpus-Build the corpus").click().run()
    assert not at.exception
    assert any("Give files" in e.value for e in at.error), _text(at)


def test_compare_tokenizers_and_launch(corpus: corpora.CorpusView) -> None:
    at = _app()
    at.run()
    at.selectbox(key="pretrain_tok_corpus").select(corpus.id)
    at.number_input(key="pretrain_tok_vocab").set_value(600)
    at.button(key="pretrain_tok_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    names = list(at.dataframe[-1].value.iloc[:, 0])
    assert names[0] == "BPE 600" and "bytes" in names

    at.selectbox(key="pretrain_launch_corpus").select(corpus.id)
    at.number_input(key="pretrain_steps").set_value(20)
    name = f"page-run-{uuid.uuid4().hex[:6]}"
    at.text_input(key="pretrain_name").input(name)
    at.button(key="pretrain_launch").click().run()
    assert not at.exception, [e.value for e in at.exception]
    jobs = jobs_service.list_jobs(actor=SYSTEM, kinds=["pretrain"], search=name)
    assert len(jobs) == 1 and jobs[0].params["config"]["max_steps"] == 20
    assert jobs[0].params["name"] == name
    try:
        assert any(f"#{jobs[0].id}" in s.value for s in at.success)
        assert at.selectbox(key="pretrain_run_pick").value == jobs[0].id
    finally:
        jobs_service.cancel_job(actor=SYSTEM, job_id=jobs[0].id)  # no worker should pick it up
