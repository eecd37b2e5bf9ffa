"""``studio finetune run|estimate|list|export``: fine-tune a registered local model."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import typer

from backend.cli.datasets import report_invalid
from backend.cli.output import JSON_OPTION, cli_actor, echo_lines, emit, fail, service_errors
from backend.services import datasets as datasets_service

app = typer.Typer(help="Fine-tune a model on a dataset (LoRA, QLoRA, full, DPO).",
                  no_args_is_help=True)


def _settings(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _dataset_ref(data: str, fmt: str | None, as_json: bool) -> str:
    """A dataset name, or a file that becomes (a new version of) the dataset named after it."""
    path = Path(data)
    if not path.is_file():
        return data
    try:
        with service_errors(as_json):
            view = datasets_service.add_dataset(actor=cli_actor(), name=path.stem,
                                                filename=path.name, data=path.read_bytes(),
                                                format=fmt)
    except datasets_service.DatasetInvalid as err:
        report_invalid(err, as_json, str(path))
    typer.echo(f"Dataset {view.name} v{view.latest_version}: {view.records} records", err=True)
    return view.name


@app.command("run")
def run(
    base: str = typer.Option(..., "--base", help="Base model (name or id)."),
    data: str = typer.Option(..., "--data", help="A dataset name, or a .jsonl/.json/.csv file."),
    method: str = typer.Option(None, "--method", help="lora (default), qlora, full or dpo."),
    preset: str = typer.Option("balanced", "--preset", help="quick, balanced or thorough."),
    epochs: float = typer.Option(None, "--epochs"),
    learning_rate: float = typer.Option(None, "--learning-rate"),
    lora_rank: int = typer.Option(None, "--lora-rank"),
    batch_size: int = typer.Option(None, "--batch-size"),
    max_length: int = typer.Option(None, "--max-length"),
    val_fraction: float = typer.Option(None, "--val-fraction",
                                       help="Share held out for validation (0: none)."),
    packing: bool = typer.Option(None, "--packing/--no-packing"),
    seed: int = typer.Option(None, "--seed"),
    data_format: str = typer.Option(None, "--format", help="Format of a --data file."),
    eval_data: str = typer.Option(None, "--eval", help="Evaluation dataset or file (scored)."),
    name: str = typer.Option(None, "--name", help="Name of the resulting model."),
    wait: bool = typer.Option(False, "--wait", help="Block until the job ends."),
    timeout: float = typer.Option(None, "--timeout"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Launch a fine-tune job; with --wait, print its outcome (model name, figures)."""
    from backend.services import finetune as finetune_service

    with service_errors(as_json):
        config = finetune_service.make_config(preset=preset, settings=_settings(
            method=method, epochs=epochs, learning_rate=learning_rate, lora_rank=lora_rank,
            batch_size=batch_size, max_length=max_length, val_fraction=val_fraction,
            packing=packing, seed=seed))
    dataset = _dataset_ref(data, data_format, as_json)
    eval_ref = _dataset_ref(eval_data, None, as_json) if eval_data else None
    with service_errors(as_json):
        job = finetune_service.start_finetune(actor=cli_actor(), base_model=base, dataset=dataset,
                                              config=config, name=name, eval_dataset=eval_ref)
    if wait:
        _wait(job, as_json=as_json, timeout=timeout)
    else:
        emit(job, as_json, lambda j: typer.echo(f"Launched job #{j.id}: {j.title}"))


FIGURES = ("train_loss", "val_loss", "perplexity", "margin_before", "margin_after", "eval",
           "steps", "train_seconds")


def _wait(job: Any, *, as_json: bool, timeout: float | None) -> None:
    """Block until the job ends (running it here when no gpu worker is alive), then print one
    line: with --json the job with ``model`` and ``evaluation`` on top."""
    from backend.services import jobs as jobs_service

    actor = cli_actor()
    if job.status == "queued" and not jobs_service.workers_alive(queue=job.queue):
        typer.echo(f"No worker serves the {job.queue} queue; running job #{job.id} here.",
                   err=True)
        job = jobs_service.run_inline(actor=actor, job_id=job.id)
    job = jobs_service.wait_for_job(actor=actor, job_id=job.id, timeout_s=timeout)
    result = job.result or {}
    data = {**job.to_dict(), "model": result.get("model"),
            "evaluation": {k: result[k] for k in FIGURES if result.get(k) is not None}}
    if as_json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
    elif job.status == "succeeded":
        figures = ", ".join(f"{k} {v:.4g}" for k, v in data["evaluation"].items()
                            if isinstance(v, float))
        typer.echo(f"Job #{job.id} succeeded: model {data['model']} ({figures})")
    else:
        typer.secho(f"Job #{job.id} {job.status}: {job.error or ''}", fg=typer.colors.RED,
                    err=True)
    if job.status != "succeeded":
        raise typer.Exit(1)


@app.command("estimate")
def estimate(
    base: str = typer.Option(..., "--base"),
    data: str = typer.Option(..., "--data", help="A dataset name."),
    method: str = typer.Option(None, "--method"),
    preset: str = typer.Option("balanced", "--preset"),
    batch_size: int = typer.Option(None, "--batch-size"),
    max_length: int = typer.Option(None, "--max-length"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Memory and time the run would need on the workers' hardware."""
    from backend.services import finetune as finetune_service

    with service_errors(as_json):
        config = finetune_service.make_config(preset=preset, settings=_settings(
            method=method, batch_size=batch_size, max_length=max_length))
        est = finetune_service.estimate_run(actor=cli_actor(), base_model=base, dataset=data,
                                            config=config)

    def human(e: Any) -> None:
        typer.echo(f"{e.device}: about {e.memory_gb:.2f} GiB, {e.seconds:.0f} s "
                   f"({e.trainable_parameters:,} trainable parameters, {e.tokens:,} tokens)")
        if e.warning:
            typer.secho(e.warning, fg=typer.colors.YELLOW)

    emit(est, as_json, human)


@app.command("list")
def list_(as_json: bool = JSON_OPTION) -> None:
    """Fine-tune jobs, newest first."""
    from backend.services import finetune as finetune_service

    runs = finetune_service.list_runs(actor=cli_actor())
    emit(runs, as_json, lambda rs: echo_lines(
        (f"#{r.id:<5} {r.status:<11} {r.title}" for r in rs), empty="No fine-tune runs yet."))


@app.command("export")
def export(model: str, out: Path = typer.Option(Path("."), "--out", help="Folder for the zip."),
           as_json: bool = JSON_OPTION) -> None:
    """Write a fine-tuned model (safetensors HF folder) as a zip."""
    from backend.services import finetune as finetune_service

    with service_errors(as_json):
        path = finetune_service.export_zip(actor=cli_actor(), model=model)
    if not out.is_dir():
        fail(f"No folder at {out}.", as_json=as_json)
    target = out / path.name
    shutil.copyfile(path, target)
    emit({"zip": str(target), "bytes": target.stat().st_size}, as_json,
         lambda d: typer.echo(f"Wrote {d['zip']}"))
