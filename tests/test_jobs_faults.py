"""The job system keeps its promises through crashes (issue 8): Postgres is the truth, Redis can
be lost, no job runs twice, a row never leaves a final state. Real workers, a real Redis killed
with SIGKILL, the real Postgres stopped and started again."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backend.accounts.actor import Actor
from backend.jobs.outage import DB_UNREACHABLE_MESSAGE
from backend.services import jobs as jobs_service

ROOT = Path(__file__).resolve().parent.parent
ADMIN = Actor.system()


def _until(pred: Callable[[], object], timeout_s: float, what: str, poll_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def _job(job_id: int) -> jobs_service.JobView:
    return jobs_service.get_job(actor=ADMIN, job_id=job_id)


def _log(job_id: int) -> list[str]:
    return [line.message for line in jobs_service.job_log_tail(actor=ADMIN, job_id=job_id)]


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as logf:
            self.proc = subprocess.Popen([sys.executable, "-m", "backend.cli", *args], cwd=ROOT,
                                         env=env, stdout=logf, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(30)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    started: list[Proc] = []

    def start(args: list[str], env: dict[str, str], name: str) -> Proc:
        p = Proc(args, env, tmp_path / f"{name}.log")
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def _worker_of(proc: Proc) -> jobs_service.WorkerView:
    _until(lambda: proc.proc.poll() is not None or any(
        w.pid == proc.proc.pid for w in jobs_service.list_workers(actor=ADMIN)), 60,
        "the worker to announce itself")
    assert proc.proc.poll() is None, proc.log()[-3000:]
    time.sleep(0.5)  # the consumer subscribes right after the ready signal
    return next(w for w in jobs_service.list_workers(actor=ADMIN) if w.pid == proc.proc.pid)


def _start_worker(procs, env, name, *extra: str) -> tuple[Proc, jobs_service.WorkerView]:  # type: ignore[no-untyped-def]
    p = procs(["worker", *extra], env, name)
    return p, _worker_of(p)


# --- 1. every worker process has its own identity; a final state is final -----------------


def test_two_workers_under_the_default_name_leave_each_others_jobs_alone(studio_env, procs) -> None:
    w1, v1 = _start_worker(procs, studio_env, "w1", "--queues", "cpu")
    # long enough to outlast the start of a second worker on a busy machine
    job = jobs_service.submit_job(actor=ADMIN, kind="demo", params={"steps": 200, "step_seconds": 0.1})
    _until(lambda: _job(job.id).status == "running", 30, "the job to run")
    w2, v2 = _start_worker(procs, studio_env, "w2", "--queues", "cpu")
    assert v1.hostname != v2.hostname
    assert str(w1.proc.pid) in v1.hostname and str(w2.proc.pid) in v2.hostname
    assert _job(job.id).status == "running"  # the second worker did not touch it
    # an explicit name a live worker holds is refused, in one line
    dup = subprocess.run([sys.executable, "-m", "backend.cli", "worker", "--queues", "cpu",
                          "--name", v1.hostname], cwd=ROOT, env=studio_env,
                         capture_output=True, text=True, timeout=120)
    assert dup.returncode == 1
    assert dup.stderr.strip().splitlines() == [
        f"A worker named {v1.hostname} is already running (pid {w1.proc.pid}). "
        "Give this one another --name, or leave --name out for a unique one."]
    final = jobs_service.wait_for_job(actor=ADMIN, job_id=job.id, timeout_s=60)
    assert final.status == "succeeded" and final.error is None, final
    assert final.worker_host == v1.hostname
    assert not [m for m in _log(job.id) if m.startswith("Marked interrupted")]


def test_a_job_marked_interrupted_elsewhere_stays_interrupted(studio_env, procs) -> None:
    from backend.db import session_scope
    from backend.jobs.reaper import reap_stale_jobs

    _start_worker(procs, studio_env, "w", "--queues", "cpu")
    job = jobs_service.submit_job(actor=ADMIN, kind="demo", params={"steps": 30, "step_seconds": 0.1})
    _until(lambda: _job(job.id).progress > 0.1, 30, "the job to make progress")
    with session_scope() as session:  # as a reaper that judged its worker dead would
        assert reap_stale_jobs(session, timeout_s=0) >= 1
    marked = _job(job.id)
    assert marked.status == "interrupted"
    time.sleep(4.5)  # longer than the job had left to run
    after = _job(job.id)
    assert after.status == "interrupted" and after.result is None
    assert after.finished_at == marked.finished_at and after.error == marked.error
    # and its runner stopped: progress froze within a beat of the mark
    assert after.progress < 1.0


# --- 4. retry -> cancel -> retry resumes from the newest checkpoint along the chain --------


def test_retry_of_a_cancelled_retry_resumes_from_the_checkpoint_before_it(studio_env) -> None:
    from backend.jobs.runner import run_job

    a = jobs_service.submit_job(actor=ADMIN, kind="demo", enqueue=False,
                                params={"steps": 40, "step_seconds": 0.05})
    runner = threading.Thread(target=run_job, args=(a.id,))
    runner.start()
    _until(lambda: _job(a.id).progress >= 0.3, 30, "job A to make progress")
    jobs_service.cancel_job(actor=ADMIN, job_id=a.id)
    runner.join(30)
    a_done = _job(a.id)
    assert a_done.status == "cancelled"
    done_steps = round(a_done.progress * 40)
    assert done_steps >= 12
    b = jobs_service.retry_job(actor=ADMIN, job_id=a.id)
    jobs_service.cancel_job(actor=ADMIN, job_id=b.id)  # B never runs: it has no run folder
    c = jobs_service.retry_job(actor=ADMIN, job_id=b.id)
    final = jobs_service.run_inline(actor=ADMIN, job_id=c.id)
    assert final.status == "succeeded", final.error
    assert final.result is not None and final.result["resumed_from"] >= done_steps - 1


# --- 2. Redis lost: queued jobs are sent again -------------------------------------------


def test_reconciliation_resends_a_queued_job_whose_message_is_gone(studio_env) -> None:
    import redis

    from backend.config import get_settings
    from backend.embedded import redis_py_url

    client = redis.Redis.from_url(redis_py_url(get_settings().redis_url or ""))
    job = jobs_service.submit_job(actor=ADMIN, kind="demo", params={"steps": 1, "step_seconds": 0})
    task_id = _celery_task_id(job.id)
    assert task_id in jobs_service._waiting_task_ids({"cpu"})
    assert jobs_service.reconcile_queued_jobs(older_than_s=0) == []  # its message is there
    for raw in client.lrange("cpu", 0, -1):  # the message is lost
        if task_id.encode() in raw:
            client.lrem("cpu", 0, raw)
    assert task_id not in jobs_service._waiting_task_ids({"cpu"})
    assert jobs_service.reconcile_queued_jobs(older_than_s=60) == []  # not old enough yet
    assert jobs_service.reconcile_queued_jobs(older_than_s=0) == [job.id]
    assert _celery_task_id(job.id) in jobs_service._waiting_task_ids({"cpu"})
    assert "Its message was not in the queue any more: sent again." in _log(job.id)
    jobs_service.cancel_job(actor=ADMIN, job_id=job.id)


def _celery_task_id(job_id: int) -> str:
    from backend.db import session_scope
    from backend.models.jobs import Job

    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.celery_task_id
        return job.celery_task_id


def test_redis_killed_queued_jobs_run_once_a_worker_is_up(studio_env, procs) -> None:
    from backend.config import get_settings
    from backend.embedded import embedded_redis

    # killed workers of earlier tests read as alive until their heartbeat is old
    _until(lambda: not jobs_service.workers_alive(queue="cpu"), 30, "no worker on cpu")
    jobs = [jobs_service.submit_job(actor=ADMIN, kind="demo",
                                    params={"steps": 1, "step_seconds": 0}) for _ in range(3)]
    server = embedded_redis(get_settings())
    pid = server.server_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # no time to save: the queued messages are gone
    _until(lambda: not server.ping(), 10, "Redis to die")
    server.start()  # back from its last snapshot, as the next studio command would do
    assert not {_celery_task_id(j.id) for j in jobs} & jobs_service._waiting_task_ids({"cpu"})
    env = dict(studio_env, STUDIO_RECONCILE_INTERVAL_S="1", STUDIO_RECONCILE_AFTER_S="2")
    _start_worker(procs, env, "w", "--queues", "cpu")
    for j in jobs:
        final = jobs_service.wait_for_job(actor=ADMIN, job_id=j.id, timeout_s=60)
        assert final.status == "succeeded", final
        assert final.attempt == 1  # ran once


# --- 3. Postgres away for ten seconds --------------------------------------------------


def test_a_ten_second_database_outage_costs_no_job(studio_env, procs, monkeypatch) -> None:
    from backend.config import get_settings, reset_settings
    from backend.embedded import start_postgres, stop_postgres
    from backend.worker.celery_app import get_celery

    # the outage is shorter than the heartbeat timeout (here and in the workers)
    monkeypatch.setenv("STUDIO_HEARTBEAT_TIMEOUT_S", "60")
    reset_settings()
    env = dict(studio_env, STUDIO_HEARTBEAT_TIMEOUT_S="60")
    _start_worker(procs, env, "w-cpu", "--queues", "cpu")
    # the gpu worker gives up on the database after 3 s: its running job ends interrupted
    _start_worker(procs, dict(env, STUDIO_DB_RETRY_S="3"), "w-gpu", "--queues", "gpu")
    rides = jobs_service.submit_job(actor=ADMIN, kind="demo",
                                    params={"steps": 30, "step_seconds": 0.2})
    gives_up = jobs_service.submit_job(actor=ADMIN, kind="demo", enqueue=False,
                                       params={"steps": 30, "step_seconds": 0.2})
    jobs_service._enqueue(gives_up.id, "gpu")
    queued = [jobs_service.submit_job(actor=ADMIN, kind="demo", enqueue=False,
                                      params={"steps": 2, "step_seconds": 0}) for _ in range(2)]
    _until(lambda: _job(rides.id).progress > 0.05 and _job(gives_up.id).progress > 0.05, 30,
           "both long jobs to run")
    pgdata = get_settings().embedded_dir / "pg"
    stop_postgres(pgdata)
    try:
        # messages arrive while the database is down: the workers take them and cannot claim
        for job, queue in zip(queued, ("cpu", "gpu"), strict=True):
            get_celery().send_task("studio.run_job", args=[job.id], queue=queue)
        time.sleep(10)
    finally:
        start_postgres(pgdata)
    final = jobs_service.wait_for_job(actor=ADMIN, job_id=rides.id, timeout_s=90)
    assert final.status == "succeeded" and final.error is None, final
    assert not [m for m in _log(rides.id) if m.startswith("Marked interrupted")]
    stopped = jobs_service.wait_for_job(actor=ADMIN, job_id=gives_up.id, timeout_s=60)
    assert stopped.status == "interrupted" and stopped.error == DB_UNREACHABLE_MESSAGE, stopped
    for job in queued:
        done = jobs_service.wait_for_job(actor=ADMIN, job_id=job.id, timeout_s=60)
        assert done.status == "succeeded", done


# --- 5, 6, 7, 8: the command line ---------------------------------------------------------


def _studio(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "backend.cli", *args], cwd=ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_bad_input_gets_one_line_and_a_nonzero_exit(studio_env) -> None:
    cases = {
        ("jobs", "show", "99999999999999999999"):
            "Invalid value for 'job_id': Input should be less than or equal to 9223372036854775807",
        ("jobs", "list", "--limit", "-1"):
            "Invalid value for '--limit': Input should be greater than or equal to 1",
        ("jobs", "show", "1", "--logs", "-1"):
            "Invalid value for '--logs': Input should be greater than or equal to 0",
        ("jobs", "demo", "--steps", "-5", "--wait"):
            "Invalid value for '--steps': Input should be greater than or equal to 1",
        ("jobs", "demo", "--steps", "2", "--step-seconds", "-1", "--wait"):
            "Invalid value for '--step-seconds': Input should be greater than or equal to 0",
        ("jobs", "list", "--status", "bogus"):
            "Unknown status 'bogus'; choose from queued, running, succeeded, failed, cancelled, "
            "interrupted.",
        ("models", "add", "far", "--base-url", "http://127.0.0.1:99999/v1", "--model", "m"):
            "the port must be a number from 1 to 65535",
        ("worker", "--concurrency", "0"):
            "Invalid value for '--concurrency': Input should be greater than or equal to 1",
    }
    running = {args: _studio(studio_env, *args) for args in cases}
    try:
        for args, proc in running.items():
            out, err = proc.communicate(timeout=180)
            lines = err.strip().splitlines()
            assert proc.returncode != 0, (args, out, err)
            assert len(lines) == 1 and "Traceback" not in err, (args, err)
            assert cases[args] in lines[0], (args, lines[0])
    finally:  # a command that wrongly accepted its input (a worker) must not outlive the test
        for proc in running.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
    name = f"用户{os.getpid()}"  # letters of any language are letters
    user = _studio(studio_env, "users", "create", name, "--password-stdin", "--json")
    out, err = user.communicate("a-long-password-1\n", timeout=180)
    assert user.returncode == 0, err
    assert json.loads(out)["username"] == name


def test_sigterm_of_api_and_worker_releases_the_embedded_services(studio_env, tmp_path) -> None:
    import httpx
    import psutil

    env = {k: v for k, v in studio_env.items() if k not in ("STUDIO_DATABASE_URL", "STUDIO_REDIS_URL")}
    data = tmp_path / "own"
    env.update(STUDIO_DATA_DIR=str(data), STUDIO_SERVICES_LINGER_S="1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    first = subprocess.run([sys.executable, "-m", "backend.cli", "jobs", "list", "--json"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert first.returncode == 0, first.stderr  # makes the database and its schema
    logs = tmp_path / "logs"
    api = Proc(["api", "--port", str(port)], env, logs / "api.log")
    worker = Proc(["worker", "--queues", "cpu"], env, logs / "worker.log")
    try:
        _until(lambda: _answers(httpx, f"http://127.0.0.1:{port}/health"), 90, "the API")
        _until(lambda: "ready on queues" in worker.log(), 90, "the worker")
        pg = int((data / "embedded" / "pg" / "postmaster.pid").read_text().splitlines()[0])
        redis_pid = int((data / "embedded" / "redis" / "redis.pid").read_text())
        for proc in (api, worker):
            proc.stop(signal.SIGTERM)
        _until(lambda: not (psutil.pid_exists(pg) or psutil.pid_exists(redis_pid)), 30,
               "Postgres and Redis to stop")
    finally:
        api.stop()
        worker.stop()


def _answers(httpx, url: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_studio_up_headless_serves_api_and_worker_and_stops_all_of_it(studio_env, tmp_path) -> None:
    import httpx
    import psutil

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        api_port = s.getsockname()[1]
    env = {k: v for k, v in studio_env.items() if k not in ("STUDIO_DATABASE_URL", "STUDIO_REDIS_URL")}
    data = tmp_path / "data"
    # its own embedded services, with a long linger: Ctrl-C on `studio up` must not wait for it
    env.update(STUDIO_API_PORT=str(api_port), STUDIO_DATA_DIR=str(data),
               STUDIO_SERVICES_LINGER_S="600")
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "up", "--no-studio"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        first = proc.stdout.readline().decode()  # type: ignore[union-attr]
        # printed once the API answers and the worker has announced itself
        assert "LLM Studio is running headless (no web UI)" in first, first
        assert f"API: http://127.0.0.1:{api_port}/v1" in first
        assert "Postgres: postgresql+psycopg://" in first and "Redis: unix://" in first
        assert httpx.get(f"http://127.0.0.1:{api_port}/health", timeout=5).json() == {"status": "ok"}
        children = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "worker" in names and "uvicorn" in names and "streamlit" not in names
        pg = int((data / "embedded" / "pg" / "postmaster.pid").read_text().splitlines()[0])
        redis_pid = int((data / "embedded" / "redis" / "redis.pid").read_text())
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out.decode()
        time.sleep(0.5)
        left = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert not left, [c.cmdline() for c in left]
        # everything stopped, the services too, without waiting out the linger
        _until(lambda: not (psutil.pid_exists(pg) or psutil.pid_exists(redis_pid)), 15,
               "Postgres and Redis to stop")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
