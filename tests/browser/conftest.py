"""The browser suite: each module walks one user story in headless Chromium against a fresh studio.

A module gets its own ``studio up`` (embedded Postgres and Redis, a worker, the API and
Streamlit) on free ports with a throwaway data folder, so stories never see each other's data.
Playwright for Python drives Debian's Chromium through ``executable_path``: nothing is
downloaded. Where Chromium (or the playwright package) is missing the suite is skipped with one
loud line; with ``STUDIO_BROWSER_REQUIRED=1`` (set by ``.ci/run``) it fails instead.

Screenshots: every step a helper of ``ui.py`` takes is photographed into
``test-results/browser/<module>/<test>/``; the folder is kept when the test fails (or with
``STUDIO_BROWSER_KEEP_SHOTS=1``) and removed when it passes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import ui
from tests.browser.harness import (  # noqa: F401 - the names tests and scripts know this module by
    ADMIN,
    INSTALL_HINT,
    ROOT,
    STUDIO_TEST_ENV,
    StudioServer,
    find_chromium,
    free_port,
    launch_chromium,
    new_context,
    start_studio,
)
from tests.browser.harness import missing as _missing

BROWSER_DIR = Path(__file__).resolve().parent
SHOTS_ROOT = ROOT / "test-results" / "browser"


def _is_browser_item(item: pytest.Item) -> bool:
    return BROWSER_DIR in Path(str(item.fspath)).resolve().parents


def pytest_report_header(config: pytest.Config) -> str | None:
    why = _missing()
    if why is None:
        return f"browser suite: Chromium at {find_chromium()}"
    return (f"!!! BROWSER SUITE SKIPPED: {why}. Install it with: {INSTALL_HINT} !!!"
            if not os.environ.get("STUDIO_BROWSER_REQUIRED") else None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    why = _missing()
    for item in items:
        if not _is_browser_item(item):
            continue
        item.add_marker(pytest.mark.browser)
        if why is None:
            continue
        if os.environ.get("STUDIO_BROWSER_REQUIRED"):
            item.add_marker(pytest.mark.usefixtures("_browser_required"))
        else:
            item.add_marker(pytest.mark.skip(reason=f"{why}: {INSTALL_HINT}"))


@pytest.fixture
def _browser_required() -> None:
    pytest.fail(f"The browser suite must run here (STUDIO_BROWSER_REQUIRED) but {_missing()}: "
                f"{INSTALL_HINT}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and report.failed):
        item.stash[_FAILED] = report.failed


_FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioServer]:
    """A fresh studio for this module: nobody has logged in, no admin exists yet."""
    if _missing() is not None:
        pytest.skip(f"{_missing()}: {INSTALL_HINT}")
    server = start_studio(tmp_path_factory.mktemp("browser-studio"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def admin(studio: StudioServer) -> tuple[str, str]:
    """The first admin, created through the CLI: (user name, password)."""
    return studio.create_admin(*ADMIN)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    # one browser per story module: sync Playwright keeps an asyncio loop running in this
    # thread while it lives, which breaks later tests that call asyncio.run()
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = launch_chromium(pw)
    try:
        yield browser
    finally:
        browser.close()
        pw.stop()


@pytest.fixture
def page(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page; its step screenshots kept on failure."""
    module = Path(str(request.node.fspath)).stem
    shots = SHOTS_ROOT / module / request.node.name
    shutil.rmtree(shots, ignore_errors=True)
    context = new_context(chromium)
    pg = context.new_page()
    ui.start_shots(pg, shots)
    try:
        yield pg
    finally:
        failed = request.node.stash.get(_FAILED, True)
        if failed:
            with contextlib.suppress(Exception):  # the page may be gone
                ui.shot(pg, "failure")
        context.close()
        if not failed and not os.environ.get("STUDIO_BROWSER_KEEP_SHOTS"):
            shutil.rmtree(shots, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def studio_env() -> dict[str, str]:
    """The stories start studios of their own: the service tests' shared one is not needed."""
    return dict(os.environ)
