"""``studio models list|show|add|add-tiny|test|remove|set-key``."""

from __future__ import annotations

import typer

from backend.cli.output import JSON_OPTION, cli_actor, emit, fail, service_errors
from backend.services import models as models_service

app = typer.Typer(help="The model registry: local models, endpoints, tiny demo models.",
                  no_args_is_help=True)

CAPS_OPTION = typer.Option(
    None, "--capability", "-c",
    help="chat, embeddings or tools (repeat for several). Default: chat.",
)


def _line(m: models_service.ModelView) -> str:
    test = {True: "ok", False: "FAILED", None: "untested"}[m.last_test_ok]
    return f"{m.name:<24} {m.kind:<9} {','.join(m.capabilities):<20} {test:<9} {m.target}"


def _print_model(m: models_service.ModelView) -> None:
    typer.echo(_line(m))
    if m.api_key_masked:
        typer.echo(f"  api key: {m.api_key_masked}")
    if m.lineage:
        typer.echo(f"  lineage: {m.lineage}")
    if m.description:
        typer.echo(f"  {m.description}")
    if m.last_test_message:
        typer.echo(f"  last test: {m.last_test_message}")


@app.command("list")
def list_(
    search: str = typer.Option("", "--search", help="Text in the name, source or endpoint."),
    capability: str = typer.Option(None, "--capability", help="Only models with it."),
    all_workspaces: bool = typer.Option(False, "--all-workspaces", help="Admins: every one."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List registered models."""
    with service_errors(as_json):
        models = models_service.list_models(actor=cli_actor(), search=search,
                                            capability=capability,
                                            all_workspaces=all_workspaces)
    def human(ms: list[models_service.ModelView]) -> None:
        for m in ms:
            typer.echo(_line(m))
        if not ms:
            typer.echo("No models yet. Try `studio models add-tiny demo`.")

    emit(models, as_json, human)


@app.command("show")
def show(model: str, as_json: bool = JSON_OPTION) -> None:
    """One model, by name or id."""
    from backend.services.lineage import chain_text, lineage_chain

    actor = cli_actor()
    with service_errors(as_json):
        m = models_service.get_model(actor=actor, model=model)
        chain = lineage_chain(actor=actor, model=m.id) if m.lineage else []

    def human(view: models_service.ModelView) -> None:
        _print_model(view)
        if chain:
            typer.echo(f"  made from: {chain_text(chain)}")

    emit(m, as_json, human)


@app.command("add")
def add(
    name: str,
    path: str = typer.Option(None, "--path", help="A Hugging Face model folder."),
    hub: str = typer.Option(None, "--hub", help="A hub id (downloaded where first used)."),
    base_url: str = typer.Option(None, "--base-url", help="An OpenAI-compatible endpoint."),
    remote_model: str = typer.Option(None, "--model", help="The endpoint's model name."),
    endpoint_key: str = typer.Option(None, "--endpoint-key",
                                     help="The endpoint's API key (stored encrypted)."),
    ask_key: bool = typer.Option(False, "--ask-key", help="Type the API key at a hidden prompt."),
    capability: list[str] = CAPS_OPTION,
    description: str = typer.Option("", "--description"),
    test: bool = typer.Option(False, "--test", help="Test the connection after adding."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Register a model: --path FOLDER, --hub ID, or --base-url URL --model NAME."""
    chosen = [x for x in (path, hub, base_url) if x]
    if len(chosen) != 1:
        fail("Give exactly one of --path, --hub or --base-url.", as_json=as_json)
    actor = cli_actor()
    with service_errors(as_json):
        if base_url:
            if not remote_model:
                fail("--base-url needs --model (the name the endpoint knows).", as_json=as_json)
            key = endpoint_key
            if ask_key:
                key = typer.prompt("API key", hide_input=True, default="", show_default=False)
            m = models_service.add_openai_model(
                actor=actor, name=name, base_url=base_url, remote_model=remote_model,
                api_key=key, capabilities=capability, description=description)
        else:
            m = models_service.add_local_model(
                actor=actor, name=name, source=path or hub,
                source_type="folder" if path else "hub", capabilities=capability,
                description=description)
    result = None
    if test:
        result = models_service.test_model(actor=actor, model=m.id)

    def human(_: object) -> None:
        typer.echo(f"Added {m.name} ({m.kind}): {m.target}")
        if result is not None:
            typer.echo(("OK: " if result.ok else "FAILED: ") + result.message)

    emit({"model": m, "test": result} if test else m, as_json, human)
    if result is not None and not result.ok:
        raise typer.Exit(1)


@app.command("add-tiny")
def add_tiny(name: str, seed: int = typer.Option(0, "--seed"), as_json: bool = JSON_OPTION
             ) -> None:
    """Build a tiny offline chat model (random weights, ~4M parameters) and register it."""
    def progress(frac: float, stage: str) -> None:
        if not as_json:
            typer.echo(f"[{frac * 100:3.0f}%] {stage}")

    with service_errors(as_json):
        m = models_service.add_tiny_model(actor=cli_actor(), name=name, seed=seed,
                                          progress=progress)
    emit(m, as_json, lambda _: typer.echo(f"Added {m.name}: {m.source}"))


@app.command("test")
def test(model: str, timeout: float = typer.Option(None, "--timeout", help="Seconds."),
         as_json: bool = JSON_OPTION) -> None:
    """Send a tiny request and report whether the model answers."""
    with service_errors(as_json):
        result = models_service.test_model(actor=cli_actor(), model=model, timeout_s=timeout)
    emit(result, as_json,
         lambda r: typer.echo(("OK: " if r.ok else "FAILED: ") + r.message))
    if not result.ok:
        raise typer.Exit(1)


@app.command("remove")
def remove(model: str, yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
           delete_files: bool = typer.Option(False, "--delete-files",
                                             help="Also delete a folder the studio produced."),
           as_json: bool = JSON_OPTION) -> None:
    """Unregister a model."""
    actor = cli_actor()
    with service_errors(as_json):
        m = models_service.get_model(actor=actor, model=model)
        if not yes and not as_json:
            typer.confirm(f"Remove the model {m.name!r}?", abort=True)
        m = models_service.remove_model(actor=actor, model=m.id, delete_files=delete_files)
    emit(m, as_json, lambda _: typer.echo(f"Removed {m.name}."))


@app.command("set-key")
def set_key(model: str, clear: bool = typer.Option(False, "--clear", help="Remove the key."),
            as_json: bool = JSON_OPTION) -> None:
    """Replace an endpoint's API key (typed at a hidden prompt)."""
    key = None if clear else typer.prompt("API key", hide_input=True)
    with service_errors(as_json):
        m = models_service.set_api_key(actor=cli_actor(), model=model, api_key=key)
    emit(m, as_json, lambda _: typer.echo(f"{m.name}: API key {m.api_key_masked or 'cleared'}."))
