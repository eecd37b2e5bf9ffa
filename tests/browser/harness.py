"""The pieces of the browser suite that are not pytest: a throwaway ``studio up`` and Debian's
Chromium under Playwright. ``conftest.py`` builds its fixtures from them, and
``scripts/screenshots.py`` uses them as they are (so this module imports no pytest).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = "apt-get install -y chromium (and pip install playwright)"
ADMIN = ("admin", "browser-admin-pw-1")
VIEWPORT = {"width": 1400, "height": 1000}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

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


def missing() -> str | None:
    """Why a browser cannot be driven here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    if find_chromium() is None:
        return "Chromium is not installed"
    return None


def launch_chromium(playwright: Any) -> Any:
    """Headless Chromium from the system (``executable_path``): nothing is downloaded."""
    return playwright.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)


def new_context(browser: Any, *, width: int = VIEWPORT["width"],
                height: int = VIEWPORT["height"], locale: str = "en-US") -> Any:
    """A fresh visitor: no cookies, English, downloads accepted, 30 s for a step."""
    context = browser.new_context(viewport={"width": width, "height": height},
                                  accept_downloads=True, locale=locale)
    context.set_default_timeout(30_000)
    return context


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
        return json.loads(self.cli(*args, "--json", input=input).stdout)

    def create_admin(self, username: str = ADMIN[0], password: str = ADMIN[1]) -> tuple[str, str]:
        """The first admin, created through the CLI: (user name, password)."""
        self.cli("users", "create", username, "--admin", "--password-stdin",
                 input=password + "\n")
        return username, password

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
    """``studio up`` on free ports with ``data_dir`` as its data folder; returns once Streamlit
    and the API answer (the worker may still be warming up: see ``wait_for_worker``)."""
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
