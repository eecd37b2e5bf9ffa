"""Several processes share one embedded Postgres and Redis. Consecutive processes find them
running (they linger after the last user leaves); a crashed run's servers are reused, not
duplicated, even when its keeper died too; and the services stop once nobody uses them."""

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
pg = open(get_settings().embedded_dir / 'pg' / 'postmaster.pid').readline().strip()
redis_pid = (get_settings().embedded_dir / 'redis' / 'redis.pid').read_text().strip()
keeper = json.loads((get_settings().embedded_dir / 'keeper.json').read_text())["pid"]
print(json.dumps({"db": u.database_url, "redis": u.redis_url, "pg_pid": int(pg),
                  "redis_pid": int(redis_pid), "keeper": keeper}), flush=True)
time.sleep(float(sys.argv[1]))
"""


def _env(data_dir: Path, linger_s: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STUDIO_")}
    env["STUDIO_DATA_DIR"] = str(data_dir)
    env["STUDIO_SERVICES_LINGER_S"] = str(linger_s)
    return env


def _hold(data_dir: Path, seconds: float, linger_s: float) -> tuple[subprocess.Popen[str], dict]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(seconds)], cwd=ROOT,
                            env=_env(data_dir, linger_s), stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    return proc, json.loads(line)


def _gone(*pids: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in pids):
            return True
        time.sleep(0.2)
    return False


def test_services_are_shared_linger_survive_crashes_and_stop_when_unused(tmp_path: Path) -> None:
    data = tmp_path / "d"
    # a long linger (the keeper takes it from the process that starts it)
    p0, info0 = _hold(data, 0, linger_s=120)
    p0.wait(30)
    # the next processes, within the linger period, find them running: no restart
    p1, info1 = _hold(data, 60, linger_s=120)
    p2, info2 = _hold(data, 60, linger_s=120)
    assert info0 == info1 == info2  # one Postgres, one Redis, one keeper
    # a crash of everything but the servers: users and keeper killed
    for proc in (p1, p2):
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    os.kill(info1["keeper"], signal.SIGKILL)
    assert _gone(info1["keeper"], timeout_s=5)
    assert psutil.pid_exists(info1["pg_pid"]) and psutil.pid_exists(info1["redis_pid"])
    # the next process reuses the servers and brings a new keeper (with its short linger)
    linger = 3.0
    p3, info3 = _hold(data, 0, linger_s=linger)
    assert (info3["pg_pid"], info3["redis_pid"]) == (info1["pg_pid"], info1["redis_pid"])
    assert info3["keeper"] != info1["keeper"]
    p3.wait(30)
    # nobody uses them any more: after the linger period both stop, and so does the keeper
    assert _gone(info3["pg_pid"], info3["redis_pid"], info3["keeper"], timeout_s=linger + 20)


def test_keeper_stops_the_services_when_their_folder_is_deleted(tmp_path: Path) -> None:
    """A temporary data folder removed while its services linger: the keeper ends them by pid
    instead of leaving a Postgres and a Redis running with no folder behind them."""
    import shutil

    data = tmp_path / "gone"
    proc, info = _hold(data, 0, linger_s=120)
    proc.wait(30)
    assert psutil.pid_exists(info["pg_pid"]) and psutil.pid_exists(info["redis_pid"])
    time.sleep(2)  # the keeper, started by the process that just left, is on its rounds
    shutil.rmtree(data, ignore_errors=True)
    assert _gone(info["pg_pid"], info["redis_pid"], info["keeper"], timeout_s=20)


def test_keeper_stops_the_services_when_their_folder_is_deleted_and_made_again(
        tmp_path: Path) -> None:
    """The same, when the folder comes back empty at once (the keeper's own lock makes it again
    if it takes the lock just after the deletion): Redis must not be left running."""
    import shutil

    data = tmp_path / "again"
    proc, info = _hold(data, 0, linger_s=120)
    proc.wait(30)
    time.sleep(2)
    embedded = next(p.parent for p in data.rglob("keeper.json"))
    shutil.rmtree(data, ignore_errors=True)
    embedded.mkdir(parents=True)
    assert _gone(info["pg_pid"], info["redis_pid"], info["keeper"], timeout_s=20)
