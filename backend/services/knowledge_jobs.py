"""Job kinds of knowledge bases (cpu queue): ``kb_ingest`` and ``kb_reindex``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from backend.accounts.actor import Actor
from backend.db import session_scope
from backend.jobs.context import JobContext
from backend.jobs.kinds import job_kind
from backend.models.knowledge import (
    DocumentStatus,
    IndexStatus,
    KnowledgeBase,
    KnowledgeChunk,
    KnowledgeDocument,
    KnowledgeIndex,
)


def _kb_actor(kb_id: int) -> Actor:
    with session_scope() as session:
        kb = session.get(KnowledgeBase, kb_id)
        if kb is None:
            raise ValueError(f"Knowledge base #{kb_id} no longer exists.")
        return Actor.system(kb.workspace_id)


@job_kind("kb_ingest", queue="cpu", title="Knowledge base ingest")
def run_ingest(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    from backend.accounts.uploads import max_upload_bytes
    from backend.knowledge.ingest import FileItem, ingest_files
    from backend.services.knowledge import _kb_upload_dir, embedder_for_index

    kb_id = int(params["kb_id"])
    actor = _kb_actor(kb_id)
    items = [FileItem(**f) for f in params.get("files", [])]
    report = ingest_files(
        ctx, kb_id=kb_id, items=items, max_bytes=max_upload_bytes(), job_id=ctx.job_id,
        embedder_for_index=lambda ix: embedder_for_index(actor, ix.embedder, ix.vectors),
        keep_dir=_kb_upload_dir(kb_id), skipped=list(params.get("skipped", [])))
    return report.to_dict()


@job_kind("kb_reindex", queue="cpu", title="Knowledge base re-index")
def run_reindex(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Build a new index beside the active one, then switch in one transaction. A retry goes on
    with the index it had started (documents already in it are not redone)."""
    from backend.knowledge.ingest import (
        chunk_metas,
        embed_in_batches,
        prepare,
        shared_boilerplate,
    )
    from backend.knowledge.loaders import DocumentError
    from backend.knowledge.store import write_chunks
    from backend.services.knowledge import (
        _check_settings,
        _embedder_dim,
        _index_outdated,
        _new_index,
        embedder_for_index,
    )

    kb_id = int(params["kb_id"])
    actor = _kb_actor(kb_id)
    with session_scope() as session:
        kb = session.get(KnowledgeBase, kb_id)
        assert kb is not None
        settings = _check_settings(actor, dict(kb.settings or {}))
        ix = session.execute(select(KnowledgeIndex).where(
            KnowledgeIndex.kb_id == kb_id, KnowledgeIndex.status == IndexStatus.building.value)
        ).scalars().first()
        if ix is not None and _index_outdated(ix, settings):
            session.delete(ix)  # settings changed again since: start over
            session.flush()
            ix = None
        if ix is None:
            ix = _new_index(session, kb, settings, _embedder_dim(actor, settings["embedder"]),
                            IndexStatus.building)
        ix.job_id = ctx.job_id
        new_id = ix.id
        new_vectors = ix.vectors
        session.expunge(ix)
    embedder = embedder_for_index(actor, settings["embedder"], new_vectors)
    done = failed = 0
    # documents that could not be read, by id and content (a newer version is tried again)
    skip = {str(x) for x in params.get("_failed", [])}

    def ready_docs(session: Any, lock: bool = False) -> list[Any]:
        stmt = select(KnowledgeDocument.id, KnowledgeDocument.source,
                      KnowledgeDocument.stored_path, KnowledgeDocument.file_type,
                      KnowledgeDocument.sha256, KnowledgeDocument.job_id).where(
            KnowledgeDocument.kb_id == kb_id,
            KnowledgeDocument.status == DocumentStatus.ready.value).order_by(KnowledgeDocument.id)
        rows = session.execute(stmt.with_for_update() if lock else stmt).all()
        return [r for r in rows if f"{r[0]}:{r[4]}" not in skip and str(r[0]) not in skip]

    def in_new_index(session: Any) -> set[int]:
        return set(session.execute(select(KnowledgeChunk.document_id).where(
            KnowledgeChunk.index_id == new_id).distinct()).scalars())

    # what most documents of each upload share (navigation, headers, footers), by upload job
    shared: dict[int | None, dict[str, frozenset[str]]] = {}

    def boilerplate_of(job_id: int | None, file_type: str) -> frozenset[str] | None:
        if job_id not in shared:
            with session_scope() as session:
                batch = [(Path(r[2]), r[3], r[1]) for r in ready_docs(session)
                         if r[5] == job_id]
            shared[job_id] = shared_boilerplate(kb_id, batch, job_id=job_id)
            for ftype, keys in sorted(shared[job_id].items()):
                ctx.log(f"{len(keys)} lines shared by most {ftype} files of upload job "
                        f"#{job_id} are left out of the index.")
        return shared[job_id].get(file_type)

    old_id: int | None = None
    while True:
        with session_scope() as session:
            have = in_new_index(session)
            ready = ready_docs(session)
            todo = [r for r in ready if r[0] not in have]
            total = max(1, len(ready))
        finished = len(have)  # documents already in the new index (a retry goes on)
        for doc_id, source, stored, ftype, sha, job_id in todo:
            ctx.check_cancelled()
            ctx.progress(min(0.99, finished / total), "file {current}/{total}: {name}",
                         current=min(total, finished + 1), total=total, name=source[-80:])
            finished += 1
            try:
                doc, drafts = prepare(Path(stored), ftype, source, chunk_size=ix.chunk_size,
                                      chunk_overlap=ix.chunk_overlap, splitter=ix.splitter,
                                      boilerplate=boilerplate_of(job_id, ftype))
            except (DocumentError, OSError) as exc:
                if _still_ready(doc_id, sha):
                    ctx.log(f"{source}: {exc}", level="WARNING")
                    skip.add(f"{doc_id}:{sha}")
                    params.setdefault("_failed", []).append(f"{doc_id}:{sha}")
                    failed += 1
                continue
            embed_texts = [d.embed_text(doc.title) for d in drafts]
            vectors = embed_in_batches(embedder, embed_texts, should_stop=ctx.check_cancelled)
            with session_scope() as session:
                # the lock order of every writer: the base, the document, the indexes
                if session.get(KnowledgeBase, kb_id, with_for_update={"read": True}) is None:
                    raise ValueError("The knowledge base was deleted during the re-index.")
                row = session.get(KnowledgeDocument, doc_id, with_for_update={"read": True})
                if row is None or row.status != DocumentStatus.ready.value or row.sha256 != sha:
                    continue  # deleted or replaced while it was embedded: the next round sees
                index = session.get(KnowledgeIndex, new_id, with_for_update=True)
                if index is None:
                    raise ValueError("The new index was removed while it was being built.")
                if session.execute(select(KnowledgeChunk.id).where(
                        KnowledgeChunk.index_id == new_id, KnowledgeChunk.document_id == doc_id
                ).limit(1)).first() is not None:
                    continue
                write_chunks(session, index=index, document_id=doc_id,
                             texts=[d.text for d in drafts], embed_texts=embed_texts,
                             vectors=vectors, metas=chunk_metas(doc, drafts, source=source,
                                                                file_type=ftype,
                                                                document_id=doc_id))
            done += 1
            ctx.log(f"{source}: {len(drafts)} chunks ({finished}/{total} files)")
        # switch when every ready document is in the new index, checked under the base's lock:
        # an ingest writes under a share lock of it, so none can slip in between
        with session_scope() as session:
            kb = session.get(KnowledgeBase, kb_id, with_for_update=True)
            new = session.get(KnowledgeIndex, new_id)
            if kb is None or new is None:
                raise ValueError("The knowledge base was deleted during the re-index.")
            ready = ready_docs(session, lock=True)
            have = in_new_index(session)
            if any(r[0] not in have for r in ready):
                continue  # documents added or replaced meanwhile: index them first
            old_id = kb.active_index_id
            new.status = IndexStatus.active.value
            kb.active_index_id = new_id
            counts = dict(session.execute(select(KnowledgeChunk.document_id, func.count()).where(
                KnowledgeChunk.index_id == new_id).group_by(KnowledgeChunk.document_id)).all())
            for d in session.execute(select(KnowledgeDocument).where(
                    KnowledgeDocument.kb_id == kb_id,
                    KnowledgeDocument.status == DocumentStatus.ready.value)).scalars():
                d.chunk_count = int(counts.get(d.id, 0))
            if old_id is not None and old_id != new_id:
                old = session.get(KnowledgeIndex, old_id)
                if old is not None:
                    session.delete(old)
            break
    ctx.progress(1.0, "done: {ingested} indexed, {failed} failed", ingested=done, failed=failed)
    return {"index_id": new_id, "replaced_index_id": old_id, "documents": done,
            "failed": failed}


def _still_ready(doc_id: int, sha: str) -> bool:
    with session_scope() as session:
        row = session.get(KnowledgeDocument, doc_id)
        return row is not None and row.status == DocumentStatus.ready.value and row.sha256 == sha
