"""Batch evaluation: rows per second of a prompt evaluation job, batched against one row at a time.

Both runs are the studio's own ``prompt_eval`` job on a real worker process (gpu queue), over the
same 64 rows on the tiny local model (greedy, 32 new tokens, exact-match scoring). The batched
run answers ``--batch-size`` rows per left-padded ``generate``; the sequential run uses batch
size 1, i.e. one row after another. A warm-up job loads the model into the worker's cache first.
Rows/s is rows / the job's running time (started to finished: rendering, generation, scoring,
results file).

Run: ``.venv/bin/python bench/batch_eval.py [--rows 64] [--batch-size 32] [--threads 1]``. It
starts its own embedded Postgres and Redis under a temporary folder (unless STUDIO_DATA_DIR is
given) and stops everything at the end. The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inference import setup_environment, start_worker  # noqa: E402


def run_job(name: str, prompt: str, rows: list[dict[str, str]], batch_size: int,
            tokens: int) -> float:
    """Submit one evaluation job, wait for it, return its rows per second."""
    from backend.accounts.actor import Actor
    from backend.services import jobs as jobs_service
    from backend.services import prompt_eval

    actor = Actor.system()
    job_id = prompt_eval.submit_eval(actor=actor, rows=rows, models=[name], prompt=prompt,
                                     scoring="exact", batch_size=batch_size,
                                     params={"temperature": 0, "max_new_tokens": tokens})
    job = jobs_service.wait_for_job(actor=actor, job_id=job_id, timeout_s=1800, poll_s=0.2)
    if job.status != "succeeded":
        raise SystemExit(f"job #{job_id} {job.status}: {job.error}")
    assert job.started_at and job.finished_at
    seconds = (job.finished_at - job.started_at).total_seconds()
    res = prompt_eval.eval_results(actor=actor, job_id=job_id)
    assert len(res.rows) == len(rows), "every row has a result"
    return len(rows) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=32, help="New tokens per row.")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads on the worker (1: the machine is shared; see SETUP-NOTES).")
    args = ap.parse_args()

    os.environ["STUDIO_TORCH_THREADS"] = str(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    own_dir = "STUDIO_DATA_DIR" not in os.environ
    data_dir = Path(tempfile.mkdtemp(prefix="studio-bench-")) if own_dir \
        else Path(os.environ["STUDIO_DATA_DIR"])
    if own_dir:
        atexit.register(shutil.rmtree, data_dir, True)
    env = setup_environment(data_dir)
    worker = None
    try:
        from backend.accounts.actor import Actor
        from backend.llm.tiny import build_tiny_model
        from backend.services.models import add_local_model
        from backend.services.prompts import create_prompt

        folder = build_tiny_model(data_dir / "bench-tiny", seed=0)
        name = f"bench-tiny-{int(time.time())}"
        add_local_model(actor=Actor.system(), name=name, source=str(folder))
        prompt = f"bench-prompt-{int(time.time())}"
        create_prompt(actor=Actor.system(), name=prompt, system="Answer in one word.",
                      template="Question {{ n }}: what is {{ a }} plus {{ b }}?")
        rows = [{"n": str(i), "a": str(i * 7 % 50), "b": str(i * 3 % 20),
                 "expected": str(i * 7 % 50 + i * 3 % 20)} for i in range(args.rows)]
        print(f"tiny model: {folder}; {args.rows} rows, {args.tokens} new tokens each, "
              f"worker torch threads {args.threads}")
        worker = start_worker(env, data_dir / "bench-worker.log")
        run_job(name, prompt, rows[:4], 4, args.tokens)  # warm-up: loads the model
        batched = run_job(name, prompt, rows, args.batch_size, args.tokens)
        print(f"batched (batch {args.batch_size}): {batched:.2f} rows/s")
        sequential = run_job(name, prompt, rows, 1, args.tokens)
        print(f"sequential (batch 1):  {sequential:.2f} rows/s")
        speedup = batched / sequential
        print(f"speedup: {speedup:.1f}x")
        print(json.dumps({"batched_rows_per_s": round(batched, 3),
                          "sequential_rows_per_s": round(sequential, 3),
                          "speedup": round(speedup, 2), "rows": args.rows,
                          "batch_size": args.batch_size, "new_tokens": args.tokens,
                          "threads": args.threads}))
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(30)
            except Exception:  # noqa: BLE001 - make sure it is gone
                os.killpg(worker.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
