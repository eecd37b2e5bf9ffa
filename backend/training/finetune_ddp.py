"""Data-parallel fine-tuning on a worker with several GPUs: the job launches ``torchrun`` with one
process per GPU; each runs the same recipe (``run_finetune``), the Trainer splits the batches.

The processes cannot hold the job's database context, so rank 0 reports through files in the
run folder and the launching job relays them:
- ``ddp-events.jsonl``: progress, metrics and log lines, one JSON object a line;
- ``ddp-stop``: written by the job when somebody cancels (every rank checks it each step);
- ``ddp-result.json``: the result dict, or ``{"cancelled": true}``.

On one machine without CUDA, ``nproc=1`` runs the same path on the CPU (tests use it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from backend.jobs.context import JobCancelled, JobContext, render_stage
from backend.training.finetune_config import FinetuneConfig

EVENTS, STOP, RESULT, SPEC = "ddp-events.jsonl", "ddp-stop", "ddp-result.json", "ddp-spec.json"


def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


def use_data_parallel(config: FinetuneConfig) -> bool:
    """Several GPUs, and a method that shards cleanly (QLoRA's 4-bit base stays on one)."""
    return gpu_count() > 1 and config.method != "qlora"


class FileContext:
    """The job context inside a torchrun process: rank 0 writes events, every rank stops when
    the stop file appears."""

    def __init__(self, run_dir: Path, resume_dir: Path | None, rank: int) -> None:
        self.job_id: int | None = None
        self.run_dir = run_dir
        self.resume_dir = resume_dir
        self.rank = rank
        self._events = run_dir / EVENTS

    def _write(self, event: dict[str, Any]) -> None:
        if self.rank == 0:
            with self._events.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(event) + "\n")

    def progress(self, fraction: float, stage: str | None = None, **stage_args: Any) -> None:
        self._write({"type": "progress", "fraction": fraction, "stage": stage,
                     "args": stage_args})

    def metric(self, name: str, value: float, step: int) -> None:
        self._write({"type": "metric", "name": name, "value": value, "step": step})

    def log(self, message: str, level: str = "INFO") -> None:
        self._write({"type": "log", "message": message, "level": level})

    def should_stop(self) -> bool:
        return (self.run_dir / STOP).exists()

    def check_cancelled(self) -> None:
        if self.should_stop():
            raise JobCancelled()


def _relay(ctx: JobContext, path: Path, offset: int) -> int:
    """Forward the events written since ``offset`` to the job; the new offset."""
    if not path.exists():
        return offset
    with path.open("r", encoding="utf-8") as fh:
        fh.seek(offset)
        for line in fh:
            if not line.endswith("\n"):
                break  # half-written: read it next time
            offset += len(line.encode("utf-8"))
            e = json.loads(line)
            if e["type"] == "progress":
                ctx.progress(e["fraction"], e["stage"], **(e["args"] or {}))
            elif e["type"] == "metric":
                ctx.metric(e["name"], e["value"], e["step"])
            elif e["type"] == "log":
                ctx.log(e["message"], e["level"])
    return offset


def launch(ctx: JobContext, inputs: Any, nproc: int, *, poll_s: float = 0.5) -> dict[str, Any]:
    """Run ``run_finetune`` under torchrun with ``nproc`` processes, relaying their reports."""
    run_dir = ctx.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in (EVENTS, STOP, RESULT):
        (run_dir / name).unlink(missing_ok=True)
    spec = {
        "base_path": str(inputs.base_path), "train": inputs.train, "val": inputs.val,
        "config": asdict(inputs.config), "output_dir": str(inputs.output_dir),
        "eval_records": inputs.eval_records, "run_dir": str(run_dir),
        "resume_dir": str(ctx.resume_dir) if ctx.resume_dir else None,
    }
    (run_dir / SPEC).write_text(json.dumps(spec), encoding="utf-8")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "backend.training.finetune_ddp",
           str(run_dir / SPEC)]
    ctx.log(f"Launching {nproc} training process(es): {' '.join(cmd[2:])}")
    log_path = run_dir / "ddp.log"
    with log_path.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "OMP_NUM_THREADS": os.environ.get(
                                    "OMP_NUM_THREADS", "1")})
        offset = 0
        try:
            while proc.poll() is None:
                offset = _relay(ctx, run_dir / EVENTS, offset)
                if ctx.should_stop():
                    (run_dir / STOP).touch()
                time.sleep(poll_s)
        except BaseException:
            proc.terminate()
            proc.wait(60)
            raise
    _relay(ctx, run_dir / EVENTS, offset)
    result_file = run_dir / RESULT
    if proc.returncode != 0 or not result_file.exists():
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"The training processes failed (exit {proc.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(result_file.read_text())
    if result.get("cancelled"):
        ctx.check_cancelled()
        raise JobCancelled()
    return result


def main(spec_path: str) -> None:
    from backend.training.finetune import FinetuneInputs, run_finetune

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    rank = int(os.environ.get("RANK", "0"))
    run_dir = Path(spec["run_dir"])
    ctx = FileContext(run_dir, Path(spec["resume_dir"]) if spec["resume_dir"] else None, rank)
    inputs = FinetuneInputs(
        base_path=Path(spec["base_path"]), train=spec["train"], val=spec["val"],
        config=FinetuneConfig.from_dict(spec["config"]), output_dir=Path(spec["output_dir"]),
        eval_records=spec["eval_records"])
    try:
        result: dict[str, Any] = run_finetune(ctx, inputs)
    except JobCancelled:
        result = {"cancelled": True}
    if rank == 0:
        (run_dir / RESULT).write_text(json.dumps(result), encoding="utf-8")
        ctx.log(render_stage("finished on {n} process(es)",
                             {"n": os.environ.get("WORLD_SIZE", "1")}))


if __name__ == "__main__":
    main(sys.argv[1])
