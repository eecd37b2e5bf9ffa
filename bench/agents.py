"""Agents: the runtime's overhead, and a published bot under 50 concurrent API clients.

1. Overhead. The same tiny model, prompt and settings (greedy, a fixed number of new tokens)
   through ``backend.services.agents.stream_agent`` (a LangGraph tool loop with no tool to call,
   conversation, messages and trace stored in Postgres) and through
   ``backend.services.chat.stream_chat`` directly, both on a real gpu-queue worker. After a
   warm-up (``--warmup`` runs of each path: the worker loads the model, and Postgres and psycopg
   settle on prepared statements, which psycopg makes at a query's fifth run, for both paths'
   queries), runs alternate, each round in the opposite order to the one before; the ratios are
   medians of the paired runs' ratios: time to first token and total time (agent /
   stream_chat). ``agent_overhead_ratio`` is the total-time ratio.
2. Load. The bot is published and served by the API (uvicorn in this process); 50 clients
   (threads with the official ``openai`` client) stream an answer at once. Reported: errors, and
   the 95th percentile of their time to first token against one client alone.

Run: ``.venv/bin/python bench/agents.py [--tokens 64] [--rounds 30] [--clients 50]``. It starts
its own embedded Postgres, Redis and worker under a temporary folder and stops them at the end.
The last line is a JSON object (with the load average before and after: the machine's other
work inflates the timings).
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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from inference import setup_environment, start_worker  # noqa: E402

SYSTEM = "You are a helpful assistant."
QUESTION = "Write a short story about a robot who lives in a library."


def chat_run(model: str, params: dict[str, Any]) -> tuple[float, float]:
    from backend.accounts.actor import Actor
    from backend.services.chat import stream_chat

    started = time.perf_counter()
    first = None
    for _ in stream_chat(model, [{"role": "system", "content": SYSTEM},
                                 {"role": "user", "content": QUESTION}], params,
                         actor=Actor.system(), placement="worker"):
        if first is None:
            first = time.perf_counter()
    return (first or started) - started, time.perf_counter() - started


def agent_run(agent: str) -> tuple[float, float]:
    from backend.accounts.actor import Actor
    from backend.services.agents import stream_agent

    started = time.perf_counter()
    first = None
    run = stream_agent(actor=Actor.system(), agent=agent, question=QUESTION, version="draft",
                       placement="worker")
    for _ in run:
        if first is None:
            first = time.perf_counter()
    return (first or started) - started, time.perf_counter() - started


def serve_api() -> tuple[Any, str]:
    import uvicorn

    from backend.api.app import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}/v1"


def client_ttft(url: str, key: str, bot: str) -> float:
    import openai

    client = openai.OpenAI(base_url=url, api_key=key, timeout=600, max_retries=0)
    started = time.perf_counter()
    first = None
    for chunk in client.chat.completions.create(
            model=bot, messages=[{"role": "user", "content": QUESTION}], stream=True):
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
    if first is None:
        raise RuntimeError("no text came back")
    return first - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=64, help="New tokens per answer.")
    ap.add_argument("--rounds", type=int, default=30, help="Measured runs of each path.")
    ap.add_argument("--warmup", type=int, default=6, help="Unmeasured runs of each path first.")
    ap.add_argument("--clients", type=int, default=50,
                    help="Concurrent API clients (0: measure the overhead only).")
    args = ap.parse_args()

    own_dir = "STUDIO_DATA_DIR" not in os.environ
    data_dir = Path(tempfile.mkdtemp(prefix="studio-bench-")) if own_dir \
        else Path(os.environ["STUDIO_DATA_DIR"])
    if own_dir:
        atexit.register(shutil.rmtree, data_dir, True)
    env = setup_environment(data_dir)
    worker = None
    server = None
    try:
        from backend.accounts.actor import Actor
        from backend.llm.tiny import build_tiny_model
        from backend.services import accounts, agents
        from backend.services.models import add_local_model

        system = Actor.system()
        folder = build_tiny_model(data_dir / "bench-tiny", seed=0)
        model = f"bench-tiny-{int(time.time())}"
        add_local_model(actor=system, name=model, source=str(folder))
        params = {"temperature": 0, "max_new_tokens": args.tokens}
        bot = agents.create_agent(actor=system, name=f"bench-bot-{int(time.time())}", config={
            "model": model, "system_prompt": SYSTEM, "params": params, "memory_turns": 0})
        agents.publish_agent(actor=system, agent=bot.id)
        worker = start_worker(env, data_dir / "bench-worker.log")
        print(f"tiny model {folder}; {args.tokens} new tokens per answer; one gpu worker")

        load_before = os.getloadavg()[0]
        for _ in range(max(1, args.warmup)):  # the first loads the model on the worker
            chat_run(model, params)
            agent_run(bot.name)
        c_ttft, c_total, a_ttft, a_total = [], [], [], []
        for i in range(args.rounds):
            for path in (("chat", "agent") if i % 2 == 0 else ("agent", "chat")):
                ft, total = chat_run(model, params) if path == "chat" else agent_run(bot.name)
                (c_ttft if path == "chat" else a_ttft).append(ft)
                (c_total if path == "chat" else a_total).append(total)
            print(f"round {i + 1}: stream_chat ttft {c_ttft[-1] * 1000:6.1f} ms total "
                  f"{c_total[-1] * 1000:7.1f} ms | agent ttft {a_ttft[-1] * 1000:6.1f} ms total "
                  f"{a_total[-1] * 1000:7.1f} ms")
        med = statistics.median
        ttft_ratio = med(a / c for a, c in zip(a_ttft, c_ttft, strict=True))
        total_ratio = med(a / c for a, c in zip(a_total, c_total, strict=True))
        load = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        print(f"agent / stream_chat (paired medians): time to first token {ttft_ratio:.3f}x, "
              f"total {total_ratio:.3f}x; medians: stream_chat ttft {med(c_ttft) * 1000:.1f} ms, "
              f"agent ttft {med(a_ttft) * 1000:.1f} ms; load average {load[0]} -> {load[1]}")

        if args.clients <= 0:  # the overhead only
            print(json.dumps({"agent_overhead_ratio": round(total_ratio, 3),
                              "agent_ttft_ratio": round(ttft_ratio, 3), "errors": None,
                              "p95_ttft_ratio_50_clients": None, "clients": 0,
                              "tokens": args.tokens, "rounds": args.rounds, "load": load}))
            return
        server, url = serve_api()
        admin = accounts.create_first_admin(username="bench", password="bench password 1") \
            if accounts.needs_first_admin() else None
        user_id = admin.id if admin else accounts.list_users(actor=system)[0].id
        key = accounts.create_api_key(actor=system, user_id=user_id, name="bench").key
        client_ttft(url, key, bot.name)  # warm
        alone = med([client_ttft(url, key, bot.name) for _ in range(3)])
        errors = 0
        ttfts: list[float] = []

        def one(_: int) -> float | None:
            try:
                return client_ttft(url, key, bot.name)
            except Exception as exc:  # noqa: BLE001 - counted, and the first is shown
                print(f"client error: {type(exc).__name__}: {exc}", file=sys.stderr)
                return None

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            for r in pool.map(one, range(args.clients)):
                if r is None:
                    errors += 1
                else:
                    ttfts.append(r)
        wall = time.perf_counter() - started
        ttfts.sort()
        p95 = ttfts[max(0, int(round(0.95 * len(ttfts))) - 1)] if ttfts else float("nan")
        print(f"{args.clients} clients at once: {errors} errors, all answered in {wall:.1f} s; "
              f"time to first token p50 {med(ttfts) * 1000 if ttfts else float('nan'):.0f} ms, "
              f"p95 {p95 * 1000:.0f} ms; one client alone {alone * 1000:.0f} ms")
        figures = {
            "agent_overhead_ratio": round(total_ratio, 3),
            "agent_ttft_ratio": round(ttft_ratio, 3),
            "errors": errors,
            "p95_ttft_ratio_50_clients": round(p95 / alone, 2) if ttfts else None,
            "p95_ttft_ms_50_clients": round(p95 * 1000, 1) if ttfts else None,
            "ttft_ms_one_client": round(alone * 1000, 1),
            "clients": args.clients,
            "tokens": args.tokens,
            "rounds": args.rounds,
            "load": load,
        }
        print(json.dumps(figures))
    finally:
        if server is not None:
            server.should_exit = True
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
