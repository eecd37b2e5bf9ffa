"""``studio pretrain plan|run``: train a model from scratch on a corpus."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from backend.cli.output import JSON_OPTION, cli_actor, emit, service_errors

app = typer.Typer(help="Pre-train a causal or masked model from scratch on a corpus.",
                  no_args_is_help=True)

PRESET_OPTION = typer.Option("tiny", "--preset", help="tiny (~2M), small (~20M), base (~125M), "
                                                      "medium (~350M) or custom.")
OBJECTIVE_OPTION = typer.Option("causal", "--objective", help="causal (chat, Llama-style) or "
                                                             "masked (embeddings, BERT-style).")


def _overrides(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}


def _print_plan(p: Any) -> None:
    e, c = p.estimate, p.config
    typer.echo(f"{c.objective} model: {c.n_layer} layers, width {c.n_embd}, {c.n_head} heads, "
               f"context {c.block_size}, vocabulary {p.vocab_size}")
    typer.echo(f"  parameters {e.parameters:,}; {e.flops_per_token / 1e6:,.1f} MFLOPs per token")
    typer.echo(f"  memory: weights {e.weights_gb:.3f} GB, gradients {e.gradients_gb:.3f} GB, "
               f"optimizer {e.optimizer_gb:.3f} GB, activations {e.activations_gb:.3f} GB "
               f"(total {e.total_gb:.3f} GB)")
    when = f"about {e.seconds / 60:.1f} min" if e.seconds is not None else "unknown"
    hardware = e.hardware if e.hardware != "none" else "no gpu worker yet"
    typer.echo(f"  {c.max_steps} steps x {c.tokens_per_step:,} tokens = {e.tokens:,} tokens on "
               f"{hardware}: {when}")
    for w in e.warnings:
        typer.echo(f"  warning: {w['text']}")


@app.command("plan")
def plan(
    preset: str = PRESET_OPTION, objective: str = OBJECTIVE_OPTION,
    steps: int = typer.Option(None, "--steps"), vocab_size: int = typer.Option(None, "--vocab-size"),
    layers: int = typer.Option(None, "--layers"), width: int = typer.Option(None, "--width"),
    heads: int = typer.Option(None, "--heads"), context: int = typer.Option(None, "--context"),
    batch_size: int = typer.Option(None, "--batch-size"),
    tokenizer_model: str = typer.Option(None, "--tokenizer-model"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show parameters, FLOPs per token, memory and time before launching."""
    from backend.services import pretrain

    with service_errors(as_json):
        p = pretrain.plan_run(actor=cli_actor(), preset=preset, objective=objective,
                              tokenizer_model=tokenizer_model, overrides=_overrides(
                                  max_steps=steps, vocab_size=vocab_size, n_layer=layers,
                                  n_embd=width, n_head=heads, block_size=context,
                                  batch_size=batch_size))
    emit(p, as_json, _print_plan)


@app.command("run")
def run(
    corpus: str = typer.Option(..., "--corpus", help="A corpus name, or files/a folder to make "
                                                     "one from."),
    preset: str = PRESET_OPTION, objective: str = OBJECTIVE_OPTION,
    steps: int = typer.Option(None, "--steps", help="Optimizer steps."),
    vocab_size: int = typer.Option(None, "--vocab-size", help="BPE vocabulary to train."),
    tokenizer_model: str = typer.Option(None, "--tokenizer-model",
                                        help="Reuse this registered model's tokenizer instead."),
    name: str = typer.Option(None, "--name", help="Name of the registered model."),
    layers: int = typer.Option(None, "--layers"), width: int = typer.Option(None, "--width"),
    heads: int = typer.Option(None, "--heads"), context: int = typer.Option(None, "--context"),
    batch_size: int = typer.Option(None, "--batch-size"),
    grad_accum: int = typer.Option(None, "--grad-accum"),
    learning_rate: float = typer.Option(None, "--lr"),
    warmup: int = typer.Option(None, "--warmup"),
    eval_interval: int = typer.Option(None, "--eval-interval"),
    compile_model: bool = typer.Option(None, "--compile/--no-compile",
                                       help="torch.compile on GPU."),
    wait: bool = typer.Option(False, "--wait", help="Block until the job ends."),
    timeout: float = typer.Option(None, "--timeout"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Launch pre-training as a gpu job; with --wait, print the outcome (status, registered
    model, initial_eval_loss, final_eval_loss)."""
    from backend.services import corpora, pretrain
    from backend.services import jobs as jobs_service

    actor = cli_actor()
    overrides = _overrides(max_steps=steps, vocab_size=vocab_size, n_layer=layers, n_embd=width,
                           n_head=heads, block_size=context, batch_size=batch_size,
                           grad_accum=grad_accum, learning_rate=learning_rate,
                           warmup_steps=warmup, eval_interval=eval_interval,
                           compile=compile_model)
    with service_errors(as_json):
        target: str | int = corpus
        try:
            corpora.get_corpus(actor=actor, corpus=corpus)
        except corpora.CorpusNotFound:
            path = Path(corpus).expanduser()
            if not path.exists():
                raise
            typer.echo(f"Making the corpus {path.stem!r} from {path}", err=True)
            target = corpora.add_corpus(actor=actor, name=path.stem or "corpus",
                                        paths=[path]).id
        if steps is not None and warmup is None:
            overrides["warmup_steps"] = min(max(1, steps // 10), 100)
        job = pretrain.launch_pretrain(actor=actor, corpus=target, preset=preset,
                                       objective=objective, name=name,
                                       tokenizer_model=tokenizer_model, overrides=overrides)
    typer.echo(f"Launched job #{job.id}", err=True)
    if not wait:
        emit({"job_id": job.id, "status": job.status}, as_json,
             lambda _: typer.echo(f"Job #{job.id} queued; follow it with `studio jobs show "
                                  f"{job.id}`."))
        return
    if not jobs_service.workers_alive(queue=job.queue):
        typer.echo(f"No worker serves the {job.queue} queue; running job #{job.id} here.",
                   err=True)
        jobs_service.run_inline(actor=actor, job_id=job.id)
    else:
        import time

        last = ""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            view = jobs_service.wait_for_job(actor=actor, job_id=job.id, timeout_s=2.0)
            line = f"[{view.progress * 100:5.1f}%] {view.stage or view.status}"
            if line != last:
                print(line, file=sys.stderr, flush=True)
                last = line
            if view.finished or (deadline is not None and time.monotonic() > deadline):
                break
    outcome = pretrain.run_result(actor=actor, job_id=job.id)

    def human(o: dict[str, Any]) -> None:
        typer.echo(f"Job #{o['job_id']}: {o['status']}")
        if o["error"]:
            typer.echo(f"  error: {o['error']}")
        if o["registered_model"]:
            typer.echo(f"  registered model: {o['registered_model']}")
            typer.echo(f"  held-out loss: {o['initial_eval_loss']} -> {o['final_eval_loss']}")

    if as_json:  # one line: the outcome on top, the job's whole result inside
        sys.stdout.write(json.dumps(outcome, default=str, ensure_ascii=False) + "\n")
    else:
        human(outcome)
    if outcome["status"] != "succeeded":
        raise typer.Exit(1)

