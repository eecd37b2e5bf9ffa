"""`studio up` starts the worker, API and Streamlit, answers HTTP, and stops with no child left."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_studio_up_serves_and_stops_cleanly(studio_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(studio_env)
    studio_port, api_port = _free_port(), _free_port()
    env.update(STUDIO_STUDIO_PORT=str(studio_port), STUDIO_API_PORT=str(api_port),
               STUDIO_DATA_DIR=str(tmp_path / "data"))
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "up"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        first = proc.stdout.readline().decode()  # type: ignore[union-attr]
        assert f"is running at http://127.0.0.1:{studio_port}" in first, first
        health = httpx.get(f"http://127.0.0.1:{studio_port}/_stcore/health", timeout=5)
        assert health.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{api_port}/health", timeout=5).json() == {"status": "ok"}
        page = httpx.get(f"http://127.0.0.1:{studio_port}/", timeout=5)
        assert page.status_code == 200 and "<html" in page.text.lower()
        children = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "worker" in names and "uvicorn" in names and "streamlit" in names
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out.decode()
        time.sleep(0.5)
        left = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert not left, [c.cmdline() for c in left]
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
