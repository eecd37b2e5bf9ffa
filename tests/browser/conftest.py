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
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import ui

ROOT = Path(__file__).resolve().parents[2]
BROWSER_DIR = Path(__file__).resolve().parent
SHOTS_ROOT = ROOT / "test-results" / "browser"
INSTALL_HINT = "apt-get install -y chromium (and pip install playwright)"
ADMIN = ("admin", "browser-admin-pw-1")

# the same quiet, offline settings the service tests use
STUDIO_TEST_ENV = {
    "STUDIO_HOST": "127.0.0.1",
    "STUDIO_SECRET_KEY": "browser-secret-key-0123456789abcdef",
    "STUDIO_TORCH_THREADS": "1",
    "STUDIO_EMBEDDING_BACKEND": "torch",
    "STUDIO_SERVICES_LINGER_S": "2",
    "STUDIO_HEARTBEAT_INTERVAL_S": "1",
    "STUDIO_INFERENCE_ACCEPT_TIMEOUT_S": "180",
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


def find_chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser"):
        if name and (path := shutil.which(name)):
            return path
    return None


def _missing() -> str | None:
    """Why the suite cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    if find_chromium() is None:
        return "Chromium is not installed"
    return None


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class StudioServer:
    """One ``studio up`` with its own data folder; ``cli`` runs commands against it."""

    data_dir: Path
    env: dict[str, str]
    url: str
    api_url: str
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def cli(self, *args: str, input: str | None = None, check: bool = True,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run ``studio ARGS`` as the machine's operator (or with STUDIO_API_KEY in env)."""
        done = subprocess.run([sys.executable, "-m", "backend.cli", *args], cwd=ROOT,
                              env=self.env, input=input, capture_output=True, text=True,
                              timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"`studio {' '.join(args)}` exited {done.returncode}:\n"
                                 f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        return done

    def cli_json(self, *args: str, input: str | None = None) -> Any:
        import json

        return json.loads(self.cli(*args, "--json", input=input).stdout)

    def log_tail(self, chars: int = 4000) -> str:
        out = []
        for path in sorted((self.data_dir / "logs").glob("*.log")):
            out.append(f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(out)

    def wait_for_worker(self, timeout_s: float = 120) -> None:
        log = self.data_dir / "logs" / "worker.log"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if log.exists() and " ready." in log.read_text(errors="replace"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the worker did not start:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def start_studio(data_dir: Path, timeout_s: float = 180) -> StudioServer:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STUDIO_")}
    env.update(STUDIO_TEST_ENV)
    studio_port, api_port = free_port(), free_port()
    env.update({"STUDIO_DATA_DIR": str(data_dir), "STUDIO_STUDIO_PORT": str(studio_port),
                "STUDIO_API_PORT": str(api_port)})
    server = StudioServer(data_dir=data_dir, env=env, url=f"http://127.0.0.1:{studio_port}",
                          api_url=f"http://127.0.0.1:{api_port}/v1")
    data_dir.mkdir(parents=True, exist_ok=True)
    out = open(data_dir / "studio-up.log", "wb")  # noqa: SIM115
    server.proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "up"], cwd=ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError("studio up exited:\n"
                               + (data_dir / "studio-up.log").read_text(errors="replace")[-4000:])
        try:
            if (httpx.get(f"{server.url}/_stcore/health", timeout=1).status_code == 200
                    and httpx.get(f"http://127.0.0.1:{api_port}/health",
                                  timeout=1).status_code == 200):
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    else:
        server.stop()
        raise RuntimeError(f"studio up did not answer within {timeout_s:.0f} s:\n"
                           + server.log_tail())
    # the worker warms up while the story's first steps run: jobs wait in their queue till then
    return server


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
    studio.cli("users", "create", ADMIN[0], "--admin", "--password-stdin", input=ADMIN[1] + "\n")
    return ADMIN


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(
        executable_path=find_chromium(),
        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
              "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync"],
    )
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
    context = chromium.new_context(viewport={"width": 1400, "height": 1000},
                                   accept_downloads=True, locale="en-US")
    context.set_default_timeout(30_000)
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


@pytest.fixture
def new_page(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A factory of further fresh visitors (own context, no cookies) within one test:
    ``other = new_page("visitor")``. Their screenshots go beside the test's own."""
    module = Path(str(request.node.fspath)).stem
    contexts: list[Any] = []

    def make(who: str) -> Any:
        context = chromium.new_context(viewport={"width": 1400, "height": 1000},
                                       accept_downloads=True, locale="en-US")
        context.set_default_timeout(30_000)
        contexts.append(context)
        pg = context.new_page()
        ui.start_shots(pg, SHOTS_ROOT / module / f"{request.node.name}-{who}")
        return pg

    yield make
    failed = request.node.stash.get(_FAILED, True)
    for context in contexts:
        for pg in context.pages:
            if failed:
                with contextlib.suppress(Exception):
                    ui.shot(pg, "failure")
        context.close()
    if not failed and not os.environ.get("STUDIO_BROWSER_KEEP_SHOTS"):
        for folder in (SHOTS_ROOT / module).glob(f"{request.node.name}-*"):
            shutil.rmtree(folder, ignore_errors=True)
