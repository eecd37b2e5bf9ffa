"""Soak: the job system through crashes. Not part of the test suite (it takes minutes).

20 demo jobs run on three workers (default names, 2 jobs each) while the soak, playing a bad day:
- SIGKILLs a random worker every few seconds (and starts a new one),
- SIGKILLs Redis once (it comes back from its last snapshot, as the next command would start it),
- stops Postgres for 10 seconds once.
Like an operator, it retries every job that ends interrupted (a retry resumes from the checkpoint).
At the end it reports, for each of the 20 jobs (the last job of its chain of retries), whether it
succeeded, failed, is interrupted, or is stuck (still queued or running); how many jobs ran twice at
once (two runs of one chain whose working times overlap, or a run that kept working after its row
had ended); and how many retries resumed at the checkpoint their interrupted job had reached.

Run: ``.venv/bin/python bench/soak.py [--seed 1] [--jobs 20]``. It starts its own embedded
Postgres and Redis under a temporary folder and stops everything at the end. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STEPS, STEP_S = 50, 0.15
SOAK_ENV = {
    "STUDIO_HEARTBEAT_INTERVAL_S": "0.5",
    "STUDIO_HEARTBEAT_TIMEOUT_S": "15",  # longer than the Postgres outage
    "STUDIO_RECONCILE_INTERVAL_S": "2",
    "STUDIO_RECONCILE_AFTER_S": "5",
    "STUDIO_DB_RETRY_S": "30",
    "STUDIO_SERVICES_LINGER_S": "1",
    "STUDIO_WORKER_CONCURRENCY": "2",
    "STUDIO_SECRET_KEY": "soak-secret-key-0123456789",
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def setup(data_dir: Path) -> dict[str, str]:
    for key in [k for k in os.environ if k.startswith("STUDIO_")]:
        del os.environ[key]
    os.environ.update(SOAK_ENV)
    os.environ["STUDIO_DATA_DIR"] = str(data_dir)
    from backend import migrate
    from backend.config import get_settings, reset_settings
    from backend.embedded import ensure_services

    reset_settings()
    urls = ensure_services(get_settings())
    migrate.upgrade("head", url=urls.database_url)
    env = dict(os.environ)
    # workers use the services this process holds
    env["STUDIO_DATABASE_URL"], env["STUDIO_REDIS_URL"] = urls.database_url, urls.redis_url
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@dataclass
class Workers:
    env: dict[str, str]
    logs: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: int = 0

    def start(self) -> None:
        self.started += 1
        log = open(self.logs / f"worker-{self.started}.log", "wb")  # noqa: SIM115
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "backend.cli", "worker", "--queues", "cpu"], cwd=ROOT,
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    def kill_one(self, rng: random.Random) -> int | None:
        alive = [p for p in self.procs if p.poll() is None]
        if not alive:
            return None
        victim = rng.choice(alive)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(30)
        return victim.pid

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="Keep the jobs' run folders.")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    data = Path(tempfile.mkdtemp(prefix="studio-soak-"))
    env = setup(data)

    from sqlalchemy import func, select

    from backend.accounts.actor import Actor
    from backend.config import get_settings
    from backend.db import session_scope
    from backend.embedded import embedded_redis, start_postgres, stop_postgres
    from backend.jobs.runner import run_dir_for
    from backend.models.jobs import Job, JobLog, JobMetric
    from backend.services import jobs as jobs_service

    admin = Actor.system()
    logs = data / "soak-logs"
    logs.mkdir()
    workers = Workers(env, logs)
    for _ in range(3):
        workers.start()
    say(f"data folder {data}; 3 workers starting")
    chains: dict[int, list[int]] = {}  # original job id -> [job ids of its chain]
    for _ in range(args.jobs):
        job = jobs_service.submit_job(actor=admin, kind="demo",
                                      params={"steps": STEPS, "step_seconds": STEP_S})
        chains[job.id] = [job.id]
    checkpoint_at: dict[int, int] = {}  # interrupted job -> steps its checkpoint held
    retried_from: dict[int, int] = {}  # retry -> the interrupted job it retries
    pg = get_settings().embedded_dir / "pg"
    redis = embedded_redis(get_settings())
    started = time.monotonic()
    next_kill = started + rng.uniform(3, 6)
    redis_kill_at, pg_stop_at = started + 12, started + 25
    redis_killed = pg_stopped = False
    kills = 0
    db_down = False

    def checkpoint_of(chain: list[int]) -> int:
        """The step a retry of this chain should resume at: the newest checkpoint along it."""
        for job_id in reversed(chain):
            path = run_dir_for(job_id) / "checkpoint.txt"
            if path.exists():
                return int(path.read_text())
        return 0

    def operator_round() -> bool:
        """Retry what ended interrupted; True when every chain has ended for good."""
        done = True
        for chain in chains.values():
            last = jobs_service.get_job(actor=admin, job_id=chain[-1])
            if last.status == "interrupted" and len(chain) < 8:
                checkpoint_at[last.id] = checkpoint_of(chain)
                new = jobs_service.retry_job(actor=admin, job_id=last.id)
                retried_from[new.id] = last.id
                chain.append(new.id)
                say(f"job #{last.id} interrupted at step {checkpoint_at[last.id]}: "
                    f"retried as #{new.id}")
                done = False
            elif not last.finished:
                done = False
        return done

    deadline = started + 300
    while time.monotonic() < deadline:
        now = time.monotonic()
        if not db_down and now >= next_kill and now - started < 45:
            pid = workers.kill_one(rng)
            kills += 1
            say(f"SIGKILL worker pid {pid}; starting another")
            workers.start()
            next_kill = now + rng.uniform(4, 8)
        if not redis_killed and now >= redis_kill_at:
            pid = redis.server_pid()
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                say(f"SIGKILL Redis (pid {pid})")
                time.sleep(1)
                redis.start()
                say("Redis started again from its last snapshot")
            redis_killed = True
        if not pg_stopped and now >= pg_stop_at:
            say("stopping Postgres for 10 s")
            stop_postgres(pg)
            db_down, pg_stopped = True, True
            time.sleep(10)
            start_postgres(pg)
            db_down = False
            say("Postgres is back")
        try:
            if operator_round() and now - started > 50:
                break
        except Exception as exc:  # noqa: BLE001 - e.g. a read while Redis restarts
            say(f"operator could not look: {str(exc).splitlines()[0]}")
        time.sleep(1)
    elapsed = time.monotonic() - started

    # the outcome, from the rows
    outcome = {"succeeded": 0, "failed": 0, "interrupted": 0, "cancelled": 0, "stuck": 0}
    ran_twice = resumed_ok = resumed_total = 0
    with session_scope() as session:
        def last_work(job_id: int):  # type: ignore[no-untyped-def]
            return session.execute(select(func.max(JobMetric.created_at))
                                   .where(JobMetric.job_id == job_id)).scalar()

        for chain in chains.values():
            rows = [session.get(Job, jid) for jid in chain]
            last = rows[-1]
            assert last is not None
            outcome["stuck" if last.status in ("queued", "running") else last.status] += 1
            spans = []
            for row in rows:
                assert row is not None
                end = last_work(row.id)
                if row.started_at is not None and end is not None:
                    spans.append((row.started_at, end))
                # working on after its row had ended (beyond one heartbeat and one metric flush)
                if end is not None and row.finished_at is not None and \
                        end > row.finished_at + timedelta(seconds=2):
                    ran_twice += 1
            spans.sort()
            ran_twice += sum(1 for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1])
        resent = session.execute(select(func.count()).select_from(JobLog).where(
            JobLog.message.like("Its message was not in the queue any more%"))).scalar() or 0
        for new_id, old_id in retried_from.items():
            row = session.get(Job, new_id)
            if row is None or row.started_at is None:
                continue  # never ran (it is counted as stuck if it is still queued)
            resumed_total += 1
            said = session.execute(select(JobLog.message).where(
                JobLog.job_id == new_id, JobLog.message.like("Resuming from step %"))).scalar()
            start = int(said.rsplit(" ", 1)[1]) if said else 0
            if start == checkpoint_at[old_id]:
                resumed_ok += 1
            else:
                say(f"retry #{new_id} started at step {start}, its checkpoint was "
                    f"{checkpoint_at[old_id]}")
    workers.stop_all()
    print(f"{args.jobs} jobs, {kills} worker SIGKILLs, 1 Redis SIGKILL, 1 Postgres outage "
          f"of 10 s; {len(retried_from)} retries; {resent} lost messages sent again by "
          f"reconciliation; {elapsed:.0f} s")
    print(f"final: {outcome['succeeded']} succeeded, {outcome['failed']} failed, "
          f"{outcome['interrupted']} interrupted, {outcome['cancelled']} cancelled, "
          f"{outcome['stuck']} stuck; ran twice at once: {ran_twice}; retries that resumed at "
          f"their job's checkpoint: {resumed_ok}/{resumed_total}")
    if not args.keep:  # the services stop by themselves once this process has gone
        shutil.rmtree(data / "runs", ignore_errors=True)
    print(json.dumps({"jobs": args.jobs, "stuck": outcome["stuck"], "ran_twice": ran_twice,
                      "resumed_at_checkpoint": resumed_ok, "retries": len(retried_from), "resent": resent,
                      "succeeded": outcome["succeeded"], "failed": outcome["failed"],
                      "interrupted": outcome["interrupted"], "worker_kills": kills,
                      "seconds": round(elapsed)}))


if __name__ == "__main__":
    main()
