"""Ingest: files -> parsed, cleaned, split, embedded, stored. One document per transaction.

``ingest_files`` is what the ``kb_ingest`` job runs. For every file it decides first, from the
rows already there: same name and same content -> nothing to do (a retry skips finished files);
same content under another name -> a duplicate, stored once; same name, new content -> the new
chunks replace the old ones in the transaction that writes them. A file that fails is marked
failed with its reason; the others go on.

The work is pipelined, each document still written in its own transaction: files are parsed
and split one after another; their chunks are embedded a few documents at a time (about one
embedding batch, sorted by length across the documents, so short last chunks of documents do
not make batches of their own); and while the next documents are parsed and embedded, a writer
thread stores the embedded ones (term counting, chunk rows, HNSW and BM25 upkeep in Postgres).
The embedder releases the GIL and Postgres is another process, so the store overlaps the
embedding instead of following it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sqlalchemy import select

from backend.db import session_scope
from backend.jobs.context import JobCancelled, JobContext, JobInterrupted, JobLost
from backend.jobs.outage import DatabaseUnreachable
from backend.knowledge.archive import extract_zip
from backend.knowledge.boilerplate import (
    MIN_DOCUMENTS,
    TYPES,
    boilerplate_of_files,
    strip_boilerplate,
)
from backend.knowledge.loaders import (
    SKIPPED_REASON,
    DocumentError,
    ParsedDocument,
    file_type_for,
    load,
)
from backend.knowledge.splitting import ChunkDraft, split_document
from backend.knowledge.store import remove_document_chunks, write_chunks
from backend.models.knowledge import (
    DocumentStatus,
    KnowledgeBase,
    KnowledgeDocument,
    KnowledgeIndex,
)

log = logging.getLogger(__name__)


class TextEmbedder(Protocol):
    def embed(self, texts: list[str]) -> np.ndarray: ...


@dataclass
class FileItem:
    source: str
    stored_path: str
    file_type: str
    size: int = 0
    sha256: str = ""
    error: str | None = None  # refused before ingest (too large, unknown type)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def chunk_metas(doc: ParsedDocument, drafts: list[ChunkDraft], *, source: str, file_type: str,
                document_id: int) -> list[dict[str, Any]]:
    return [{"source": source, "title": doc.title, "heading_path": d.heading_path,
             "heading": " > ".join(d.heading_path), "page": d.page, "file_type": file_type,
             "document_id": document_id, **d.meta} for d in drafts]


def prepare(path: Path, file_type: str, source: str, *, chunk_size: int, chunk_overlap: int,
            splitter: str, boilerplate: frozenset[str] | None = None
            ) -> tuple[ParsedDocument, list[ChunkDraft]]:
    """Parse, drop the lines in ``boilerplate`` (what most documents of its upload share:
    ``backend.knowledge.boilerplate``) and split."""
    doc = load(path, file_type, source)
    if boilerplate:
        try:
            doc = strip_boilerplate(doc, boilerplate)
        except DocumentError as exc:
            raise DocumentError(f"{source}: {exc}") from exc
    drafts = split_document(doc, chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                            splitter=splitter)
    if not drafts:
        raise DocumentError(f"{source} has no text to index.")
    return doc, drafts


def shared_boilerplate(kb_id: int, files: list[tuple[Path, str, str]], *,
                       job_id: int | None = None) -> dict[str, frozenset[str]]:
    """The lines most documents of one upload share, per file type: found among ``files``
    ((path, file type, source) of the upload); a type with too few files there to tell is
    compared with the base's ready documents of that type (of the upload ``job_id`` when given,
    else all of them)."""
    counts: dict[str, int] = {}
    for _path, file_type, _source in files:
        counts[file_type] = counts.get(file_type, 0) + 1
    few = [t for t in TYPES if counts.get(t, 0) < MIN_DOCUMENTS]
    reference = list(files)
    if few:
        names = {source for _p, _t, source in files}
        with session_scope() as session:
            stmt = select(KnowledgeDocument.stored_path, KnowledgeDocument.file_type,
                          KnowledgeDocument.source).where(
                KnowledgeDocument.kb_id == kb_id,
                KnowledgeDocument.status == DocumentStatus.ready.value,
                KnowledgeDocument.file_type.in_(few))
            if job_id is not None:
                stmt = stmt.where(KnowledgeDocument.job_id == job_id)
            rows = session.execute(stmt.order_by(KnowledgeDocument.id).limit(2000)).all()
        reference += [(Path(p), t, src) for p, t, src in rows if src not in names]
    return boilerplate_of_files(reference)


def embed_in_batches(embedder: TextEmbedder, texts: list[str], batch: int = 256,
                     should_stop: Callable[[], None] | None = None) -> np.ndarray:
    parts = []
    for start in range(0, len(texts), batch):
        if should_stop:
            should_stop()
        parts.append(np.asarray(embedder.embed(texts[start:start + batch]), dtype=np.float32))
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def _active_index(kb_id: int) -> KnowledgeIndex:
    """The base's active index, detached from its session."""
    with session_scope() as session:
        kb = session.get(KnowledgeBase, kb_id)
        index = session.get(KnowledgeIndex, kb.active_index_id) if kb is not None and \
            kb.active_index_id is not None else None
        if index is None:
            raise LookupError("the knowledge base was deleted meanwhile")
        session.expunge(index)
        return index


