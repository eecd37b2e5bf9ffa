"""Several processes share one embedded Postgres and Redis; a crashed run's server is reused, not
duplicated, and the last process to leave stops it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent

HOLD = """
import json, sys, time
from backend.config import get_settings
from backend.embedded import ensure_services
u = ensure_services(get_settings())
import psutil
pg = open(get_settings().embedded_dir / 'pg' / 'postmaster.pid').readline().strip()
redis_pid = (get_settings().embedded_dir / 'redis' / 'redis.pid').read_text().strip()
print(json.dumps({"db": u.database_url, "redis": u.redis_url, "pg_pid": int(pg),
                  "redis_pid": int(redis_pid)}), flush=True)
time.sleep(float(sys.argv[1]))
"""


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STUDIO_")}
    env["STUDIO_DATA_DIR"] = str(data_dir)
    return env


def _hold(data_dir: Path, seconds: float) -> tuple[subprocess.Popen[str], dict]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(seconds)], cwd=ROOT,
                            env=_env(data_dir), stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    return proc, json.loads(line)


def test_processes_share_services_and_crashed_run_is_recovered(tmp_path: Path) -> None:
    data = tmp_path / "d"
    p1, info1 = _hold(data, 60)
    p2, info2 = _hold(data, 60)
    assert info1 == info2  # one Postgres, one Redis
    p1.send_signal(signal.SIGKILL)
    p2.send_signal(signal.SIGKILL)
    p1.wait()
    p2.wait()
    # the crashed processes left both servers running; the next process reuses them
    assert psutil.pid_exists(info1["pg_pid"]) and psutil.pid_exists(info1["redis_pid"])
    p3, info3 = _hold(data, 0)
    assert info3 == info1
    p3.wait(30)
    # p3 was the last live user: it stopped both
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (
        psutil.pid_exists(info1["pg_pid"]) or psutil.pid_exists(info1["redis_pid"])
    ):
        time.sleep(0.2)
    assert not psutil.pid_exists(info1["pg_pid"])
    assert not psutil.pid_exists(info1["redis_pid"])
