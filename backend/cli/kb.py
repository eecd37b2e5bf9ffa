"""``studio kb create|list|show|update|delete|ingest|docs|search|reindex``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from backend.cli.output import JSON_OPTION, cli_actor, emit, fail, service_errors

app = typer.Typer(help="Knowledge bases: ingest documents, search them.", no_args_is_help=True)


def _svc() -> Any:
    from backend.services import knowledge

    return knowledge


def _line(kb: Any) -> str:
    return (f"#{kb.id:<4} {kb.name:<24} {kb.documents:>5} docs {kb.chunks:>7} chunks  "
            f"{kb.language}  {kb.embedder}" + ("  (re-index needed)" if kb.reindex_needed else ""))


def _print_kb(kb: Any) -> None:
    typer.echo(_line(kb))
    if kb.description:
        typer.echo(f"  {kb.description}")
    s = kb.settings
    typer.echo(f"  chunking: {s['splitter']}, {s['chunk_size']} characters, overlap "
               f"{s['chunk_overlap']}; failed documents: {kb.failed}; pending: {kb.pending}")
    ix = kb.index or {}
    if ix:
        kind = f"{ix['vectors']} vectors, " if ix.get("vectors") else ""
        typer.echo(f"  index #{ix['id']}: {kind}{ix['dim']} dimensions ({ix['status']})")


@app.command("create")
def create(
    name: str,
    embedder: str = typer.Option(None, "--embedder", help="A registered embedding model "
                                 "(default: the bundled all-MiniLM-L6-v2)."),
    chunk_size: int = typer.Option(1000, "--chunk-size", help="Characters per chunk."),
    chunk_overlap: int = typer.Option(150, "--chunk-overlap", help="Characters shared by "
                                      "neighbouring chunks."),
    splitter: str = typer.Option("heading", "--splitter", help="heading, recursive or "
                                 "sentence."),
    language: str = typer.Option("en", "--language", help="en or zh (zh: jieba words for "
                                 "keyword search)."),
    description: str = typer.Option("", "--description"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a knowledge base."""
    with service_errors(as_json):
        kb = _svc().create_knowledge_base(
            actor=cli_actor(), name=name, description=description, embedder=embedder,
            chunk_size=chunk_size, chunk_overlap=chunk_overlap, splitter=splitter,
            language=language)
    emit(kb, as_json, _print_kb)


@app.command("list")
def list_(search: str = typer.Option("", "--search"),
          all_workspaces: bool = typer.Option(False, "--all-workspaces"),
          as_json: bool = JSON_OPTION) -> None:
    """List knowledge bases with their sizes."""
    with service_errors(as_json):
        kbs = _svc().list_knowledge_bases(actor=cli_actor(), search=search,
                                          all_workspaces=all_workspaces)

    def human(items: list[Any]) -> None:
        for kb in items:
            typer.echo(_line(kb))
        if not items:
            typer.echo("No knowledge bases yet. Try `studio kb create docs`.")

    emit(kbs, as_json, human)


@app.command("show")
def show(kb: str, as_json: bool = JSON_OPTION) -> None:
    """One knowledge base with its settings and index."""
    with service_errors(as_json):
        view = _svc().get_knowledge_base(actor=cli_actor(), kb=kb)
    emit(view, as_json, _print_kb)


@app.command("update")
def update(kb: str, name: str = typer.Option(None, "--name"),
           description: str = typer.Option(None, "--description"),
           chunk_size: int = typer.Option(None, "--chunk-size"),
           chunk_overlap: int = typer.Option(None, "--chunk-overlap"),
           splitter: str = typer.Option(None, "--splitter"),
           language: str = typer.Option(None, "--language"),
           embedder: str = typer.Option(None, "--embedder"),
           as_json: bool = JSON_OPTION) -> None:
    """Rename, describe or change settings (then `studio kb reindex`)."""
    settings = {k: v for k, v in {"chunk_size": chunk_size, "chunk_overlap": chunk_overlap,
                                  "splitter": splitter, "language": language,
                                  "embedder": embedder}.items() if v is not None}
    with service_errors(as_json):
        view = _svc().update_knowledge_base(actor=cli_actor(), kb=kb, name=name,
                                            description=description, **settings)

    def human(v: Any) -> None:
        _print_kb(v)
        if v.reindex_needed:
            typer.echo(f"  Settings changed: run `studio kb reindex {v.name}` to apply them.")

    emit(view, as_json, human)


@app.command("delete")
def delete(kb: str, yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
           as_json: bool = JSON_OPTION) -> None:
    """Delete a knowledge base with all its documents and chunks."""
    if not yes and not as_json and not typer.confirm(f"Delete knowledge base {kb!r} and all "
                                                     "its documents?"):
        raise typer.Exit(1)
    with service_errors(as_json):
        view = _svc().delete_knowledge_base(actor=cli_actor(), kb=kb)
    emit(view, as_json, lambda v: typer.echo(f"Deleted {v.name} ({v.documents} documents)."))