def _store(*, kb_id: int, document_id: int, index_id: int, doc: ParsedDocument,
           drafts: list[ChunkDraft], embed_texts: list[str], vectors: np.ndarray,
           metas: list[dict[str, Any]], new_values: dict[str, Any]) -> tuple[int, int] | None:
    """In one transaction that holds the base's row (a re-index switches indexes under the same
    lock): take the document's old chunks out of every index of the base (an index being built
    by a re-index then indexes this version again), write the new chunks into the index they
    were prepared for and mark the document ready. None when that index is no longer the
    active one (nothing written: prepare the document again)."""
    with session_scope() as session:
        kb = session.get(KnowledgeBase, kb_id, with_for_update={"read": True})
        if kb is None:
            raise LookupError("the knowledge base was deleted meanwhile")
        if kb.active_index_id != index_id:
            return None  # a re-index switched indexes while this file was embedded
        row = session.get(KnowledgeDocument, document_id, with_for_update=True)
        if row is None:
            raise LookupError("the document was deleted meanwhile")
        # every index of the base, in id order (the order every writer locks them in)
        indexes = session.execute(select(KnowledgeIndex).where(
            KnowledgeIndex.kb_id == kb_id).order_by(KnowledgeIndex.id).with_for_update()
        ).scalars().all()
        target = next(ix for ix in indexes if ix.id == index_id)
        remove_document_chunks(session, document_id=document_id)
        write_chunks(session, index=target, document_id=document_id,
                     texts=[d.text for d in drafts], embed_texts=embed_texts,
                     vectors=vectors, metas=metas)
        for key, value in new_values.items():
            setattr(row, key, value)
        row.status = DocumentStatus.ready.value
        row.error = None
        row.title = doc.title[:500]
        row.chunk_count = len(drafts)
        row.char_count = doc.char_count
        row.meta = {**(row.meta or {}), **doc.meta}
        return len(drafts), doc.char_count


def index_document(*, kb_id: int, document_id: int, path: Path, file_type: str, source: str,
                   embedder_for_index: Callable[[KnowledgeIndex], TextEmbedder],
                   new_values: dict[str, Any], check: Callable[[], None] | None = None,
                   boilerplate: frozenset[str] | None = None) -> tuple[int, int]:
    """One document alone: parse, split and embed for the base's active index outside any
    transaction, then store it (``_store``). If a re-index switched the active index
    meanwhile, the document is prepared again for the new one. Returns (chunks, characters)."""
    for _ in range(5):
        index = _active_index(kb_id)
        doc, drafts = prepare(path, file_type, source, chunk_size=index.chunk_size,
                              chunk_overlap=index.chunk_overlap, splitter=index.splitter,
                              boilerplate=boilerplate)
        embed_texts = [d.embed_text(doc.title) for d in drafts]
        vectors = embed_in_batches(embedder_for_index(index), embed_texts, should_stop=check)
        metas = chunk_metas(doc, drafts, source=source, file_type=file_type,
                            document_id=document_id)
        done = _store(kb_id=kb_id, document_id=document_id, index_id=index.id, doc=doc,
                      drafts=drafts, embed_texts=embed_texts, vectors=vectors, metas=metas,
                      new_values=new_values)
        if done is not None:
            return done
    raise RuntimeError("the knowledge base switched indexes again and again while this file was "
                       "indexed; retry the job")


