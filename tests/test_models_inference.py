"""Local inference through a real Celery worker on the gpu queue: tokens stream back through
Redis as they are made, stop works (button or leaving the loop), the CLI chats, parameters
matter, and the worker's model cache stays bounded."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from backend.accounts.actor import Actor
from backend.services import chat as chat_service
from backend.services import models as models_service

ROOT = Path(__file__).resolve().parent.parent
SYSTEM = Actor.system()
HELLO = [{"role": "user", "content": "Hello, how are you?"}]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> str:
    name = f"tiny-{uuid.uuid4().hex[:6]}"
    models_service.add_local_model(actor=SYSTEM, name=name, source=str(tiny_model_dir))
    return name


def studio(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


def test_chat_streams_tokens_from_the_worker(worker, tiny: str) -> None:  # noqa: ANN001
    stream = chat_service.stream_chat(tiny, HELLO, {"temperature": 0, "max_new_tokens": 120},
                                      actor=SYSTEM)
    arrivals: list[float] = []
    text = []
    for piece in stream:
        assert isinstance(piece, str)
        arrivals.append(time.perf_counter())
        text.append(piece)
    u = stream.usage
    assert u is not None and u.where.startswith(f"worker {worker.name}"), u
    assert u.completion_tokens == 120 and u.finish_reason == "length"
    assert u.prompt_tokens and u.prompt_tokens > 5
    assert u.ttft_ms is not None and u.tokens_per_s and u.tokens_per_s > 5
    # streamed: many pieces, spread over the generation rather than arriving at once
    assert len(arrivals) >= 10
    generating_s = (u.total_ms - u.ttft_ms) / 1000
    assert arrivals[-1] - arrivals[0] > 0.5 * generating_s
    # the same request in this process gives the same greedy text
    local = chat_service.chat(tiny, HELLO, {"temperature": 0, "max_new_tokens": 120},
                              actor=SYSTEM, placement="local")
    assert local.text == "".join(text)
    assert local.usage and local.usage.where.startswith("in-process")


def test_stop_ends_generation_on_the_worker(worker, tiny: str) -> None:  # noqa: ANN001
    stream = chat_service.stream_chat(tiny, HELLO, {"temperature": 0.8, "max_new_tokens": 5000,
                                                    "seed": 1}, actor=SYSTEM)
    stopped_at = None
    for n, _ in enumerate(stream, 1):
        if n == 5:
            chat_service.stop_chat(actor=SYSTEM, request_id=stream.request_id)
            stopped_at = time.perf_counter()
    assert stopped_at is not None
    assert time.perf_counter() - stopped_at < 2.0
    u = stream.usage
    assert u is not None and u.finish_reason == "stopped" and u.completion_tokens < 1000


def test_leaving_the_loop_stops_the_worker(worker, tiny: str) -> None:  # noqa: ANN001
    from backend.llm.channel import read_events

    stream = chat_service.stream_chat(tiny, HELLO, {"max_new_tokens": 5000, "seed": 2},
                                      actor=SYSTEM)
    for i, _ in enumerate(stream):
        if i == 3:
            break
    del _
    # the worker's own final event says it stopped early
    events = list(read_events(chat_service.channel_redis(), stream.request_id,
                              accept_timeout_s=5, idle_timeout_s=5))
    usage = events[-1]
    assert usage.finish_reason == "stopped" and usage.completion_tokens < 1000  # type: ignore[union-attr]


def test_seed_stop_strings_and_params_take_effect(worker, tiny: str) -> None:  # noqa: ANN001
    p = {"temperature": 1.0, "top_p": 0.9, "max_new_tokens": 40, "seed": 7}
    a = chat_service.chat(tiny, HELLO, p, actor=SYSTEM)
    b = chat_service.chat(tiny, HELLO, p, actor=SYSTEM)
    c = chat_service.chat(tiny, HELLO, {**p, "seed": 8}, actor=SYSTEM)
    assert a.text == b.text and a.text != c.text
    greedy = chat_service.chat(tiny, HELLO, {"temperature": 0, "max_new_tokens": 60},
                               actor=SYSTEM)
    text = greedy.text
    cut = next(i for i in range(len(text) // 3, len(text)) if text[i].strip())
    stop = text[cut:cut + 2]
    expected = text[: text.find(stop)]
    stopped = chat_service.chat(tiny, HELLO, {"temperature": 0, "max_new_tokens": 60,
                                              "stop": [stop]}, actor=SYSTEM)
    assert stopped.text == expected
    assert stopped.usage and stopped.usage.finish_reason == "stop"
    assert stopped.usage.completion_tokens < 60
    penalised = chat_service.chat(tiny, HELLO, {"temperature": 0, "max_new_tokens": 60,
                                                "repetition_penalty": 1.5}, actor=SYSTEM)
    assert penalised.text != text


def test_cli_chat_streams_from_the_worker(worker, tiny: str,  # noqa: ANN001
                                          studio_env: dict[str, str]) -> None:
    out = studio(studio_env, "chat", tiny, "Hello", "-n", "16", "-t", "0", "--json",
                 "--placement", "worker")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["usage"]["completion_tokens"] == 16
    assert data["usage"]["where"].startswith("worker ")
    assert data["text"] and data["request_id"]


def test_test_connection_of_a_local_model_answers(worker, tiny: str) -> None:  # noqa: ANN001
    result = models_service.test_model(actor=SYSTEM, model=tiny, timeout_s=60)
    assert result.ok, result.message
    assert "worker" in result.message
    assert models_service.get_model(actor=SYSTEM, model=tiny).last_test_ok is True


def test_worker_cache_is_bounded_lru(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    from backend.llm.local_hf import ModelCache

    second = tmp_path / "second"
    shutil.copytree(tiny_model_dir, second)
    cache = ModelCache(max_models=1, max_gb=10, device_preference="cpu")
    a = cache.get(str(tiny_model_dir))
    assert cache.get(str(tiny_model_dir)) is a  # reused, not reloaded
    loads: list[str] = []
    cache.get(str(second), on_load=lambda: loads.append("second"))
    assert loads == ["second"]
    assert [m.source for m in cache.loaded()] == [str(second)]
    assert a.device == "cpu" and a.dtype == "float32" and a.nbytes > 1e6
    tight = ModelCache(max_models=5, max_gb=a.nbytes * 1.5 / 1e9, device_preference="cpu")
    tight.get(str(tiny_model_dir))
    tight.get(str(second))
    assert [m.source for m in tight.loaded()] == [str(second)]


def test_ctrl_c_in_studio_chat_stops_the_worker(worker, tiny: str,  # noqa: ANN001
                                                studio_env: dict[str, str]) -> None:
    import os
    import re
    import signal

    before = worker.log().count("'stopped'")
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "chat", tiny, "Tell me a long story.", "-n", "5000",
         "--placement", "worker"],
        cwd=ROOT, env={**studio_env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # a test run started in the background inherits SIGINT ignored, and Python then keeps
        # ignoring it: give the CLI the default disposition a terminal's Ctrl-C meets
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout is not None
        got = proc.stdout.read(8)  # blocks until the answer is streaming
        assert got
        os.kill(proc.pid, signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "[stopped]" in err.decode()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and worker.log().count("'stopped'") == before:
        time.sleep(0.2)
    assert worker.log().count("'stopped'") == before + 1
    took = re.findall(r"succeeded in ([0-9.]+)s: 'stopped'", worker.log())[-1]
    assert float(took) < 30  # 5000 tokens would take far longer


def test_tools_reach_a_local_models_chat_template(tiny: str) -> None:
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    plain = chat_service.chat(tiny, HELLO, {"temperature": 0, "max_new_tokens": 4},
                              actor=SYSTEM, placement="local")
    with_tools = chat_service.chat(tiny, HELLO, {"temperature": 0, "max_new_tokens": 4},
                                   tools=tools, actor=SYSTEM, placement="local")
    assert plain.usage and with_tools.usage
    assert with_tools.usage.prompt_tokens > plain.usage.prompt_tokens + 10  # type: ignore[operator]


@pytest.mark.gpu
def test_cuda_picks_bf16_and_generates(tiny_model_dir: Path) -> None:
    from backend.llm.local_hf import ModelCache, generate_local
    from backend.llm.types import GenerationParams

    lm = ModelCache(max_models=1, max_gb=10, device_preference="auto").get(str(tiny_model_dir))
    assert lm.device == "cuda" and lm.dtype in ("bfloat16", "float16")
    events = list(generate_local(lm, HELLO, GenerationParams(temperature=0, max_new_tokens=16)))
    usage = events[-1]
    assert usage.completion_tokens == 16 and "cuda" in usage.where  # type: ignore[union-attr]
