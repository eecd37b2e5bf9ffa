"""``studio corpora add|list|show|remove``: corpora for pre-training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from backend.cli.output import JSON_OPTION, cli_actor, echo_lines, emit, service_errors

app = typer.Typer(help="Corpora for pre-training: text in, cleaned and split versions out.",
                  no_args_is_help=True)


def _line(c: Any) -> str:
    v = c.latest
    if v is None:
        return f"{c.name:<24} (no version)"
    langs = ",".join(list(v.stats.get("languages", {}))[:3])
    return (f"{c.name:<24} v{v.version:<3} {v.documents:>7} docs {v.characters:>12,} chars "
            f"{langs}")


def _print_corpus(c: Any) -> None:
    typer.echo(_line(c))
    for v in c.versions:
        s = v.stats
        typer.echo(f"  v{v.version}: {v.documents} documents ({v.heldout_documents} held out), "
                   f"{v.characters:,} characters; removed {s.get('exact_duplicates', 0)} exact and "
                   f"{s.get('near_duplicates', 0)} near duplicates, {s.get('too_short', 0)} too "
                   f"short; languages {s.get('languages', {})}")
        for skipped in s.get("files_skipped", [])[:10]:
            typer.echo(f"    skipped {skipped['source']}: {skipped['reason']}")
        for key, info in v.token_files.items():
            typer.echo(f"    tokens [{key}]: {info.get('train_tokens', 0):,} train, "
                       f"{info.get('val_tokens', 0):,} held out ({info.get('dtype')})")


@app.command("add")
def add(
    name: str = typer.Argument(..., help="The corpus name (a new version if it exists)."),
    paths: list[Path] = typer.Argument(None, help="Files, folders or zips: .txt .md .rst .html "
                                                  ".pdf .jsonl (a 'text' field)."),
    knowledge_base: str = typer.Option(None, "--knowledge-base", "--kb",
                                       help="Also take this knowledge base's documents."),
    heldout: float = typer.Option(0.05, "--heldout", help="Share of documents held out."),
    description: str = typer.Option("", "--description"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Build a corpus version: read, clean, remove duplicates, split off a held-out set."""
    from backend.services import corpora

    def progress(frac: float, stage: str) -> None:
        typer.echo(f"[{frac * 100:3.0f}%] {stage}", err=True)

    with service_errors(as_json):
        c = corpora.add_corpus(actor=cli_actor(), name=name, paths=paths or [],
                               knowledge_base=knowledge_base, heldout_fraction=heldout,
                               description=description, progress=progress)
    emit(c, as_json, _print_corpus)


@app.command("list")
def list_(search: str = typer.Option("", "--search", help="Text in the name or description."),
          as_json: bool = JSON_OPTION) -> None:
    """List corpora with their latest version."""
    from backend.services import corpora

    with service_errors(as_json):
        rows = corpora.list_corpora(actor=cli_actor(), search=search)
    emit(rows, as_json, lambda cs: echo_lines((_line(c) for c in cs),
                                              empty="No corpora yet. Try `studio corpora add`."))


@app.command("show")
def show(corpus: str, as_json: bool = JSON_OPTION) -> None:
    """One corpus with every version's statistics."""
    from backend.services import corpora

    with service_errors(as_json):
        c = corpora.get_corpus(actor=cli_actor(), corpus=corpus)
    emit(c, as_json, _print_corpus)


@app.command("remove")
def remove(corpus: str, yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
           as_json: bool = JSON_OPTION) -> None:
    """Remove a corpus with its versions and files."""
    from backend.services import corpora

    actor = cli_actor()
    with service_errors(as_json):
        c = corpora.get_corpus(actor=actor, corpus=corpus)
        if not yes and not as_json:
            typer.confirm(f"Remove the corpus {c.name!r} and its files?", abort=True)
        c = corpora.delete_corpus(actor=actor, corpus=c.id)
    emit(c, as_json, lambda _: typer.echo(f"Removed {c.name}."))
