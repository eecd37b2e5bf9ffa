"""``studio jobs list|show|cancel|retry|demo``."""

from __future__ import annotations

import typer

from backend.cli.output import JSON_OPTION, cli_actor, echo_lines, emit, fail, service_errors
from backend.services import jobs as jobs_service

# Postgres bigint: a larger id cannot exist (and would not even reach the query)
MAX_ID = 2**63 - 1
JOB_ID = typer.Argument(..., min=1, max=MAX_ID, help="The job's number (see `studio jobs list`).")
TIMEOUT = typer.Option(None, "--timeout", min=0, help="Stop waiting after this many seconds.")

app = typer.Typer(help="Long-running jobs: list, inspect, cancel, retry.", no_args_is_help=True)


def _line(j: jobs_service.JobView) -> str:
    pct = f"{j.progress * 100:5.1f}%"
    return f"#{j.id:<5} {j.kind:<14} {j.status:<11} {pct}  {j.stage or ''}  {j.title}"


def _print_job(j: jobs_service.JobView) -> None:
    typer.echo(_line(j))
    if j.error:
        typer.echo(f"  error: {j.error}")
    if j.result:
        typer.echo(f"  result: {j.result}")


def wait_and_report(job: jobs_service.JobView, *, as_json: bool, timeout: float | None) -> None:
    """``--wait``: block until the job ends (running it here if no worker serves its queue)."""
    actor = cli_actor()
    if job.status == "queued" and not jobs_service.workers_alive(queue=job.queue):
        if not as_json:
            typer.echo(f"No worker serves the {job.queue} queue; running job #{job.id} here.")
        job = jobs_service.run_inline(actor=actor, job_id=job.id)
    job = jobs_service.wait_for_job(actor=actor, job_id=job.id, timeout_s=timeout)
    emit(job, as_json, _print_job)
    if job.status != "succeeded":
        raise typer.Exit(1)


@app.command("list")
def list_(
    kind: list[str] = typer.Option(None, "--kind", help="Only these kinds."),
    status: list[str] = typer.Option(
        None, "--status", help=f"Only these statuses: {', '.join(jobs_service.STATUSES)}."),
    search: str = typer.Option("", "--search", help="Text in the title, kind or stage."),
    limit: int = typer.Option(50, "--limit", min=1, max=100_000),
    as_json: bool = JSON_OPTION,
) -> None:
    """List jobs, newest first."""
    with service_errors(as_json):
        jobs = jobs_service.list_jobs(actor=cli_actor(), kinds=kind, statuses=status,
                                      search=search, limit=limit)
    emit(jobs, as_json, lambda js: echo_lines((_line(j) for j in js), empty="No jobs."))


@app.command("show")
def show(job_id: int = JOB_ID, as_json: bool = JSON_OPTION,
         logs: int = typer.Option(20, "--logs", min=0, max=100_000,
                                  help="Log lines to show.")) -> None:
    """One job with its metrics summary and log tail."""
    actor = cli_actor()
    try:
        job = jobs_service.get_job(actor=actor, job_id=job_id)
    except jobs_service.JobNotFound as err:
        fail(str(err), as_json=as_json)
    metrics = jobs_service.job_metrics(actor=actor, job_id=job_id)
    tail = jobs_service.job_log_tail(actor=actor, job_id=job_id, lines=logs)
    data = job.to_dict(include_detail=True)
    data["metrics"] = {k: [list(p) for p in v] for k, v in metrics.items()}
    data["log"] = [{"at": line.at, "level": line.level, "message": line.message} for line in tail]

    def human(_: object) -> None:
        _print_job(job)
        for name, points in metrics.items():
            typer.echo(f"  {name}: {len(points)} points, last {points[-1][1]:.4g} at step {points[-1][0]}")
        for line in tail:
            typer.echo(f"  [{line.level}] {line.message}")

    emit(data, as_json, human)


@app.command("cancel")
def cancel(job_id: int = JOB_ID, as_json: bool = JSON_OPTION) -> None:
    """Cancel a queued or running job."""
    try:
        job = jobs_service.cancel_job(actor=cli_actor(), job_id=job_id)
    except (jobs_service.JobNotFound, jobs_service.JobStateError) as err:
        fail(str(err), as_json=as_json)
    emit(job, as_json, _print_job)


@app.command("retry")
def retry(job_id: int = JOB_ID, as_json: bool = JSON_OPTION,
          wait: bool = typer.Option(False, "--wait", help="Block until the new job ends."),
          timeout: float = TIMEOUT) -> None:
    """Run a finished job again with the same parameters (resuming from its checkpoint)."""
    try:
        job = jobs_service.retry_job(actor=cli_actor(), job_id=job_id)
    except (jobs_service.JobNotFound, jobs_service.JobStateError) as err:
        fail(str(err), as_json=as_json)
    if wait:
        wait_and_report(job, as_json=as_json, timeout=timeout)
    else:
        emit(job, as_json, _print_job)


@app.command("demo")
def demo(steps: int = typer.Option(20, min=1, max=1_000_000, help="Number of steps."),
         step_seconds: float = typer.Option(0.2, min=0, max=3600, help="Seconds per step."),
         wait: bool = typer.Option(False, "--wait", help="Block until the job ends."),
         timeout: float = TIMEOUT,
         as_json: bool = JSON_OPTION) -> None:
    """Launch the demo job (progress, metrics, logs) to check that workers run jobs."""
    job = jobs_service.submit_job(actor=cli_actor(), kind="demo",
                                  params={"steps": steps, "step_seconds": step_seconds})
    if wait:
        wait_and_report(job, as_json=as_json, timeout=timeout)
    else:
        emit(job, as_json, _print_job)