@dataclass
class _Prepared:
    """A parsed and split document waiting for its vectors and its transaction."""

    item: FileItem
    path: Path
    document_id: int
    replace: bool
    index: KnowledgeIndex
    doc: ParsedDocument
    drafts: list[ChunkDraft]
    embed_texts: list[str]
    new_values: dict[str, Any]
    vectors: np.ndarray | None = None
    store: Future[tuple[int, int] | None] | None = field(default=None, repr=False)


def _expand(items: list[FileItem], work: Path, *, max_bytes: int
            ) -> tuple[list[FileItem], list[str]]:
    """Zip archives become their members (source ``archive.zip/inner/path``); members refused
    (a type not indexed, an archive inside, too large) become failed items with their reason.
    Also the members skipped (types never indexed: stylesheets, images, scripts, fonts)."""
    out: list[FileItem] = []
    skipped_all: list[str] = []
    for n, item in enumerate(items):
        if item.file_type != "zip" or item.error:
            out.append(item)
            continue
        try:
            members, skipped, refused = extract_zip(
                Path(item.stored_path), work / f"zip-{n}", display=item.source,
                max_total_bytes=max_bytes * 5, max_file_bytes=max_bytes)
        except DocumentError as exc:
            item.error = str(exc)
            out.append(item)
            continue
        for m in members:
            out.append(FileItem(source=f"{item.source}/{m.name}", stored_path=str(m.path),
                                file_type=m.file_type, size=m.path.stat().st_size))
        for name, why in refused:
            source = f"{item.source}/{name}"
            out.append(FileItem(source=source, stored_path="",
                                file_type=file_type_for(name) or "unknown",
                                error=f"{source}: {why}"))
        skipped_all.extend(f"{item.source}/{name}" for name, _ in skipped)
    return out, skipped_all


# What stops the whole job rather than failing one file: a cancel, the worker shutting down, the
# job's row taken over elsewhere (JobLost), the database out of reach
STOPS = (JobCancelled, JobInterrupted, JobLost, DatabaseUnreachable)


