"""``studio datasets add|list|show|validate|delete``: fine-tuning datasets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from backend.cli.output import JSON_OPTION, cli_actor, echo_lines, emit, fail, service_errors
from backend.services import datasets as datasets_service

app = typer.Typer(help="Fine-tuning datasets: add (with versions), list, show, validate.",
                  no_args_is_help=True)

FORMAT_OPTION = typer.Option(None, "--format", "-f",
                             help="alpaca, chat or preference (default: detected).")


def _line(d: datasets_service.DatasetView) -> str:
    return f"#{d.id:<4} {d.name:<28} {d.format:<11} v{d.latest_version:<3} {d.records} records"


def _read(path: Path, as_json: bool) -> bytes:
    if not path.is_file():
        fail(f"No file at {path}.", as_json=as_json)
    return path.read_bytes()


def report_invalid(err: datasets_service.DatasetInvalid, as_json: bool, path: str) -> None:
    """Every bad line, then exit 1."""
    if as_json:
        sys.stdout.write(json.dumps({"error": str(err), "issues": [i.to_dict() for i in err.issues]},
                                    ensure_ascii=False) + "\n")
    else:
        typer.secho(f"{path}: {len(err.issues)} bad record(s); nothing was saved or launched.",
                    fg=typer.colors.RED, err=True)
        for issue in err.issues:
            typer.echo(f"  {issue.text()}", err=True)
    raise typer.Exit(1)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Dataset name (an existing one gets a new version)."),
    file: Path = typer.Argument(..., help="A .jsonl, .json or .csv file."),
    format: str = FORMAT_OPTION,
    description: str = typer.Option("", "--description"),
    base: str = typer.Option(None, "--base", help="Check lengths with this model's tokenizer."),
    max_length: int = typer.Option(None, "--max-length", help="Longest example in tokens."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Validate a file and save its records as a dataset version."""
    data = _read(file, as_json)
    try:
        with service_errors(as_json):
            view = datasets_service.add_dataset(
                actor=cli_actor(), name=name, filename=file.name, data=data, format=format,
                description=description, base_model=base,
                max_length=max_length if base else None)
    except datasets_service.DatasetInvalid as err:
        report_invalid(err, as_json, str(file))
    emit(view, as_json, lambda d: typer.echo(_line(d)))


@app.command("validate")
def validate(
    file: Path = typer.Argument(..., help="A .jsonl, .json or .csv file."),
    format: str = FORMAT_OPTION,
    base: str = typer.Option(None, "--base", help="Check lengths with this model's tokenizer."),
    max_length: int = typer.Option(512, "--max-length", help="Longest example in tokens."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Check every record; exits 1 when a record is bad (each one listed by line)."""
    data = _read(file, as_json)
    with service_errors(as_json):
        parsed = datasets_service.validate_file(actor=cli_actor(), filename=file.name, data=data,
                                                format=format, base_model=base,
                                                max_length=max_length if base else None)
    report = parsed.report()

    def human(r: dict[str, object]) -> None:
        typer.echo(f"{file}: {r['format']} format, {r['valid']} of {r['records']} records valid")
        for issue in parsed.issues:
            typer.echo(f"  {issue.text()}")
        for line, first in parsed.duplicates:
            typer.echo(f"  line {line}: duplicate of line {first}")

    emit(report, as_json, human)
    if not parsed.ok:
        raise typer.Exit(1)


@app.command("list")
def list_(search: str = typer.Option("", "--search", help="Text in the name or description."),
          as_json: bool = JSON_OPTION) -> None:
    """List datasets."""
    views = datasets_service.list_datasets(actor=cli_actor(), search=search)
    emit(views, as_json, lambda vs: echo_lines((_line(d) for d in vs),
                                               empty="No datasets yet. Add one with "
                                                     "`studio datasets add NAME FILE`."))


@app.command("show")
def show(dataset: str, as_json: bool = JSON_OPTION) -> None:
    """One dataset with its versions."""
    with service_errors(as_json):
        view = datasets_service.get_dataset(actor=cli_actor(), dataset=dataset)

    def human(d: datasets_service.DatasetView) -> None:
        typer.echo(_line(d))
        if d.description:
            typer.echo(f"  {d.description}")
        for v in d.versions:
            dups = len(v.stats.get("duplicates", []))
            typer.echo(f"  v{v.version}: {v.records} records from {v.original_name or d.source}"
                       f"{f', {dups} duplicates' if dups else ''}  ({v.created_at:%Y-%m-%d %H:%M})")

    emit(view, as_json, human)


@app.command("from-feedback")
def from_feedback(
    name: str = typer.Argument(..., help="Dataset name for the chat examples."),
    agent: str = typer.Option(None, "--agent", help="Only this agent's feedback."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the records; save nothing."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Agent feedback as datasets: thumbs-up answers become chat examples (NAME); thumbs-down
    answers with a corrected answer in the comment become preference pairs (NAME-preferences)."""
    with service_errors(as_json):
        out = datasets_service.build_from_feedback(actor=cli_actor(), name=name, agent=agent,
                                                   save=not dry_run)
    emit(out, as_json, lambda d: typer.echo(
        f"{len(d['chat'])} chat example(s), {len(d['preference'])} preference pair(s)"
        + (f"; saved as {', '.join(d['datasets'].values())}" if d["datasets"] else "")))


@app.command("from-kb")
def from_kb(
    name: str = typer.Argument(..., help="Dataset name for the pairs."),
    kb: str = typer.Option(..., "--kb", help="Knowledge base (name or id)."),
    model: str = typer.Option(..., "--model", help="The model that writes the pairs."),
    max_chunks: int = typer.Option(50, "--max-chunks", help="Passages to use, at most."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the pairs; save nothing."),
    as_json: bool = JSON_OPTION,
) -> None:
    """A model writes one question/answer pair per passage of a knowledge base (a job); the
    pairs are saved as a dataset (or, with --dry-run, shown for review)."""
    from backend.services import jobs as jobs_service

    actor = cli_actor()
    with service_errors(as_json):
        job = datasets_service.start_qa_generation(actor=actor, kb=kb, model=model,
                                                   max_chunks=max_chunks)
    if not jobs_service.workers_alive(queue=job.queue):
        typer.echo(f"No worker serves the {job.queue} queue; running job #{job.id} here.",
                   err=True)
        jobs_service.run_inline(actor=actor, job_id=job.id)
    job = jobs_service.wait_for_job(actor=actor, job_id=job.id)
    if job.status != "succeeded":
        fail(f"Job #{job.id} {job.status}: {job.error or ''}", as_json=as_json)
    pairs = (job.result or {}).get("pairs", [])
    out: dict[str, object] = {"job": job.id, "pairs": pairs, "dataset": None}
    if not dry_run:
        with service_errors(as_json):
            out["dataset"] = datasets_service.save_qa_pairs(
                actor=actor, name=name, pairs=pairs, note=f"from {kb} by {model}").name
    emit(out, as_json, lambda d: typer.echo(
        f"{len(pairs)} pair(s)" + (f" saved as {d['dataset']}" if d["dataset"] else "")))


@app.command("delete")
def delete(dataset: str, as_json: bool = JSON_OPTION) -> None:
    """Delete a dataset and every version of it."""
    with service_errors(as_json):
        view = datasets_service.delete_dataset(actor=cli_actor(), dataset=dataset)
    emit(view, as_json, lambda d: typer.echo(f"Deleted {d.name}."))
