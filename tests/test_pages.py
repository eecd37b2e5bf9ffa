"""Every page renders without an exception; the Jobs page shows a real job and acts on it.

Pages run under Streamlit's AppTest against the session's real Postgres and Redis. Jobs are real
demo jobs run in this process (``run_inline``), so their metrics and log come from the database.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from backend.accounts.actor import Actor
from backend.services.jobs import get_job, list_jobs, run_inline, submit_job

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "studio" / "pages").glob("*.py"))
JOBS_PAGE = ROOT / "studio" / "pages" / "jobs.py"
TIMEOUT = 60


def _app(path: Path) -> AppTest:
    at = AppTest.from_file(str(path), default_timeout=TIMEOUT)
    at.session_state["actor"] = Actor.system()
    return at


@pytest.fixture(scope="module")
def finished_demo() -> int:
    """A demo job that ran to the end, with its loss series and log lines in the database."""
    actor = Actor.system()
    job = submit_job(actor=actor, kind="demo", params={"steps": 6, "step_seconds": 0.01},
                     title="Page test demo", enqueue=False)
    done = run_inline(actor=actor, job_id=job.id)
    assert done.status == "succeeded"
    return job.id


def _texts(at: AppTest) -> str:
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption]
    parts += [e.value for e in at.info] + [e.value for e in at.warning]
    parts += [e.value for e in at.success] + [e.value for e in at.error]
    parts += [e.value for e in at.subheader] + [e.value for e in at.title]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("path", PAGES, ids=[p.stem for p in PAGES])
def test_every_page_renders(path: Path, finished_demo: int) -> None:
    at = _app(path)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title, f"{path.name} shows no title"


def test_app_entry_routes_to_every_page(finished_demo: int) -> None:
    """Through ``studio/app.py`` (st.navigation), as a browser sees the studio."""
    at = AppTest.from_file(str(ROOT / "studio" / "app.py"), default_timeout=TIMEOUT)
    at.session_state["actor"] = Actor.system()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    for path in PAGES:
        at.switch_page(f"pages/{path.name}").run()
        assert not at.exception, (path.name, [e.value for e in at.exception])


def test_jobs_page_shows_metrics_and_log(finished_demo: int) -> None:
    at = _app(JOBS_PAGE)
    at.run()
    assert not at.exception
    at.selectbox(key="jobs_pick").set_value(finished_demo).run()
    assert not at.exception
    assert any(f"#{finished_demo}" in s.value for s in at.subheader)
    charts = at.get("plotly_chart")
    assert charts, "the loss chart is missing"
    log_text = "\n".join(c.value for c in at.code)
    assert "Demo job finished" in log_text
    assert "Page test demo" in _texts(at) or at.dataframe
    # a finished job offers Retry, not Cancel
    assert at.button(key="jobs_retry")
    with pytest.raises(KeyError):
        at.button(key="jobs_cancel")


def test_jobs_page_cancel_and_retry() -> None:
    actor = Actor.system()
    queued = submit_job(actor=actor, kind="demo", params={"steps": 2, "step_seconds": 0.01},
                        title="Page test cancel", enqueue=False)
    at = _app(JOBS_PAGE)
    at.run()
    at.selectbox(key="jobs_pick").set_value(queued.id).run()
    assert not at.exception
    at.button(key="jobs_cancel").click().run()
    assert not at.exception
    assert get_job(actor=actor, job_id=queued.id).status == "cancelled"
    assert any(f"#{queued.id}" in s.value for s in at.success)

    # the page now offers Retry for the cancelled job; it creates a linked job and shows it
    at.selectbox(key="jobs_pick").set_value(queued.id).run()
    at.button(key="jobs_retry").click().run()
    assert not at.exception
    retries = [j for j in list_jobs(actor=actor) if j.retry_of_id == queued.id]
    assert len(retries) == 1
    assert at.selectbox(key="jobs_pick").value == retries[0].id
    # it was sent to the queue; stop it so that no later worker runs it
    from backend.services.jobs import cancel_job

    cancel_job(actor=actor, job_id=retries[0].id)


def test_jobs_page_filters() -> None:
    at = _app(JOBS_PAGE)
    at.run()
    at.text_input(key="jobs_search").input("no job is called this").run()
    assert not at.exception
    assert any("No job matches" in i.value for i in at.info)


def test_run_demo_button_submits_a_demo_job() -> None:
    before = {j.id for j in list_jobs(actor=Actor.system(), kinds=["demo"])}
    at = _app(JOBS_PAGE)
    at.run()
    at.button(key="jobs_demo").click().run()
    assert not at.exception
    new = [j for j in list_jobs(actor=Actor.system(), kinds=["demo"]) if j.id not in before]
    assert len(new) == 1
    assert at.selectbox(key="jobs_pick").value == new[0].id
    from backend.services.jobs import cancel_job

    cancel_job(actor=Actor.system(), job_id=new[0].id)


def test_plain_users_see_no_launch_buttons_and_no_settings_values(finished_demo: int) -> None:
    from backend.accounts.actor import Role

    member = Actor(user_id=424242, username="member", role=Role.user)
    at = AppTest.from_file(str(JOBS_PAGE), default_timeout=TIMEOUT)
    at.session_state["actor"] = member
    at.run()
    assert not at.exception
    with pytest.raises(KeyError):
        at.button(key="jobs_demo")
    # a member sees only their own jobs: the admin's demo job is not listed
    assert any("No jobs yet" in i.value for i in at.info)

    at = AppTest.from_file(str(ROOT / "studio" / "pages" / "settings.py"), default_timeout=TIMEOUT)
    at.session_state["actor"] = member
    at.run()
    assert not at.exception
    assert any("Only admins" in i.value for i in at.info)
    assert not any("STUDIO_SECRET_KEY" in m.value for m in at.markdown)
