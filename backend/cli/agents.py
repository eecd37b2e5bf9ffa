"""``studio agents create|update|list|show|delete|publish|run``: agents and published bots."""

from __future__ import annotations

import sys
from typing import Any

import typer

from backend.cli.output import JSON_OPTION, cli_actor, echo_lines, emit, fail, service_errors

TOP_K_HELP = ("Passages retrieved per question; as many as fit the model's context go into "
              "the prompt, best first.")
BUDGET_HELP = ("The most tokens a question may use, prompt and answer together (default: the "
               "model's context window).")

app = typer.Typer(help="Agents: tools, knowledge, memory; publish them as bots.",
                  no_args_is_help=True)


def _line(a: Any) -> str:
    state = f"v{a.published_version}" if a.published_version else "draft"
    if a.published_version and a.has_unpublished_changes:
        state += "+edits"
    return (f"#{a.id:<4} {a.icon} {a.name:<24} {state:<10} {a.config.get('type', 'tools'):<6} "
            f"{a.config.get('model', '')}")


@app.command("create")
def create(
    name: str = typer.Argument(..., help="The agent's name (its model name in the API)."),
    model: str = typer.Option(..., "--model", "-m", help="A registered chat model."),
    kb: list[str] = typer.Option(None, "--kb", help="A knowledge base (repeatable)."),
    kb_mode: str = typer.Option("context", "--kb-mode",
                                help="context (retrieved every time), tool, or both."),
    tool: list[str] = typer.Option(None, "--tool", help="calculator, current_datetime, "
                                   "knowledge_search, http:NAME, mcp:SERVER/TOOL (repeatable)."),
    prompt: str = typer.Option(None, "--prompt", help="The system prompt."),
    saved_prompt: str = typer.Option(None, "--saved-prompt",
                                     help="A playground prompt's name (its system text)."),
    saved_prompt_version: int = typer.Option(None, "--saved-prompt-version"),
    agent_type: str = typer.Option("tools", "--type", help="tools or plan."),
    max_steps: int = typer.Option(6, "--max-steps"),
    memory_turns: int = typer.Option(6, "--memory-turns"),
    summary: bool = typer.Option(False, "--summary", help="Keep older turns as a summary."),
    temperature: float = typer.Option(None, "--temperature", "-t"),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", "-n"),
    top_k: int = typer.Option(4, "--top-k", help=TOP_K_HELP),
    context_budget: int = typer.Option(None, "--context-budget", help=BUDGET_HELP),
    description: str = typer.Option("", "--description"),
    publish: bool = typer.Option(False, "--publish", help="Publish it at once."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create an agent."""
    from backend.services import agents

    if prompt and saved_prompt:
        fail("Give --prompt or --saved-prompt, not both.", as_json=as_json)
    cfg: dict[str, Any] = {
        "model": model, "type": agent_type, "knowledge_bases": list(kb or []), "kb_mode": kb_mode,
        "tools": list(tool or []), "max_steps": max_steps, "memory_turns": memory_turns,
        "memory_summary": summary, "saved_prompt": saved_prompt,
        "saved_prompt_version": saved_prompt_version, "kb_top_k": top_k,
        "context_budget": context_budget or None,
        "params": {k: v for k, v in (("temperature", temperature),
                                     ("max_new_tokens", max_new_tokens)) if v is not None}}
    if prompt:
        cfg["system_prompt"] = prompt
    actor = cli_actor()
    with service_errors(as_json):
        view = agents.create_agent(actor=actor, name=name, config=cfg, description=description)
        if publish:
            view = agents.publish_agent(actor=actor, agent=view.id)
    emit(view, as_json, lambda a: typer.echo(f"Created agent #{a.id} {a.name!r}"
                                             + (f", published as v{a.published_version}."
                                                if a.published_version else " (a draft).")))


@app.command("update")
def update(
    name: str = typer.Argument(..., help="The agent (name or id)."),
    rename: str = typer.Option(None, "--name", help="A new name."),
    model: str = typer.Option(None, "--model", "-m", help="A registered chat model."),
    kb: list[str] = typer.Option(None, "--kb", help="Knowledge bases (repeatable; replaces "
                                 "the list)."),
    kb_mode: str = typer.Option(None, "--kb-mode", help="context, tool, or both."),
    prompt: str = typer.Option(None, "--prompt", help="The system prompt."),
    top_k: int = typer.Option(None, "--top-k", help=TOP_K_HELP),
    context_budget: int = typer.Option(None, "--context-budget",
                                       help=BUDGET_HELP + " 0 goes back to the model's own."),
    temperature: float = typer.Option(None, "--temperature", "-t"),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", "-n"),
    max_steps: int = typer.Option(None, "--max-steps"),
    memory_turns: int = typer.Option(None, "--memory-turns"),
    description: str = typer.Option(None, "--description"),
    publish: bool = typer.Option(False, "--publish", help="Publish the new draft at once."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Change an agent's draft: only the options given change (publish to serve it)."""
    from backend.services import agents

    actor = cli_actor()
    with service_errors(as_json):
        view = agents.get_agent(actor=actor, agent=name)
        cfg: dict[str, Any] = dict(view.config)
        for key, value in (("model", model), ("kb_mode", kb_mode), ("system_prompt", prompt),
                           ("kb_top_k", top_k), ("max_steps", max_steps),
                           ("memory_turns", memory_turns)):
            if value is not None:
                cfg[key] = value
        if kb:
            cfg["knowledge_bases"] = list(kb)
        if context_budget is not None:
            cfg["context_budget"] = context_budget or None
        params = dict(cfg.get("params") or {})
        if temperature is not None:
            params["temperature"] = temperature
        if max_new_tokens is not None:
            params["max_new_tokens"] = max_new_tokens
        cfg["params"] = params
        view = agents.update_agent(actor=actor, agent=view.id, name=rename,
                                   description=description, config=cfg)
        if publish:
            view = agents.publish_agent(actor=actor, agent=view.id)
    emit(view, as_json, lambda a: typer.echo(
        f"Updated agent #{a.id} {a.name!r}" + (f", published as v{a.published_version}."
                                               if publish else " (the draft; publish to serve "
                                               "it).")))


@app.command("list")
def list_(search: str = typer.Option("", "--search", "-s"),
          published: bool = typer.Option(False, "--published", help="Published bots only."),
          as_json: bool = JSON_OPTION) -> None:
    """List the workspace's agents."""
    from backend.services import agents

    with service_errors(as_json):
        rows = agents.list_agents(actor=cli_actor(), search=search, published_only=published)
    emit(rows, as_json, lambda rs: echo_lines((_line(a) for a in rs), "No agents."))


@app.command("show")
def show(name: str, as_json: bool = JSON_OPTION) -> None:
    """An agent's settings and versions."""
    from backend.services import agents

    actor = cli_actor()
    with service_errors(as_json):
        view = agents.get_agent(actor=actor, agent=name)
        versions = agents.list_versions(actor=actor, agent=name)
    data = {**view.to_dict(), "versions": versions}

    def human(d: dict[str, Any]) -> None:
        typer.echo(_line(view))
        if view.description:
            typer.echo(view.description)
        for k, v in d["config"].items():
            typer.echo(f"  {k:<22} {v}")
        echo_lines(f"  v{v['version']} {v['created_at'][:16]} {v['model']}"
                    + ("  (published)" if v["published"] else "") for v in versions)

    emit(data, as_json, human)


@app.command("delete")
def delete(name: str, as_json: bool = JSON_OPTION) -> None:
    """Delete an agent with its conversations and traces."""
    from backend.services import agents

    with service_errors(as_json):
        agents.delete_agent(actor=cli_actor(), agent=name)
    emit({"deleted": name}, as_json, lambda _: typer.echo(f"Deleted {name!r}."))


@app.command("publish")
def publish(name: str, as_json: bool = JSON_OPTION) -> None:
    """Freeze the draft as a new version and serve it (chat page, /v1 API)."""
    from backend.services import agents

    with service_errors(as_json):
        view = agents.publish_agent(actor=cli_actor(), agent=name)
    emit(view, as_json, lambda a: typer.echo(f"Published {a.name!r} as v{a.published_version}."))


@app.command("run")
def run(
    name: str = typer.Argument(..., help="The agent."),
    question: str = typer.Argument(..., help="What to ask."),
    conversation: int = typer.Option(None, "--conversation", "-c",
                                     help="Continue this conversation."),
    draft: bool = typer.Option(False, "--draft", help="Ask the draft, not the published bot."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Ask an agent; the answer streams (JSON: answer, sources, steps)."""
    from backend.services import agents

    actor = cli_actor()
    version = "draft" if draft else "published"
    with service_errors(as_json):
        view = agents.get_agent(actor=actor, agent=name)
        if not draft and view.published_version is None:
            version = "draft"
        stream = agents.stream_agent(actor=actor, agent=view.id, question=question,
                                     conversation_id=conversation, version=version, channel="cli")
    try:
        for piece in stream:
            if not as_json:
                sys.stdout.write(piece)
                sys.stdout.flush()
    except Exception as exc:  # noqa: BLE001 - one line; the trace has the details
        fail(f"The agent failed: {type(exc).__name__}: {exc}", as_json=as_json)
    result = stream.result
    assert result is not None
    if as_json:
        emit(result.to_dict(), True, lambda _: None)
        return
    typer.echo("")
    for i, s in enumerate(result.sources, 1):
        typer.echo(f"[{i}] {s.get('source')}", err=True)
    typer.echo(f"[conversation {result.conversation_id}, trace {result.trace_id}, "
               f"{len(result.steps)} steps, {result.total_ms:.0f} ms]", err=True)
