"""``studio up``: services, migrations, a worker, the API and Streamlit, stopped together."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from backend.config import Settings, get_settings
from backend.embedded import ensure_services

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]


@dataclass
class Launcher:
    settings: Settings
    with_worker: bool = True
    with_api: bool = True
    with_studio: bool = True
    children: list[Child] = field(default_factory=list)
    _stopping: bool = False

    def child_env(self) -> dict[str, str]:
        urls = ensure_services(self.settings)
        env = dict(os.environ)
        # children use the services this process holds; they never start their own
        env["STUDIO_DATABASE_URL"] = urls.database_url
        env["STUDIO_REDIS_URL"] = urls.redis_url
        env["STUDIO_DATA_DIR"] = str(self.settings.data_dir)
        env["STUDIO_SECRET_KEY"] = self.settings.resolved_secret_key()
        env.setdefault("OMP_NUM_THREADS", str(self.settings.torch_threads))
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        return env

    def _spawn(self, name: str, args: list[str]) -> None:
        logfile = open(self.settings.logs_dir / f"{name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(args, env=self.child_env(), cwd=ROOT, stdout=logfile,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.children.append(Child(name, proc))

    def start(self) -> str:
        from backend.services.system import upgrade_schema

        s = self.settings
        s.ensure_dirs()
        upgrade_schema("head")
        py = sys.executable
        if self.with_worker:
            self._spawn("worker", [py, "-m", "backend.cli", "worker", "--queues", "cpu,gpu"])
        if self.with_api:
            self._spawn("api", [py, "-m", "uvicorn", "backend.api.app:app", "--host", s.host,
                                "--port", str(s.api_port), "--log-level", "warning"])
        if self.with_studio:
            self._spawn("studio", [
                py, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
                "--server.port", str(s.studio_port), "--server.address", s.host,
                "--server.headless", "true", "--browser.gatherUsageStats", "false",
                "--server.maxUploadSize", str(s.max_upload_mb), "--client.toolbarMode", "minimal",
            ])
        url = f"http://{s.host}:{s.studio_port}"
        if self.with_studio:
            self._wait_http(f"{url}/_stcore/health", "studio")
        if self.with_api:
            self._wait_http(f"http://{s.host}:{s.api_port}/health", "api")
        if self.with_worker and not self.with_studio:
            self._wait_worker()
        return url

    def _wait_worker(self, timeout_s: float = 60) -> None:
        """Headless: ready once the worker has announced itself."""
        from backend.accounts.actor import Actor
        from backend.services.jobs import list_workers

        worker = next(c for c in self.children if c.name == "worker")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if worker.proc.poll() is not None:
                raise RuntimeError(f"worker exited with code {worker.proc.returncode}; "
                                   f"see {self.settings.logs_dir / 'worker.log'}")
            if any(w.pid == worker.proc.pid for w in list_workers(actor=Actor.system())):
                return
            time.sleep(0.3)
        raise RuntimeError(f"the worker did not start within {timeout_s:.0f} s; "
                           f"see {self.settings.logs_dir / 'worker.log'}")

    def banner(self) -> str:
        s = self.settings
        extras = []
        if self.with_api:
            extras.append(f"API: http://{s.host}:{s.api_port}/v1")
        if self.with_worker:
            extras.append("a worker on the cpu and gpu queues")
        if self.with_studio:
            head = f"LLM Studio is running at http://{s.host}:{s.studio_port}"
        else:
            urls = ensure_services(s)
            head = "LLM Studio is running headless (no web UI)"
            extras += [f"Postgres: {_safe(urls.database_url)}", f"Redis: {urls.redis_url}"]
        return f"{head}  ({'; '.join(extras)}). Press Ctrl-C to stop."

    def _wait_http(self, url: str, name: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for child in self.children:
                if child.proc.poll() is not None:
                    raise RuntimeError(
                        f"{child.name} exited with code {child.proc.returncode}; "
                        f"see {self.settings.logs_dir / (child.name + '.log')}"
                    )
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{name} did not answer at {url} within {timeout_s:.0f} s")

    def stop(self, timeout_s: float = 15) -> None:
        if self._stopping:
            return
        self._stopping = True
        for child in self.children:
            if child.proc.poll() is None:
                _signal_group(child.proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in self.children:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                child.proc.wait(remaining)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", child.name)
                _signal_group(child.proc, signal.SIGKILL)
                child.proc.wait(5)
            else:
                _signal_group(child.proc, signal.SIGKILL)  # stragglers in its group

    def wait(self) -> int:
        """Block until a signal arrives or a child dies; returns the exit code."""
        while True:
            for child in self.children:
                code = child.proc.poll()
                if code is not None:
                    log.error("%s exited with code %s", child.name, code)
                    return 1
            time.sleep(0.5)


def _safe(url: str) -> str:
    """A database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def run_up(*, with_worker: bool = True, with_api: bool = True, with_studio: bool = True) -> int:
    launcher = Launcher(get_settings(), with_worker=with_worker, with_api=with_api,
                        with_studio=with_studio)

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        launcher.start()
        print(launcher.banner(), flush=True)
        return launcher.wait()
    except KeyboardInterrupt:
        print("Stopping…", flush=True)
        return 0
    except RuntimeError as err:
        print(f"Could not start: {err}", file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        launcher.stop()
        # Ctrl-C on `studio up` stops everything: the embedded services too, unless another
        # process still uses them (single commands leave them to linger instead)
        from backend.embedded import stop_services_if_unused

        stop_services_if_unused(launcher.settings)
