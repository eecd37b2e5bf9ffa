"""A demo job: counts through steps, reports progress, a falling 'loss', and log lines.

It is what the Jobs page's "Run a demo job" button and the job-system tests launch.
"""

from __future__ import annotations

import math
import time
from typing import Any

from backend.jobs.context import JobContext
from backend.jobs.kinds import job_kind


@job_kind("demo", queue="cpu", title="Demo job")
def run_demo(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    steps = int(params.get("steps", 20))
    delay = float(params.get("step_seconds", 0.1))
    fail_at = params.get("fail_at")
    if steps < 1:
        raise ValueError("steps must be at least 1")
    if delay < 0:
        raise ValueError("step_seconds must be 0 or more")
    ctx.log(f"Demo job: {steps} steps of {delay:.2f} s")
    checkpoint = ctx.run_dir / "checkpoint.txt"
    start = 0
    for candidate in (ctx.resume_dir, ctx.run_dir):
        if candidate is not None and (candidate / "checkpoint.txt").exists():
            start = int((candidate / "checkpoint.txt").read_text())
            ctx.log(f"Resuming from step {start}")
            break
    loss = 0.0
    for step in range(start, steps):
        ctx.check_cancelled()
        if fail_at is not None and step == int(fail_at):
            raise RuntimeError(f"demo failure requested at step {step}")
        time.sleep(delay)
        loss = 2.0 * math.exp(-step / max(steps / 4, 1)) + 0.1
        ctx.metric("loss", loss, step)
        ctx.progress((step + 1) / steps, "step {step}/{total}", step=step + 1, total=steps)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.write_text(str(step + 1))
    ctx.log("Demo job finished")
    return {"steps": steps, "resumed_from": start, "final_loss": loss}
