"""Take a PNG of every studio page into docs/screenshots/ (run: .venv/bin/python scripts/screenshots.py).

It starts the studio (embedded Postgres and Redis, a worker, Streamlit) on free ports with a
throwaway data folder, seeds a few demo jobs (one succeeded, one failed, one running) so the pages
are not empty, and photographs each page with headless Chromium. Nothing of the user's data or
services is touched: the database and Redis URLs of the environment are ignored.

Chromium: ``apt-get install -y chromium`` (or set CHROMIUM=/path/to/chrome).
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT_DIR = ROOT / "docs" / "screenshots"
# url path -> window height (long pages get a taller window; Streamlit scrolls inside the page)
PAGES: dict[str, int] = {
    "home": 1100,
    "playground": 900,
    "knowledge": 900,
    "agents": 900,
    "finetune": 900,
    "pretrain": 900,
    "models": 900,
    "jobs": 1900,
    "settings": 1700,
}
ADMIN_USER = "admin"
ADMIN_PASSWORD = "screenshots-admin-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_chromium() -> str:
    for name in (os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    raise SystemExit("Chromium is not installed: run `apt-get install -y chromium` "
                     "(or set CHROMIUM to a Chrome/Chromium binary).")


def prepare_env(data_dir: Path) -> None:
    for key in ("STUDIO_DATABASE_URL", "STUDIO_REDIS_URL", "STUDIO_SECRET_KEY", "STUDIO_API_KEY"):
        os.environ.pop(key, None)
    os.environ.update({
        "STUDIO_DATA_DIR": str(data_dir),
        "STUDIO_HOST": "127.0.0.1",
        "STUDIO_STUDIO_PORT": str(free_port()),
        "STUDIO_API_PORT": str(free_port()),
        "STUDIO_HEARTBEAT_INTERVAL_S": "1",
        "OMP_NUM_THREADS": "1",
    })


def seed_jobs() -> dict[str, int]:
    """A finished, a failed and a running demo job; returns their ids by name."""
    from backend.accounts.actor import Actor
    from backend.services.jobs import get_job, run_inline, submit_job

    actor = Actor.system()
    done = submit_job(actor=actor, kind="demo", title="Demo job: 60 steps",
                      params={"steps": 60, "step_seconds": 0.01}, enqueue=False)
    run_inline(actor=actor, job_id=done.id)
    failed = submit_job(actor=actor, kind="demo", title="Demo job that fails at step 12",
                        params={"steps": 30, "step_seconds": 0.01, "fail_at": 12}, enqueue=False)
    run_inline(actor=actor, job_id=failed.id)
    running = submit_job(actor=actor, kind="demo", title="Demo job: long run",
                         params={"steps": 2000, "step_seconds": 0.2})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = get_job(actor=actor, job_id=running.id)
        if job.status == "running" and job.progress > 0.01:
            break
        time.sleep(0.5)
    return {"done": done.id, "failed": failed.id, "running": running.id}


def login_cookie_args() -> list[str]:
    """Pages behind a login gate: create an admin. A plain Chromium screenshot cannot fill the
    login form, so pages are shot only where the studio lets the screenshot in (see README)."""
    return []


def shoot(chromium: str, url: str, out: Path, *, height: int, budget_ms: int) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        args = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
            f"--window-size=1400,{height}", f"--screenshot={out}",
            f"--virtual-time-budget={budget_ms}", url,
        ]
        proc = subprocess.run(args, capture_output=True, timeout=120, check=False)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"chromium failed on {url}: {proc.stderr.decode(errors='replace')[-800:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="Folder for the PNGs.")
    parser.add_argument("--pages", nargs="*", default=list(PAGES), help="Pages to photograph.")
    parser.add_argument("--budget-ms", type=int, default=9000,
                        help="Virtual time Chromium gives a page to render (Streamlit draws "
                             "with JavaScript over a websocket).")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary data folder.")
    args = parser.parse_args()
    chromium = find_chromium()
    unknown = [p for p in args.pages if p not in PAGES]
    if unknown:
        raise SystemExit(f"Unknown pages: {', '.join(unknown)}. Pages: {', '.join(PAGES)}")

    data_dir = Path(tempfile.mkdtemp(prefix="studio-screens-"))
    # registered first, so it runs last: after the embedded services stopped at exit
    if args.keep:
        atexit.register(print, f"data kept in {data_dir}")
    else:
        atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    prepare_env(data_dir)
    from backend.config import get_settings, reset_settings
    from backend.launcher import Launcher

    reset_settings()
    launcher = Launcher(get_settings(), with_worker=True, with_api=False)
    try:
        print("starting the studio…", flush=True)
        base = launcher.start()
        _wait_for_worker()
        ids = seed_jobs()
        print(f"studio at {base}; seeded jobs {ids}", flush=True)
        for page in args.pages:
            query = f"?job={ids['done']}" if page == "jobs" else ""
            out = args.out / f"{page}.png"
            t0 = time.monotonic()
            shoot(chromium, f"{base}/{page}{query}", out, height=PAGES[page],
                  budget_ms=args.budget_ms)
            print(f"{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}  "
                  f"({time.monotonic() - t0:.1f} s)", flush=True)
    finally:
        launcher.stop()
    return 0


def _wait_for_worker(timeout_s: float = 90) -> None:
    from backend.services.jobs import workers_alive

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if workers_alive(queue="cpu"):
            return
        time.sleep(0.5)
    raise RuntimeError("the worker did not start; see its log in the data folder's logs/")


if __name__ == "__main__":
    raise SystemExit(main())