@dataclass
class IngestReport:
    ingested: int = 0
    unchanged: int = 0
    duplicates: int = 0
    failed: int = 0
    # files of types never indexed (stylesheets, images, scripts, fonts) in a folder or zip
    skipped: int = 0
    chunks: int = 0
    characters: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ingest_files(ctx: JobContext, *, kb_id: int, items: list[FileItem],
                 embedder_for_index: Callable[[KnowledgeIndex], TextEmbedder],
                 max_bytes: int, job_id: int | None = None,
                 keep_dir: Path | None = None, group_texts: int = 64,
                 skipped: Sequence[str] = ()) -> IngestReport:
    """Index ``items`` into the base's active index (see the module's docstring for the
    pipeline). ``group_texts``: documents are embedded together until they hold this many
    chunks. ``skipped``: files of a folder left out because their type is never indexed
    (counted with the zip members left out for the same reason)."""
    started = time.perf_counter()
    report = IngestReport()
    work = ctx.run_dir / "unpacked"
    items, zip_skipped = _expand(items, work, max_bytes=max_bytes)
    left_out = [*skipped, *zip_skipped]
    report.skipped = len(left_out)
    if left_out:
        few = ", ".join(left_out[:5]) + (" …" if len(left_out) > 5 else "")
        ctx.log(f"{len(left_out)} files skipped ({SKIPPED_REASON}): {few}")
    total = len(items)
    with session_scope() as session:
        kb = session.get(KnowledgeBase, kb_id)
        if kb is None or kb.active_index_id is None:
            raise LookupError(f"Knowledge base #{kb_id} is gone.")
    embedders: dict[int, TextEmbedder] = {}
    # what most pages of this upload share (a site's navigation, headers, footers)
    shared = shared_boilerplate(kb_id, [(Path(i.stored_path), i.file_type, i.source)
                                        for i in items if not i.error])
    for file_type, keys in sorted(shared.items()):
        ctx.log(f"{len(keys)} lines that most {file_type} files of this upload share "
                "(navigation, headers, footers) are left out of the index.")

    def embedder_of(ix: KnowledgeIndex) -> TextEmbedder:
        # the active index may change under a long job (a re-index): one embedder per index
        if ix.id not in embedders:
            embedders[ix.id] = embedder_for_index(ix)
        return embedders[ix.id]

    def failed(p_item: FileItem, doc_id: int, exc: BaseException, *, replace: bool) -> None:
        if isinstance(exc, STOPS):  # the job stops: the file has not failed
            raise exc
        if isinstance(exc, (DocumentError, ValueError, OSError, LookupError)):
            _mark_failed(doc_id, str(exc), replace=replace)
            ctx.log(f"{p_item.source}: {exc}", level="WARNING")
        else:
            log.error("ingest of %s failed", p_item.source, exc_info=exc)
            _mark_failed(doc_id, f"{p_item.source} could not be indexed ({type(exc).__name__}: "
                                 f"{exc}).", replace=replace)
        report.failed += 1

    def done(n: int, chars: int, source: str) -> None:
        report.ingested += 1
        report.chunks += n
        report.characters += chars
        ctx.metric("chunks", report.chunks, report.ingested + report.failed)
        if total <= 500 or report.ingested % max(1, total // 100) == 0:
            ctx.log(f"{source}: {n} chunks ({report.ingested + report.failed}/{total} files)")

    group: list[_Prepared] = []  # parsed, waiting for vectors
    writing: list[_Prepared] = []  # embedded, handed to the writer thread

    def finish_writes() -> None:
        """Wait for the writer's documents, in order, and account for them."""
        while writing:
            p = writing.pop(0)
            assert p.store is not None
            try:
                result = p.store.result()
                if result is None:  # the active index changed: this document alone, again
                    result = index_document(
                        kb_id=kb_id, document_id=p.document_id, path=p.path,
                        file_type=p.item.file_type, source=p.item.source,
                        embedder_for_index=embedder_of, new_values=p.new_values,
                        check=ctx.check_cancelled,
                        boilerplate=shared.get(p.item.file_type))
            except Exception as exc:  # noqa: BLE001 - the file fails alone
                failed(p.item, p.document_id, exc, replace=p.replace)
                continue
            done(*result, p.item.source)

    def embed_group(store: ThreadPoolExecutor) -> None:
        """Embed the waiting documents together, then hand them to the writer (after the
        previous group's writes: one group in the writer while the next one embeds)."""
        if not group:
            return
        texts = [t for p in group for t in p.embed_texts]
        try:
            vectors = embed_in_batches(embedder_of(group[0].index), texts,
                                       should_stop=ctx.check_cancelled)
            at = 0
            for p in group:
                p.vectors = vectors[at:at + len(p.embed_texts)]
                at += len(p.embed_texts)
        except Exception as exc:  # noqa: BLE001 - embed one by one: only a culprit fails
            if isinstance(exc, STOPS):
                raise
            for p in group:
                try:
                    p.vectors = embed_in_batches(embedder_of(p.index), p.embed_texts,
                                                 should_stop=ctx.check_cancelled)
                except Exception as one:  # noqa: BLE001
                    failed(p.item, p.document_id, one, replace=p.replace)
        finish_writes()
        for p in group:
            if p.vectors is None:
                continue
            metas = chunk_metas(p.doc, p.drafts, source=p.item.source,
                                file_type=p.item.file_type, document_id=p.document_id)
            p.store = store.submit(_store, kb_id=kb_id, document_id=p.document_id,
                                   index_id=p.index.id, doc=p.doc, drafts=p.drafts,
                                   embed_texts=p.embed_texts, vectors=p.vectors, metas=metas,
                                   new_values=p.new_values)
            writing.append(p)
        group.clear()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kb-store") as store:
        try:
            for i, item in enumerate(items):
                ctx.check_cancelled()
                ctx.progress(i / max(1, total), "file {current}/{total}: {name}",
                             current=i + 1, total=total, name=item.source[-80:])
                path = Path(item.stored_path)
                if not item.error and not item.sha256:
                    item.sha256 = sha256_of(path)
                    item.size = path.stat().st_size
                if keep_dir is not None and not item.error and not path.is_relative_to(keep_dir):
                    # members of archives: keep a copy beside the uploads (re-index needs them)
                    keep_dir.mkdir(parents=True, exist_ok=True)
                    kept = keep_dir / f"{item.sha256}{path.suffix}"
                    if not kept.exists():
                        kept.write_bytes(path.read_bytes())
                    path = kept
                    item.stored_path = str(kept)
                if any(p.item.sha256 == item.sha256 or p.item.source == item.source
                       for p in group + writing):
                    # the same content (or name) is still on its way: store it first, so this
                    # one is seen as a duplicate (or unchanged)
                    embed_group(store)
                    finish_writes()
                doc_id, action = _plan(kb_id, item, job_id)
                if action == "unchanged":
                    report.unchanged += 1
                    continue
                if action == "duplicate":
                    report.duplicates += 1
                    continue
                if action == "failed":
                    report.failed += 1
                    continue
                replace = action == "replace"
                try:
                    index = _active_index(kb_id)
                    doc, drafts = prepare(path, item.file_type, item.source,
                                          chunk_size=index.chunk_size,
                                          chunk_overlap=index.chunk_overlap,
                                          splitter=index.splitter,
                                          boilerplate=shared.get(item.file_type))
                except Exception as exc:  # noqa: BLE001 - the file fails alone
                    failed(item, doc_id, exc, replace=replace)
                    continue
                if group and group[0].index.id != index.id:
                    embed_group(store)  # a re-index switched indexes: one embedder per group
                group.append(_Prepared(
                    item=item, path=path, document_id=doc_id, replace=replace, index=index,
                    doc=doc, drafts=drafts, embed_texts=[d.embed_text(doc.title) for d in drafts],
                    new_values={"sha256": item.sha256, "size": item.size,
                                "stored_path": item.stored_path, "file_type": item.file_type,
                                "job_id": job_id}))
                if sum(len(p.embed_texts) for p in group) >= group_texts:
                    embed_group(store)
            embed_group(store)
            finish_writes()
        finally:
            # cancelled or failed: the documents already in the writer finish (each is whole)
            for p in writing:
                if p.store is not None:
                    p.store.cancel()
    report.seconds = round(time.perf_counter() - started, 3)
    ctx.progress(1.0, "done: {ingested} indexed, {failed} failed", ingested=report.ingested,
                 failed=report.failed)
    return report


def _plan(kb_id: int, item: FileItem, job_id: int | None) -> tuple[int, str]:
    """The document row for this file and what to do: new, replace, unchanged, duplicate,
    failed (refused before parsing). Committed at once, so the page shows it."""
    with session_scope() as session:
        row = session.execute(select(KnowledgeDocument).where(
            KnowledgeDocument.kb_id == kb_id, KnowledgeDocument.source == item.source
        ).with_for_update()).scalar_one_or_none()
        if row is not None and row.sha256 == item.sha256 and \
                row.status in (DocumentStatus.ready, DocumentStatus.duplicate):
            return row.id, "unchanged"
        if item.error:
            if row is None:
                row = KnowledgeDocument(kb_id=kb_id, source=item.source, file_type=item.file_type,
                                        sha256=item.sha256 or "-", size=item.size,
                                        stored_path=item.stored_path, job_id=job_id)
                session.add(row)
            row.status = DocumentStatus.failed.value
            row.error = item.error
            session.flush()
            return row.id, "failed"
        twin = session.execute(select(KnowledgeDocument).where(
            KnowledgeDocument.kb_id == kb_id, KnowledgeDocument.sha256 == item.sha256,
            KnowledgeDocument.status == DocumentStatus.ready.value,
            KnowledgeDocument.source != item.source)).scalars().first()
        if row is None:
            row = KnowledgeDocument(kb_id=kb_id, source=item.source, file_type=item.file_type,
                                    sha256=item.sha256, size=item.size,
                                    stored_path=item.stored_path, job_id=job_id,
                                    status=DocumentStatus.processing.value)
            session.add(row)
            session.flush()
            action = "new"
        else:
            action = "replace" if row.status == DocumentStatus.ready else "new"
            if action == "new":
                row.status = DocumentStatus.processing.value
                row.sha256, row.size = item.sha256, item.size
                row.stored_path, row.file_type = item.stored_path, item.file_type
            row.job_id = job_id
        if twin is not None and action == "new":
            row.status = DocumentStatus.duplicate.value
            row.duplicate_of = twin.id
            row.error = None
            row.chunk_count = 0
            return row.id, "duplicate"
        if action == "new":
            # a half-done earlier attempt (killed worker) left no chunks: its transaction never
            # committed; nothing to clean
            row.error = None
        return row.id, action


def _mark_failed(doc_id: int, reason: str, *, replace: bool) -> None:
    with session_scope() as session:
        row = session.get(KnowledgeDocument, doc_id, with_for_update=True)
        if row is None:
            return
        if replace:
            row.error = (f"An updated copy could not be indexed: {reason} The earlier version "
                         "is still searchable.")
        else:
            row.status = DocumentStatus.failed.value
            row.error = reason
