"""``studio prompts create|save|list|show|versions|diff|restore|delete|run|eval|runs``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from backend.cli.output import JSON_OPTION, cli_actor, echo_lines, emit, fail, service_errors

if TYPE_CHECKING:
    from backend.services.prompts import PromptView

app = typer.Typer(help="Prompts: save versions, compare, run against models, evaluate in batch.",
                  no_args_is_help=True)

EXAMPLE_HELP = "A few-shot example as 'USER => ASSISTANT' (repeatable)."


def _examples(items: list[str] | None, as_json: bool) -> list[dict[str, str]]:
    out = []
    for item in items or []:
        if "=>" not in item:
            fail(f"--example {item!r}: write it as 'user message => answer'.", as_json=as_json)
        user, answer = item.split("=>", 1)
        out.append({"user": user.strip(), "assistant": answer.strip()})
    return out


def _output_format(fmt: str, schema: str | None, as_json: bool) -> dict[str, Any]:
    if fmt not in ("text", "list", "json"):
        fail("--format must be text, list or json.", as_json=as_json)
    if schema and fmt != "json":
        fail("--schema goes with --format json.", as_json=as_json)
    out: dict[str, Any] = {"type": fmt}
    if schema:
        path = Path(schema)
        if not schema.lstrip().startswith("{") and path.is_dir():
            fail(f"--schema {schema} is a folder; give a JSON schema file or the schema's text.",
                 as_json=as_json)
        out["schema"] = path.read_text() if not schema.lstrip().startswith("{") and \
            path.is_file() else schema
    return out


def _vars(items: list[str] | None, as_json: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            fail(f"--var {item!r}: write it as name=value.", as_json=as_json)
        k, v = item.split("=", 1)
        out[k.strip()] = v
    return out


def _print_prompt(p: PromptView) -> None:
    v = p.current
    typer.echo(f"{p.name}  (version {v.version} of {p.latest_version}: {v.message})")
    if v.system:
        typer.echo(f"system:   {v.system}")
    typer.echo(f"template: {v.template}")
    for ex in v.examples:
        typer.echo(f"example:  {ex['user']} => {ex['assistant']}")
    if v.output_format.get("type") != "text":
        typer.echo(f"output:   {v.output_format}")
    typer.echo(f"variables: {', '.join(v.variables) or '(none)'}")


TEMPLATE_OPT = typer.Option(..., "--template", "-t",
                            help="The user message, with {{ variables }}.")
SYSTEM_OPT = typer.Option("", "--system", "-s", help="The system message.")
MESSAGE_OPT = typer.Option("", "--message", "-m", help="What this version changes.")
EXAMPLE_OPT = typer.Option(None, "--example", help=EXAMPLE_HELP)
FORMAT_OPT = typer.Option("text", "--format", help="Output format: text, list or json.")
SCHEMA_OPT = typer.Option(None, "--schema", help="JSON schema (text or a file) for --format json.")


@app.command("create")
def create(name: str, template: str = TEMPLATE_OPT, system: str = SYSTEM_OPT,
           message: str = MESSAGE_OPT, example: list[str] = EXAMPLE_OPT,
           fmt: str = FORMAT_OPT, schema: str = SCHEMA_OPT,
           description: str = typer.Option("", "--description"),
           as_json: bool = JSON_OPTION) -> None:
    """Save a new prompt (its version 1)."""
    from backend.services import prompts as svc

    with service_errors(as_json):
        p = svc.create_prompt(actor=cli_actor(), name=name, description=description or "",
                              template=template, system=system or "", message=message or "",
                              examples=_examples(example, as_json),
                              output_format=_output_format(fmt, schema, as_json))
    emit(p, as_json, lambda _: typer.echo(f"Saved {p.name} version {p.version}."))


@app.command("save")
def save(name: str, template: str = TEMPLATE_OPT,
         system: str = typer.Option(None, "--system", "-s",
                                    help="The system message (default: the latest version's)."),
         message: str = MESSAGE_OPT,
         example: list[str] = typer.Option(None, "--example",
                                           help=EXAMPLE_HELP + " Default: the latest's."),
         fmt: str = typer.Option(None, "--format", help="text, list or json (default: the "
                                                       "latest version's)."),
         schema: str = SCHEMA_OPT, as_json: bool = JSON_OPTION) -> None:
    """Save the next version of an existing prompt (parts not given stay as they were)."""
    from backend.services import prompts as svc

    with service_errors(as_json):
        latest = svc.get_prompt(actor=cli_actor(), name=name).current
        output_format = _output_format(fmt, schema, as_json) if fmt else latest.output_format
        p = svc.save_version(
            actor=cli_actor(), name=name, template=template,
            system=latest.system if system is None else system, message=message or "",
            examples=_examples(example, as_json) if example else latest.examples,
            output_format=output_format, context=latest.context, params=latest.params)
    emit(p, as_json, lambda _: typer.echo(f"Saved {p.name} version {p.version}."))


@app.command("list")
def list_(search: str = typer.Option("", "--search"), as_json: bool = JSON_OPTION) -> None:
    """Saved prompts (latest versions)."""
    from backend.services import prompts as svc

    items = svc.list_prompts(actor=cli_actor(), search=search)
    emit(items, as_json, lambda ps: echo_lines(
        (f"{p.name:<30} v{p.latest_version:<4} {p.template[:60]!r}" for p in ps),
        empty="No prompts."))


@app.command("show")
def show(name: str, version: int = typer.Option(None, "--version", "-v"),
         as_json: bool = JSON_OPTION) -> None:
    """One prompt (the latest version, or --version N)."""
    from backend.services import prompts as svc

    with service_errors(as_json):
        p = svc.get_prompt(actor=cli_actor(), name=name, version=version)
    emit(p, as_json, _print_prompt)


@app.command("versions")
def versions(name: str, as_json: bool = JSON_OPTION) -> None:
    """Every version of a prompt, newest first."""
    from backend.services import prompts as svc

    with service_errors(as_json):
        vs = svc.list_versions(actor=cli_actor(), name=name)
    emit(vs, as_json, lambda items: echo_lines(
        f"v{v.version:<4} {v.created_at:%Y-%m-%d %H:%M}  {v.message}" for v in items))


@app.command("diff")
def diff(name: str, a: int, b: int, as_json: bool = JSON_OPTION) -> None:
    """What changed from version A to version B."""
    from backend.services import prompts as svc

    with service_errors(as_json):
        parts = svc.compare_versions(actor=cli_actor(), name=name, a=a, b=b)
    emit(parts, as_json, lambda ps: echo_lines((p.diff for p in ps),
                                               empty="The two versions are the same."))


@app.command("restore")
def restore(name: str, version: int, message: str = MESSAGE_OPT,
            as_json: bool = JSON_OPTION) -> None:
    """Make an old version current again (saved as a new version)."""
    from backend.services import prompts as svc

    with service_errors(as_json):
        p = svc.restore_version(actor=cli_actor(), name=name, version=version, message=message)
    emit(p, as_json, lambda _: typer.echo(f"Restored version {version} as version {p.version}."))


@app.command("delete")
def delete(name: str, yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
           as_json: bool = JSON_OPTION) -> None:
    """Delete a prompt and all its versions (its runs are kept)."""
    from backend.services import prompts as svc

    if not yes and not as_json:
        typer.confirm(f"Delete the prompt {name!r} and all its versions?", abort=True)
    with service_errors(as_json):
        p = svc.delete_prompt(actor=cli_actor(), name=name)
    emit(p, as_json, lambda _: typer.echo(f"Deleted {p.name}."))


def _params(temperature: float | None, top_p: float | None, max_new_tokens: int | None,
            stop: list[str] | None, seed: int | None) -> dict[str, Any]:
    return {k: v for k, v in {"temperature": temperature, "top_p": top_p,
                              "max_new_tokens": max_new_tokens, "stop": stop or None,
                              "seed": seed}.items() if v is not None}


@app.command("run")
def run(name: str,
        var: list[str] = typer.Option(None, "--var", help="A variable as name=value (repeatable)."),
        model: list[str] = typer.Option(..., "--model", help="Model name (repeatable, 1-4)."),
        version: int = typer.Option(None, "--version", "-v"),
        temperature: float = typer.Option(None, "--temperature"),
        top_p: float = typer.Option(None, "--top-p"),
        max_new_tokens: int = typer.Option(None, "--max-new-tokens", "-n"),
        stop: list[str] = typer.Option(None, "--stop", help="Stop string (repeatable)."),
        seed: int = typer.Option(None, "--seed"),
        as_json: bool = JSON_OPTION) -> None:
    """Run a saved prompt against one or more models and print each answer with its stats."""
    from backend.services import prompts as svc

    with service_errors(as_json):
        cols = svc.run_prompt(actor=cli_actor(), name=name, version=version, models=model,
                              variables=_vars(var, as_json),
                              params=_params(temperature, top_p, max_new_tokens, stop, seed))
    runs = []
    for c in cols:
        u = c.usage
        runs.append({
            "model": c.model, "text": c.text, "tokens_in": u.prompt_tokens if u else None,
            "tokens_out": u.completion_tokens if u else None, "ttft_ms": u.ttft_ms if u else None,
            "tokens_per_s": u.tokens_per_s if u else None, "cost": c.cost, "run_id": c.run_id,
            "valid": c.parsed.valid if c.parsed else None,
            "invalid_reason": c.parsed.reason if c.parsed else None,
            "parsed": c.parsed.value if c.parsed and c.parsed.valid else None, "error": c.error,
        })

    def human(_: object) -> None:
        for r in runs:
            typer.echo(f"== {r['model']}")
            typer.echo(r["error"] and f"error: {r['error']}" or r["text"])
            if r["valid"] is False:
                typer.echo(f"[does not fit the output format: {r['invalid_reason']}]")
            ttft = f"{r['ttft_ms']:.0f} ms" if r["ttft_ms"] is not None else "-"
            tps = f"{r['tokens_per_s']:.1f}" if r["tokens_per_s"] else "-"
            typer.echo(f"[{r['tokens_in']} tokens in, {r['tokens_out']} out; first token {ttft};"
                       f" {tps} tokens/s]", err=True)

    emit({"runs": runs}, as_json, human)
    if any(r["error"] for r in runs):
        raise typer.Exit(1)


@app.command("eval")
def eval_(name: str,
          data: Path = typer.Option(..., "--data", help="CSV or JSONL of variables (+ expected)."),
          model: list[str] = typer.Option(..., "--model", help="Model name (repeatable, 1-4)."),
          version: int = typer.Option(None, "--version", "-v"),
          scoring: str = typer.Option("exact", "--scoring",
                                      help="exact, contains, regex, json or judge."),
          expected: str = typer.Option("expected", "--expected-column"),
          pattern: str = typer.Option(None, "--pattern", help="Regex for --scoring regex."),
          rubric: str = typer.Option("", "--rubric", help="Rubric for --scoring judge."),
          judge: str = typer.Option(None, "--judge", help="Judge model for --scoring judge."),
          batch_size: int = typer.Option(32, "--batch-size", help="Rows per local batch."),
          concurrency: int = typer.Option(4, "--concurrency",
                                          help="Requests at once to an endpoint."),
          max_new_tokens: int = typer.Option(None, "--max-new-tokens", "-n"),
          temperature: float = typer.Option(None, "--temperature"),
          wait: bool = typer.Option(False, "--wait", help="Wait and print the results."),
          as_json: bool = JSON_OPTION) -> None:
    """Evaluate a prompt over a data file as a job (per-row results, per-model scores)."""
    from backend.services import jobs as jobs_service
    from backend.services import prompt_eval

    actor = cli_actor()
    if not data.is_file():
        fail(f"No file {data}.", as_json=as_json)
    with service_errors(as_json):
        rows = prompt_eval.parse_data_file(actor=actor, data=data.read_bytes(),
                                           filename=data.name)
        job_id = prompt_eval.submit_eval(
            actor=actor, rows=rows, models=model, prompt=name, version=version, scoring=scoring,
            pattern=pattern, rubric=rubric, judge_model=judge, expected_column=expected,
            batch_size=batch_size, concurrency=concurrency,
            params=_params(temperature, None, max_new_tokens, None, None))
    if not wait:
        emit({"job_id": job_id}, as_json,
             lambda _: typer.echo(f"Submitted job #{job_id}; `studio jobs show {job_id}`."))
        return
    job = jobs_service.get_job(actor=actor, job_id=job_id)
    if job.status == "queued" and not jobs_service.workers_alive(queue=job.queue):
        typer.echo(f"No worker serves the {job.queue} queue; running job #{job_id} here.",
                   err=True)
        jobs_service.run_inline(actor=actor, job_id=job_id)
    job = jobs_service.wait_for_job(actor=actor, job_id=job_id)
    res = prompt_eval.eval_results(actor=actor, job_id=job_id)
    data_out = {**res.to_dict(), "error": job.error}

    def human(_: object) -> None:
        for s in res.summary:
            score = "-" if s["score"] is None else f"{s['score']:.3f}"
            typer.echo(f"{s['model']:<30} score {score} ({s['scored']}/{s['rows']} scored, "
                       f"{s['errors']} errors, {s['rows_per_s'] or 0:.2f} rows/s)")
        if job.error:
            typer.echo(f"error: {job.error}", err=True)

    emit(data_out, as_json, human)
    if job.status != "succeeded":
        raise typer.Exit(1)


@app.command("runs")
def runs(search: str = typer.Option("", "--search"),
         prompt: str = typer.Option(None, "--prompt"),
         limit: int = typer.Option(20, "--limit"), as_json: bool = JSON_OPTION) -> None:
    """Kept runs, newest first."""
    from backend.services import prompts as svc

    with service_errors(as_json):
        items = svc.list_runs(actor=cli_actor(), search=search, prompt=prompt, limit=limit)
    emit(items, as_json, lambda rs: echo_lines(
        (f"#{r.id:<6} {r.created_at:%Y-%m-%d %H:%M} {r.model:<20} "
         f"{(r.prompt_name or '-'):<20} {r.text[:50]!r}" for r in rs), empty="No runs."))