def _finish(job_id: int, *, wait: bool, as_json: bool, timeout: float | None) -> None:
    from backend.cli.jobs import wait_and_report
    from backend.services import jobs as jobs_service

    actor = cli_actor()
    job = jobs_service.get_job(actor=actor, job_id=job_id)
    if not wait:
        emit(job, as_json, lambda j: typer.echo(
            f"Job #{j.id} queued; follow it with `studio jobs show {j.id}` or add --wait."))
        return
    try:
        wait_and_report(job, as_json=as_json, timeout=timeout)
    except typer.Exit:
        raise
    job = jobs_service.get_job(actor=actor, job_id=job_id)
    skipped = int((job.result or {}).get("skipped", 0))
    if skipped:
        typer.echo(f"{skipped} files skipped: stylesheets, images, scripts or fonts, which are "
                   "not indexed.", err=True)
    failed = int((job.result or {}).get("failed", 0))
    if failed:
        kb_id = job.params.get("kb_id")
        docs = _svc().list_documents(actor=actor, kb=kb_id, statuses=["failed"])
        for d in docs:
            if d.job_id == job_id:
                typer.echo(f"failed: {d.source}: {d.error}", err=True)
        raise typer.Exit(1)


@app.command("ingest")
def ingest(kb: str, paths: list[Path] = typer.Argument(..., help="Files, folders or zips."),
           wait: bool = typer.Option(False, "--wait", help="Block until the job ends."),
           timeout: float = typer.Option(None, "--timeout"),
           as_json: bool = JSON_OPTION) -> None:
    """Add documents (PDF, DOCX, HTML, Markdown, TXT, CSV, JSONL; folders; zips). With --wait,
    exits non-zero when any file failed (the reasons go to stderr)."""
    for p in paths:
        if not p.exists():
            fail(f"{p} does not exist.", as_json=as_json)
    with service_errors(as_json):
        job_id = _svc().ingest_files(actor=cli_actor(), kb=kb, paths=paths)
    _finish(job_id, wait=wait, as_json=as_json, timeout=timeout)


@app.command("reindex")
def reindex(kb: str, wait: bool = typer.Option(False, "--wait"),
            timeout: float = typer.Option(None, "--timeout"),
            as_json: bool = JSON_OPTION) -> None:
    """Rebuild the index with the current settings (search uses the old one until done)."""
    with service_errors(as_json):
        job_id = _svc().reindex(actor=cli_actor(), kb=kb)
    _finish(job_id, wait=wait, as_json=as_json, timeout=timeout)


@app.command("docs")
def docs(kb: str, search: str = typer.Option("", "--search"),
         status: list[str] = typer.Option(None, "--status", help="ready, failed, duplicate, "
                                          "processing, pending."),
         as_json: bool = JSON_OPTION) -> None:
    """Documents of a knowledge base with status, chunks and errors."""
    with service_errors(as_json):
        items = _svc().list_documents(actor=cli_actor(), kb=kb, search=search, statuses=status)

    def human(ds: list[Any]) -> None:
        for d in ds:
            typer.echo(f"#{d.id:<5} {d.status:<10} {d.chunk_count:>5} chunks {d.char_count:>9} "
                       f"chars  {d.source}")
            if d.error:
                typer.echo(f"       {d.error}")
        if not ds:
            typer.echo("No documents.")

    emit(items, as_json, human)


@app.command("delete-doc")
def delete_doc(kb: str, document_id: int, as_json: bool = JSON_OPTION) -> None:
    """Delete one document and all its chunks."""
    with service_errors(as_json):
        d = _svc().delete_document(actor=cli_actor(), kb=kb, document_id=document_id)
    emit(d, as_json, lambda v: typer.echo(f"Deleted {v.source}."))


@app.command("search")
def search(kb: str, query: str,
           k: int = typer.Option(5, "--k", "-k", help="How many hits."),
           mode: str = typer.Option("hybrid", "--mode", help="hybrid, vector or keyword."),
           source: list[str] = typer.Option(None, "--source", help="Only these documents."),
           file_type: list[str] = typer.Option(None, "--file-type"),
           heading: str = typer.Option("", "--heading", help="Text in the heading path."),
           threshold: float = typer.Option(None, "--threshold"),
           rerank: str = typer.Option(None, "--rerank", help="A registered reranker model."),
           neighbors: int = typer.Option(0, "--neighbors", help="Neighbouring chunks to add."),
           per_document: int = typer.Option(
               None, "--per-document", min=0,
               help="At most N chunks of one document before other documents' (default 2; "
                    "0: no limit)."),
           as_json: bool = JSON_OPTION) -> None:
    """Search a knowledge base. --json prints {"hits": [...]}."""
    filters = {"sources": source or [], "file_types": file_type or [], "heading": heading}
    with service_errors(as_json):
        hits = _svc().search(actor=cli_actor(), kb=kb, query=query, k=k, mode=mode,
                             filters=filters, threshold=threshold, rerank=rerank,
                             neighbors=neighbors, per_document=per_document)

    def human(_: Any) -> None:
        for n, h in enumerate(hits, 1):
            typer.echo(f"{n}. [{h.score:.4f}] {h.citation()}")
            typer.echo("   " + h.text[:300].replace("\n", " "))
        if not hits:
            typer.echo("No matching chunks.", err=True)

    emit({"hits": [h.to_dict() for h in hits]}, as_json, human)
    sys.stdout.flush()
