"""Every page renders in Simplified Chinese and leaves no UI word in English.

Pages run through ``studio/app.py`` (navigation, sidebar, language switch) under AppTest against
the session's real Postgres and Redis. The walk (``tests/i18n_walk.py``) reads every visible
text; proper names, commands in code spans and user data (job titles, stages, worker names ...)
may stay as they are.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from streamlit.testing.v1 import AppTest

from backend.accounts.actor import Actor
from backend.services import jobs as jobs_service
from tests.i18n_walk import english_words, ui_strings_in, untranslated

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "studio" / "app.py"
PAGES = sorted((ROOT / "studio" / "pages").glob("*.py"))
TIMEOUT = 60
CHINESE_TITLE = "中文测试任务：微调 Qwen 小模型"


@pytest.fixture(scope="module")
def chinese_job() -> int:
    """A finished demo job with a Chinese title, so job views render metrics, charts and logs."""
    actor = Actor.system()
    job = jobs_service.submit_job(actor=actor, kind="demo", title=CHINESE_TITLE,
                                  params={"steps": 4, "step_seconds": 0.01}, enqueue=False)
    assert jobs_service.run_inline(actor=actor, job_id=job.id).status == "succeeded"
    return job.id


def english_ui_strings() -> set[str]:
    """English UI strings whose Chinese differs (so seeing one on a Chinese page is a bug)."""
    with (ROOT / "studio/locales/zh_CN/LC_MESSAGES/studio.po").open("rb") as fp:
        catalog = read_po(fp, locale="zh_CN")
    return {m.id for m in catalog if isinstance(m.id, str) and m.id and m.string != m.id}


def user_data() -> set[str]:
    """Text that people or jobs wrote (shown as it is, in whatever language it was written)."""
    actor = Actor.system()
    data: set[str] = {actor.username}
    for job in jobs_service.list_jobs(actor=actor, limit=500):
        # stages and the job system's own errors are shown translated, so they are not data here
        data.update(v for v in (job.title, job.kind, job.worker_host) if v)
        if job.status == "failed":
            data.add(job.error or "")
    for worker in jobs_service.list_workers(actor=actor):
        data.update(v for v in (worker.hostname, worker.device) if isinstance(v, str) and v)
    import platform

    data.add(platform.platform())  # the Settings page shows the machine's platform string
    try:
        from backend.services import accounts

        data.update(u.username for u in accounts.list_users(actor=actor))
        data.update(w.name for w in accounts.user_workspaces(actor=actor))
    except (ImportError, AttributeError):
        pass
    try:
        from backend.services import knowledge as kb_service

        # (long values only: a one-letter heading such as "A" would erase letters elsewhere)
        kb_data: set[str] = set()
        for kb in kb_service.list_knowledge_bases(actor=actor, all_workspaces=True):
            kb_data.update(v for v in (kb.name, kb.description) if v)
            for doc in kb_service.list_documents(actor=Actor.system(kb.workspace_id), kb=kb.id):
                kb_data.update(v for v in (doc.source, doc.title, doc.error) if v)
            for chunk in kb_service.list_chunks(actor=Actor.system(kb.workspace_id), kb=kb.id,
                                                limit=50, include_disabled=True):
                kb_data.update(v for v in (chunk.text, chunk.metadata.get("heading")) if v)
                kb_data.update(str(h) for h in chunk.metadata.get("heading_path") or [])
        data.update(v for v in kb_data if len(v) >= 6)
    except (ImportError, AttributeError):
        pass
    try:
        from backend.services import models as models_service

        for model in models_service.list_models(actor=actor):
            data.update(str(v) for v in vars(model).values() if isinstance(v, str) and v)
    except (ImportError, AttributeError):
        pass
    from backend.services import agents as agents_service

    for agent in agents_service.list_agents(actor=actor):  # what builders wrote
        data.update(str(v) for v in vars(agent).values() if isinstance(v, str) and v)
    for conversation in agents_service.list_conversations(actor=actor, limit=1000):
        data.update(v for v in (conversation.title, conversation.agent) if v)  # people's questions
    from backend.services import prompts as prompts_service

    for prompt in prompts_service.list_prompts(actor=actor):  # names and texts people wrote
        data.update(v for v in (prompt.name, prompt.description, prompt.template,
                                prompt.system, prompt.current.message) if v)
    for run in prompts_service.list_runs(actor=actor, limit=1000):  # what models answered
        data.update(v for v in (run.text, run.model) if v)
    return data


def _app(lang: str = "zh_CN") -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["actor"] = Actor.system()
    at.session_state["lang"] = lang
    return at


def _assert_chinese(at: AppTest, where: str) -> None:
    assert not at.exception, (where, [e.value for e in at.exception])
    left = untranslated(at._tree, data=user_data())
    assert not left, f"{where}: English left on screen:\n" + "\n".join(left)
    raw = ui_strings_in(at._tree, english_ui_strings())
    assert not raw, f"{where}: UI strings shown without translation (tables included): {raw}"


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_page_renders_in_chinese(page: Path, chinese_job: int) -> None:
    at = _app()
    at.switch_page(f"pages/{page.name}").run()
    _assert_chinese(at, page.name)
    assert at.title, f"{page.name} shows no title"
    assert any("\u4e00" <= ch <= "\u9fff" for t in at.title for ch in t.value) or \
        at.title[0].value == "LLM Studio", f"{page.name}: the title is not in Chinese"


def test_job_detail_in_chinese(chinese_job: int) -> None:
    """A finished job's header, facts, tabs, chart and buttons, in Chinese."""
    at = _app()
    # (picked through session state: AppTest formats the options outside the script's session)
    at.session_state["jobs_pick"] = chinese_job
    at.switch_page("pages/jobs.py").run()
    _assert_chinese(at, "jobs.py with a job open")
    assert any(CHINESE_TITLE in s.value for s in at.subheader), "the Chinese title is lost"
    assert any("任务" in s.value for s in at.subheader)
    assert at.get("plotly_chart"), "the metrics chart is missing"


def test_english_is_english() -> None:
    """The same walk over the English studio finds English: the check can fail."""
    at = _app("en")
    at.switch_page("pages/jobs.py").run()
    assert not at.exception
    assert untranslated(at._tree, data=user_data())
    assert {"Jobs", "Workers", "Run a demo job"} <= set(
        ui_strings_in(at._tree, english_ui_strings()))


def test_walk_keeps_names_and_data() -> None:
    assert english_words("在 LLM Studio 中用 LoRA 微调，`studio worker --queues gpu`") == []
    assert english_words("任务 #12：Nightly run", data={"Nightly run"}) == []
    assert english_words("正在运行 Loading jobs") == ["Loading", "jobs"]
    assert english_words("/models/Qwen2.5-0.5B-Instruct, deepseek-chat, qwen2.5:7b") == []
    assert english_words("Fine-tune 模型") == ["Fine-tune"]
