"""``studio chat MODEL [PROMPT]``: stream an answer from any registered model."""

from __future__ import annotations

import json
import sys

import typer

from backend.cli.output import cli_actor, fail, service_errors
from backend.llm.types import ToolCall, Usage
from backend.services import chat as chat_service
from backend.services import models as models_service


def _usage_line(u: Usage | None) -> str:
    if u is None:
        return ""
    ttft = f"{u.ttft_ms:.0f} ms" if u.ttft_ms is not None else "-"
    tps = f"{u.tokens_per_s:.1f}" if u.tokens_per_s else "-"
    return (f"[{u.finish_reason}; {u.prompt_tokens} tokens in, {u.completion_tokens} out; "
            f"first token {ttft}; {tps} tokens/s; ran on {u.where}]")


def chat(
    model: str = typer.Argument(..., help="Model name or id (see `studio models list`)."),
    prompt: str = typer.Argument(None, help="Ask once and exit. Without it: an interactive chat."),
    system: str = typer.Option(None, "--system", help="A system prompt."),
    temperature: float = typer.Option(None, "--temperature", "-t"),
    top_p: float = typer.Option(None, "--top-p"),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", "-n"),
    stop: list[str] = typer.Option(None, "--stop", help="Stop string (repeatable)."),
    seed: int = typer.Option(None, "--seed"),
    repetition_penalty: float = typer.Option(None, "--repetition-penalty"),
    placement: str = typer.Option(
        "auto", "--placement",
        help="Local models: worker (a gpu worker only), local (this process), or auto (a worker "
             "when one is alive, else this process).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the answer and usage as JSON."),
) -> None:
    """Stream a chat answer. Ctrl-C stops generation (on the worker too)."""
    if placement not in ("auto", "worker", "local"):
        fail("--placement must be auto, worker or local.", as_json=as_json)
    params = {k: v for k, v in {
        "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens,
        "stop": stop or None, "seed": seed, "repetition_penalty": repetition_penalty,
    }.items() if v is not None}
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    actor = cli_actor()
    interactive = prompt is None
    if interactive and as_json:
        fail("--json needs a PROMPT.", as_json=True)
    with service_errors(as_json):
        info = models_service.get_model(actor=actor, model=model)
    if info.kind != "openai" and placement == "auto" and not chat_service.gpu_worker_alive():
        typer.echo(f"No worker serves the gpu queue; running {info.name} in this process.",
                   err=True)
        placement = "local"
    while True:
        if interactive:
            try:
                prompt = typer.prompt("you", prompt_suffix="> ")
            except (EOFError, typer.Abort):
                typer.echo()
                return
        history.append({"role": "user", "content": prompt or ""})
        with service_errors(as_json):
            stream = chat_service.stream_chat(model, history, params, actor=actor,
                                              placement=placement)  # type: ignore[arg-type]
            parts: list[str] = []
            calls: list[ToolCall] = []
            try:
                for piece in stream:
                    if isinstance(piece, ToolCall):
                        calls.append(piece)
                        if not as_json:
                            typer.echo(f"\n[tool call] {piece.name}({json.dumps(piece.arguments)})")
                        continue
                    parts.append(piece)
                    if not as_json:
                        sys.stdout.write(piece)
                        sys.stdout.flush()
            except KeyboardInterrupt:
                stream.stop()
                typer.echo("\n[stopped]", err=True)
        text = "".join(parts)
        history.append({"role": "assistant", "content": text})
        if as_json:
            sys.stdout.write(json.dumps({
                "model": stream.model, "request_id": stream.request_id, "text": text,
                "tool_calls": [c.to_openai() for c in calls],
                "usage": stream.usage.to_dict() if stream.usage else None,
            }, ensure_ascii=False) + "\n")
        else:
            typer.echo()
            typer.echo(_usage_line(stream.usage), err=True)
        if not interactive:
            return
