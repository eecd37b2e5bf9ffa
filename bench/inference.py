"""Local inference: the studio path against ``model.generate`` called directly.

Same tiny model, prompt and settings (greedy, fixed number of new tokens). The studio path is
``backend.services.chat.stream_chat`` on a real worker process (Celery task on the gpu queue,
tokens streamed back through Redis); the baseline is ``model.generate`` in this process. Runs
alternate between the two and medians are compared:

- throughput_ratio: studio tokens/s (end to end, as the caller sees them) / direct tokens/s,
  the median over rounds of each round's pair
- ttft_overhead_ms: studio time to first token - direct time to first token (median of pairs)

Run: ``.venv/bin/python bench/inference.py [--tokens 200] [--rounds 7]``. It starts its own
embedded Postgres and Redis under a temporary folder (unless STUDIO_DATA_DIR is given), builds
the tiny model there and stops everything at the end. The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT = [{"role": "system", "content": "You are a helpful assistant."},
          {"role": "user", "content": "Write a short story about a robot who lives in a library."}]


def setup_environment(data_dir: Path) -> dict[str, str]:
    """Embedded services under ``data_dir``, migrated; their URLs exported for the worker."""
    from bench.environment import setup_environment as setup

    return setup(data_dir, OMP_NUM_THREADS="1")


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    from backend.services.chat import gpu_worker_alive

    name = f"bench-{os.getpid()}@{socket.gethostname()}"
    log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the worker
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "worker", "--queues", "gpu", "--concurrency", "1",
         "--name", name],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the worker exited early; see {log_path}")
        if gpu_worker_alive():
            time.sleep(0.5)
            return proc
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit(f"the worker did not start; see {log_path}")


def direct_run(lm: Any, inputs: dict[str, Any], gen_kwargs: dict[str, Any]) -> tuple[float, float, int]:
    """(seconds to first token, total seconds, new tokens) for plain ``model.generate``."""
    import torch
    from transformers.generation.streamers import BaseStreamer

    class FirstToken(BaseStreamer):
        def __init__(self) -> None:
            self.calls = 0
            self.first: float | None = None

        def put(self, value: Any) -> None:
            self.calls += 1
            if self.calls == 2 and self.first is None:  # call 1 is the prompt
                self.first = time.perf_counter()

        def end(self) -> None:
            pass

    streamer = FirstToken()
    started = time.perf_counter()
    with torch.inference_mode():
        out = lm.model.generate(**inputs, **gen_kwargs, streamer=streamer)
    total = time.perf_counter() - started
    n = int(out.shape[1] - inputs["input_ids"].shape[1])
    return (streamer.first or started) - started, total, n


def direct_throughput_run(lm: Any, inputs: dict[str, Any], gen_kwargs: dict[str, Any]
                          ) -> tuple[float, int]:
    """(total seconds, new tokens) for ``model.generate`` with no streamer at all."""
    import torch

    started = time.perf_counter()
    with torch.inference_mode():
        out = lm.model.generate(**inputs, **gen_kwargs)
    return time.perf_counter() - started, int(out.shape[1] - inputs["input_ids"].shape[1])


def studio_run(name: str, params: dict[str, Any]) -> tuple[float, float, int]:
    from backend.accounts.actor import Actor
    from backend.services.chat import stream_chat

    started = time.perf_counter()
    first: float | None = None
    stream = stream_chat(name, PROMPT, params, actor=Actor.system(), placement="worker")
    for _piece in stream:
        if first is None:
            first = time.perf_counter()
    total = time.perf_counter() - started
    assert stream.usage is not None
    return (first or started) - started, total, stream.usage.completion_tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=200, help="New tokens per run.")
    ap.add_argument("--rounds", type=int, default=7, help="Measured runs of each path.")
    args = ap.parse_args()

    own_dir = "STUDIO_DATA_DIR" not in os.environ
    data_dir = Path(tempfile.mkdtemp(prefix="studio-bench-")) if own_dir \
        else Path(os.environ["STUDIO_DATA_DIR"])
    if own_dir:  # registered first, so it runs after the embedded services have stopped
        atexit.register(shutil.rmtree, data_dir, True)
    env = setup_environment(data_dir)
    worker = None
    try:
        import torch

        from backend.accounts.actor import Actor
        from backend.config import get_settings
        from backend.llm.local_hf import _generation_kwargs, encode_chat, load_model
        from backend.llm.tiny import build_tiny_model
        from backend.llm.types import GenerationParams
        from backend.services.models import add_local_model

        threads = get_settings().torch_threads
        torch.set_num_threads(threads)
        folder = build_tiny_model(data_dir / "bench-tiny", seed=0)
        name = f"bench-tiny-{int(time.time())}"
        add_local_model(actor=Actor.system(), name=name, source=str(folder))
        print(f"tiny model: {folder}  torch threads: {threads}  tokens/run: {args.tokens}")

        worker = start_worker(env, data_dir / "bench-worker.log")
        # Stop strings and EOS never end a run early: both paths make exactly N tokens.
        params = {"temperature": 0, "max_new_tokens": args.tokens}
        lm = load_model(str(folder), device_preference="cpu")
        inputs = encode_chat(lm, PROMPT, None)
        gen_kwargs = _generation_kwargs(lm, GenerationParams.from_dict(params))
        gen_kwargs["generation_config"].eos_token_id = None  # always N tokens
        gen_kwargs["generation_config"].min_new_tokens = args.tokens
        print(f"device: {lm.device} ({lm.dtype}); prompt tokens: {inputs['input_ids'].shape[1]}")

        # warm both paths (the worker loads the model into its cache on the first request)
        studio_run(name, params)
        direct_run(lm, inputs, gen_kwargs)

        d_ttft, d_tps, s_ttft, s_tps = [], [], [], []
        n = args.tokens
        for i in range(args.rounds):
            # alternate the order so that drift in machine load favours neither path
            order = ("direct", "studio") if i % 2 == 0 else ("studio", "direct")
            for path in order:
                if path == "direct":
                    ft, _total, _n = direct_run(lm, inputs, gen_kwargs)
                    d_ttft.append(ft * 1000)
                    total, n_direct = direct_throughput_run(lm, inputs, gen_kwargs)
                    d_tps.append(n_direct / total)
                else:
                    ft, total, n = studio_run(name, params)
                    s_ttft.append(ft * 1000)
                    s_tps.append(n / total)
            print(f"round {i + 1}: direct {d_tps[-1]:7.1f} tok/s ttft {d_ttft[-1]:6.1f} ms | "
                  f"studio {s_tps[-1]:7.1f} tok/s ttft {s_ttft[-1]:6.1f} ms ({n} tokens)")
        if n != args.tokens:
            print(f"note: the studio path made {n} tokens (the model hit its end token); "
                  "tokens/s still compares like with like")

        med = statistics.median
        # paired per round: each studio run against the direct run next to it
        ratios = [s / d for s, d in zip(s_tps, d_tps, strict=True)]
        overheads = [s - d for s, d in zip(s_ttft, d_ttft, strict=True)]
        figures = {
            "throughput_ratio": round(med(ratios), 3),
            "ttft_overhead_ms": round(med(overheads), 1),
            "direct_tokens_per_s": round(med(d_tps), 1),
            "studio_tokens_per_s": round(med(s_tps), 1),
            "direct_ttft_ms": round(med(d_ttft), 1),
            "studio_ttft_ms": round(med(s_ttft), 1),
            "tokens": args.tokens,
            "rounds": args.rounds,
        }
        print(f"throughput (medians): studio {figures['studio_tokens_per_s']} vs direct "
              f"{figures['direct_tokens_per_s']} tokens/s; paired ratio "
              f"{figures['throughput_ratio']}")
        print(f"time to first token (medians): studio {figures['studio_ttft_ms']} ms vs direct "
              f"{figures['direct_ttft_ms']} ms; paired overhead {figures['ttft_overhead_ms']} ms")
        print(json.dumps(figures))
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        from backend.db import dispose_engines

        dispose_engines()


if __name__ == "__main__":
    main()
