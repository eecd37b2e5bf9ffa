"""Fixtures: a real embedded Postgres (pgvector) and Redis under a temporary data dir, migrated to
head, and real Celery worker processes. Nothing of ours is mocked."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

TEST_ENV = {
    "STUDIO_HEARTBEAT_INTERVAL_S": "0.5",
    "STUDIO_HEARTBEAT_TIMEOUT_S": "4",
    "STUDIO_SECRET_KEY": "test-secret-key-0123456789abcdef",
    "STUDIO_TORCH_THREADS": "1",
    # the ONNX export of the bundled MiniLM (same vectors) is tested on its own, not made per run
    "STUDIO_EMBEDDING_BACKEND": "torch",
    # services of a test's own data folder stop soon after its processes end
    "STUDIO_SERVICES_LINGER_S": "2",
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def studio_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Embedded services for the whole run; their URLs are exported so subprocesses share them."""
    from backend.config import reset_settings
    from backend.db import dispose_engines

    data_dir = tmp_path_factory.mktemp("studio")
    saved = dict(os.environ)
    for key in list(os.environ):
        if key.startswith("STUDIO_"):
            del os.environ[key]
    os.environ.update(TEST_ENV)
    os.environ["STUDIO_DATA_DIR"] = str(data_dir)
    reset_settings()
    from backend.config import get_settings
    from backend.embedded import ensure_services

    urls = ensure_services(get_settings())
    os.environ["STUDIO_DATABASE_URL"] = urls.database_url
    os.environ["STUDIO_REDIS_URL"] = urls.redis_url
    reset_settings()
    from backend import migrate

    migrate.upgrade("head", url=urls.database_url)
    env = dict(os.environ)
    yield env
    dispose_engines()
    os.environ.clear()
    os.environ.update(saved)
    reset_settings()


@dataclass
class WorkerHandle:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_worker(env: dict[str, str], name: str, queues: str = "cpu,gpu",
                 log_dir: Path | None = None, timeout_s: float = 60) -> WorkerHandle:
    from backend.accounts.actor import Actor
    from backend.services.jobs import list_workers

    nodename = f"{name}@{socket.gethostname()}"
    log_dir = log_dir or Path(env["STUDIO_DATA_DIR"]) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    logf = open(log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "worker", "--queues", queues, "--name", nodename],
        cwd=ROOT, env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
    )
    handle = WorkerHandle(nodename, proc, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{handle.log()[-3000:]}")
        alive = [w for w in list_workers(actor=Actor.system()) if w.hostname == nodename]
        if alive and alive[0].pid == proc.pid:
            # ready signal fired; give the consumer a moment to subscribe
            time.sleep(0.5)
            return handle
        time.sleep(0.3)
    handle.kill()
    raise RuntimeError(f"worker did not become ready:\n{handle.log()[-3000:]}")


@pytest.fixture(scope="module")
def worker(studio_env: dict[str, str]) -> Iterator[WorkerHandle]:
    """A real Celery worker process serving both queues, for one test module."""
    handle = start_worker(studio_env, f"test-worker-{os.getpid()}")
    yield handle
    handle.kill(signal.SIGTERM)


@pytest.fixture
def worker_factory(studio_env: dict[str, str]) -> Iterator:
    """Start workers inside a test (e.g. to kill one); all are stopped afterwards."""
    started: list[WorkerHandle] = []

    def factory(name: str, queues: str = "cpu,gpu") -> WorkerHandle:
        h = start_worker(studio_env, name, queues)
        started.append(h)
        return h

    yield factory
    for h in started:
        h.kill(signal.SIGKILL)


@pytest.fixture
def empty_database(studio_env: dict[str, str]) -> Iterator[str]:
    """The URL of a new, empty database on the test server (no schema); dropped afterwards."""
    import uuid as _uuid

    from sqlalchemy import text as _text

    from backend.db import get_engine

    name = f"scratch_{_uuid.uuid4().hex[:10]}"
    admin = get_engine().execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(_text(f'CREATE DATABASE "{name}"'))
    try:
        yield get_engine().url.set(database=name).render_as_string(hide_password=False)
    finally:
        with get_engine().execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(_text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def fresh_database(empty_database: str) -> Iterator[str]:
    """An empty database of its own, migrated to head, that this process uses for one test
    (a true first start: no users at all). The session's database comes back afterwards."""
    from backend import migrate
    from backend.config import reset_settings
    from backend.db import dispose_engines

    url = empty_database
    migrate.upgrade("head", url=url)
    saved = os.environ["STUDIO_DATABASE_URL"]
    os.environ["STUDIO_DATABASE_URL"] = url
    reset_settings()
    try:
        yield url
    finally:
        os.environ["STUDIO_DATABASE_URL"] = saved
        reset_settings()
        dispose_engines()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny chat model (byte-level BPE + 4-layer Llama, random weights, HF format), built
    offline once per test session. Reuse it; copy it before changing it."""
    from backend.llm.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "tiny", seed=0)
