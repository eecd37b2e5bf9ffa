"""Knowledge bases as pages, the CLI, agents, the playground and fine-tuning see them.

Reading and searching needs the user role; creating, ingesting, editing and deleting the builder
role. Members see their workspace only; admins may look across workspaces. Other stages call
``search`` (hits with citations) and ``list_chunks`` (a base's text for training data).
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import threading
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import func, literal, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.accounts.actor import Actor, Role
from backend.accounts.audit import record
from backend.config import get_settings
from backend.db import read_scope, session_scope
from backend.models.knowledge import (
    DocumentStatus,
    IndexStatus,
    KnowledgeBase,
    KnowledgeChunk,
    KnowledgeDocument,
    KnowledgeIndex,
)
from backend.services.lookup import find_owned, resolve_owned

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[^\s/\\][^/\\]{0,199}$")
LANGUAGES = ("en", "zh")
SPLITTERS = ("heading", "recursive", "sentence")
MODES = ("hybrid", "vector", "keyword")
DEFAULT_SETTINGS: dict[str, Any] = {"embedder": None, "chunk_size": 1000, "chunk_overlap": 150,
                                    "splitter": "heading", "language": "en"}
INDEX_SETTINGS = ("embedder", "chunk_size", "chunk_overlap", "splitter", "language")
INGEST_KIND = "kb_ingest"
REINDEX_KIND = "kb_reindex"


class KnowledgeBaseNotFound(LookupError):
    pass


class KnowledgeBaseExists(ValueError):
    pass


# ------------------------------------------------------------------------------------ views


@dataclass
class KnowledgeBaseView:
    id: int
    name: str
    description: str
    workspace_id: int
    created_by: int | None
    created_at: datetime
    updated_at: datetime
    settings: dict[str, Any]
    index: dict[str, Any]
    documents: int
    failed: int
    pending: int
    chunks: int
    characters: int
    reindex_needed: bool
    building: bool

    @property
    def embedder(self) -> str:
        return self.index.get("embedder") or "all-MiniLM-L6-v2 (bundled)"

    @property
    def language(self) -> str:
        return str(self.settings.get("language", "en"))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, datetime):
                d[k] = v.isoformat()
        d["embedder"] = self.embedder
        return d


@dataclass
class DocumentView:
    id: int
    kb_id: int
    source: str
    file_type: str
    status: str
    error: str | None
    title: str
    chunk_count: int
    char_count: int
    size: int
    sha256: str
    duplicate_of: int | None
    job_id: int | None
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, datetime):
                d[k] = v.isoformat()
        return d


@dataclass
class SearchHit:
    """One retrieved chunk with its citation. ``metadata`` carries title, heading_path, page,
    file_type, and the ranks/scores per mode and the matching character spans."""

    source: str
    document_id: int
    chunk_id: int
    score: float
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return str(self.metadata.get("title") or "")

    @property
    def heading_path(self) -> list[str]:
        return list(self.metadata.get("heading_path") or [])

    @property
    def page(self) -> int | None:
        return self.metadata.get("page")

    @property
    def relevance(self) -> float:
        """How well the chunk matches the question, 0 to 1, for people (``relevance``)."""
        return float(self.metadata.get("relevance", 0.0))

    def citation(self) -> str:
        parts = [self.source]
        if self.heading_path:
            parts.append(" > ".join(self.heading_path))
        if self.page:
            parts.append(f"p. {self.page}")
        return " — ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ChunkView:
    id: int
    document_id: int
    source: str
    ord: int
    text: str
    enabled: bool
    edited: bool
    length: int
    metadata: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _index_dict(ix: KnowledgeIndex | None) -> dict[str, Any]:
    if ix is None:
        return {}
    return {"id": ix.id, "status": ix.status, "embedder": ix.embedder,
            "vectors": ix.vectors, "dim": ix.dim,
            "chunk_size": ix.chunk_size, "chunk_overlap": ix.chunk_overlap,
            "splitter": ix.splitter, "language": ix.language, "chunks": int(ix.n_chunks),
            "avg_length": round(ix.total_length / ix.n_chunks, 1) if ix.n_chunks else 0.0}


def _other_vectors(ix: KnowledgeIndex) -> bool:
    """Built by the bundled MiniLM with the other kind of vectors than the setting now makes
    (float or int8): it keeps working with its own, a re-index moves it to the new one. (An
    index from before kinds were recorded has none: it follows the setting, as it always did.)"""
    from backend.knowledge.embedding import bundled_variant

    return ix.embedder is None and ix.vectors is not None and ix.vectors != bundled_variant()


def _settings_of_index(ix: KnowledgeIndex) -> dict[str, Any]:
    return {"embedder": ix.embedder, "chunk_size": ix.chunk_size,
            "chunk_overlap": ix.chunk_overlap, "splitter": ix.splitter, "language": ix.language}


def _index_outdated(ix: KnowledgeIndex, settings: dict[str, Any]) -> bool:
    """Built with other index settings than ``settings`` (the base's), or with the other kind
    of vectors: a re-index would build another index."""
    return _settings_of_index(ix) != {k: settings[k] for k in INDEX_SETTINGS} or \
        _other_vectors(ix)


def _view(session: Session, kb: KnowledgeBase) -> KnowledgeBaseView:
    ix = session.get(KnowledgeIndex, kb.active_index_id) if kb.active_index_id else None
    counts = dict(session.execute(
        select(KnowledgeDocument.status, func.count()).where(KnowledgeDocument.kb_id == kb.id)
        .group_by(KnowledgeDocument.status)).all())
    chars = session.execute(select(func.coalesce(func.sum(KnowledgeDocument.char_count), 0))
                            .where(KnowledgeDocument.kb_id == kb.id,
                                   KnowledgeDocument.status == DocumentStatus.ready.value)
                            ).scalar() or 0
    building = session.execute(select(func.count()).select_from(KnowledgeIndex).where(
        KnowledgeIndex.kb_id == kb.id, KnowledgeIndex.status == IndexStatus.building.value)
    ).scalar() or 0
    settings = {**DEFAULT_SETTINGS, **(kb.settings or {})}
    return KnowledgeBaseView(
        id=kb.id, name=kb.name, description=kb.description, workspace_id=kb.workspace_id,
        created_by=kb.created_by, created_at=kb.created_at, updated_at=kb.updated_at,
        settings=settings, index=_index_dict(ix),
        documents=int(counts.get("ready", 0)) + int(counts.get("duplicate", 0)),
        failed=int(counts.get("failed", 0)),
        pending=int(counts.get("pending", 0)) + int(counts.get("processing", 0)),
        chunks=int(ix.n_chunks) if ix else 0, characters=int(chars),
        reindex_needed=ix is not None and _index_outdated(ix, settings),
        building=bool(building),
    )


# ------------------------------------------------------------------------------- lookups


def _load(session: Session, actor: Actor, kb: int | str, *, lock: bool = False
          ) -> KnowledgeBase:
    row = find_owned(session, actor, KnowledgeBase, kb, lock=lock)
    if row is None:
        raise _not_found(kb)
    return row


def _not_found(kb: int | str) -> KnowledgeBaseNotFound:
    return KnowledgeBaseNotFound(
        f"No knowledge base {kb!r} in this workspace. `studio kb list` shows them.")


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise ValueError("A knowledge base name needs 1 to 200 characters, no slashes, and must "
                         "not start with a space.")
    return name


def _check_settings(actor: Actor, s: dict[str, Any]) -> dict[str, Any]:
    out = {**DEFAULT_SETTINGS, **{k: v for k, v in s.items() if v is not None or k == "embedder"}}
    unknown = set(out) - set(DEFAULT_SETTINGS)
    if unknown:
        raise ValueError(f"Unknown setting {', '.join(sorted(unknown))}.")
    try:
        out["chunk_size"] = int(out["chunk_size"])
        out["chunk_overlap"] = int(out["chunk_overlap"])
    except (TypeError, ValueError):
        raise ValueError("chunk size and overlap must be whole numbers of characters.") from None
    if not 100 <= out["chunk_size"] <= 8000:
        raise ValueError("The chunk size must be between 100 and 8000 characters.")
    if not 0 <= out["chunk_overlap"] < out["chunk_size"] // 2 + 1:
        raise ValueError("The chunk overlap must be at least 0 and at most half the chunk size.")
    if out["splitter"] not in SPLITTERS:
        raise ValueError(f"Unknown splitter {out['splitter']!r}: use {', '.join(SPLITTERS)}.")
    lang = str(out["language"]).lower().replace("_cn", "").replace("-cn", "")
    if lang not in LANGUAGES:
        raise ValueError(f"Unknown language {out['language']!r}: use en or zh.")
    out["language"] = lang
    emb = out.get("embedder")
    if emb in ("", "default", "all-MiniLM-L6-v2", "minilm"):
        emb = None
    if emb is not None:
        from backend.services.models import model_spec

        spec = model_spec(actor=actor, model=emb, capability="embeddings")
        emb = spec.name
    out["embedder"] = emb
    return out


def _embedder_dim(actor: Actor, embedder: str | None) -> int:
    if embedder is None:
        from backend.llm.embeddings import DEFAULT_EMBEDDING_DIM

        return DEFAULT_EMBEDDING_DIM
    return int(embedder_for_index(actor, embedder).embed(["dimension probe"]).shape[1])


def embedder_for_index(actor: Actor, embedder: str | None, vectors: str | None = None) -> Any:
    """The embedder of an index: the bundled MiniLM (of the kind of ``vectors`` the index was
    built with; None, for indexes from before kinds were recorded: the setting's) or a
    registered embedding model."""
    if embedder is None:
        from backend.knowledge.embedding import bundled_embedder

        return bundled_embedder(vectors)
    from backend.services.models import embedder as model_embedder

    return model_embedder(actor=actor, model=embedder)


def _new_index(session: Session, kb: KnowledgeBase, settings: dict[str, Any], dim: int,
               status: IndexStatus) -> KnowledgeIndex:
    from backend.knowledge.embedding import bundled_variant
    from backend.knowledge.store import ensure_hnsw_index

    ix = KnowledgeIndex(kb_id=kb.id, status=status.value, embedder=settings["embedder"],
                        vectors=bundled_variant() if settings["embedder"] is None else None,
                        dim=dim, chunk_size=settings["chunk_size"],
                        chunk_overlap=settings["chunk_overlap"], splitter=settings["splitter"],
                        language=settings["language"], n_chunks=0, total_length=0)
    session.add(ix)
    session.flush()
    ensure_hnsw_index(session, dim)
    return ix


# ------------------------------------------------------------------------ bases: CRUD


def list_knowledge_bases(*, actor: Actor, search: str = "", all_workspaces: bool = False
                         ) -> list[KnowledgeBaseView]:
    actor.require_role(Role.builder, "see knowledge bases")
    with session_scope() as session:
        stmt = select(KnowledgeBase).order_by(KnowledgeBase.name)
        if not (all_workspaces and actor.is_admin):
            stmt = stmt.where(KnowledgeBase.workspace_id == actor.workspace_id)
        if search.strip():
            like = f"%{search.strip()}%"
            stmt = stmt.where(or_(KnowledgeBase.name.ilike(like),
                                  KnowledgeBase.description.ilike(like)))
        return [_view(session, kb) for kb in session.execute(stmt).scalars()]


def get_knowledge_base(*, actor: Actor, kb: int | str) -> KnowledgeBaseView:
    actor.require_role(Role.builder, "see knowledge bases")
    with session_scope() as session:
        return _view(session, _load(session, actor, kb))


def create_knowledge_base(*, actor: Actor, name: str, description: str = "",
                          embedder: str | None = None, chunk_size: int = 1000,
                          chunk_overlap: int = 150, splitter: str = "heading",
                          language: str = "en") -> KnowledgeBaseView:
    actor.require_role(Role.builder, "create knowledge bases")
    settings = _check_settings(actor, {"embedder": embedder, "chunk_size": chunk_size,
                                       "chunk_overlap": chunk_overlap, "splitter": splitter,
                                       "language": language})
    dim = _embedder_dim(actor, settings["embedder"])
    try:
        with session_scope() as session:
            kb = KnowledgeBase(name=_check_name(name), description=description.strip()[:2000],
                               settings=settings, workspace_id=actor.workspace_id,
                               created_by=actor.user_id)
            session.add(kb)
            session.flush()
            ix = _new_index(session, kb, settings, dim, IndexStatus.active)
            kb.active_index_id = ix.id
            record(actor, "create", "knowledge_base", kb.id, {"name": kb.name, **settings},
                   session=session)
            session.flush()
            return _view(session, kb)
    except IntegrityError as exc:
        if "uq_knowledge_bases_workspace_id" in str(exc.orig):
            raise KnowledgeBaseExists(f"A knowledge base named {name.strip()!r} already exists "
                                      "in this workspace. Pick another name.") from None
        raise


def update_knowledge_base(*, actor: Actor, kb: int | str, name: str | None = None,
                          description: str | None = None, **settings: Any
                          ) -> KnowledgeBaseView:
    """Rename, describe, or change settings. Settings that affect the index (embedder, chunking,
    language) take effect through ``reindex`` (the view says ``reindex_needed``)."""
    actor.require_role(Role.builder, "change knowledge bases")
    unknown = set(settings) - set(INDEX_SETTINGS)
    if unknown:
        raise ValueError(f"Unknown setting {', '.join(sorted(unknown))}.")
    try:
        with session_scope() as session:
            row = _load(session, actor, kb, lock=True)
            changes: dict[str, Any] = {}
            if name is not None and name.strip() != row.name:
                row.name = _check_name(name)
                changes["name"] = row.name
            if description is not None:
                row.description = description.strip()[:2000]
                changes["description"] = row.description
            if settings:
                merged = {**DEFAULT_SETTINGS, **(row.settings or {}), **settings}
                row.settings = _check_settings(actor, merged)
                changes.update(settings)
            record(actor, "update", "knowledge_base", row.id, changes, session=session)
            session.flush()
            return _view(session, row)
    except IntegrityError as exc:
        if "uq_knowledge_bases_workspace_id" in str(exc.orig):
            raise KnowledgeBaseExists(f"A knowledge base named {name!r} already exists in this "
                                      "workspace.") from None
        raise


def _kb_upload_dir(kb_id: int) -> Path:
    return get_settings().uploads_dir / "knowledge" / f"kb-{kb_id}"


def delete_knowledge_base(*, actor: Actor, kb: int | str) -> KnowledgeBaseView:
    """The base, its documents, chunks, statistics and stored files."""
    actor.require_role(Role.builder, "delete knowledge bases")
    with session_scope() as session:
        row = _load(session, actor, kb, lock=True)
        view = _view(session, row)
        session.delete(row)
        record(actor, "delete", "knowledge_base", row.id, {"name": row.name}, session=session)
    shutil.rmtree(_kb_upload_dir(view.id), ignore_errors=True)
    return view


# ------------------------------------------------------------------------------ documents


def _doc_view(d: KnowledgeDocument) -> DocumentView:
    return DocumentView(id=d.id, kb_id=d.kb_id, source=d.source, file_type=d.file_type,
                        status=d.status, error=d.error, title=d.title, chunk_count=d.chunk_count,
                        char_count=int(d.char_count), size=int(d.size), sha256=d.sha256,
                        duplicate_of=d.duplicate_of, job_id=d.job_id, created_at=d.created_at,
                        updated_at=d.updated_at)


def list_documents(*, actor: Actor, kb: int | str, search: str = "",
                   statuses: Sequence[str] | None = None, limit: int = 5000
                   ) -> list[DocumentView]:
    actor.require_role(Role.builder, "see knowledge bases")
    with session_scope() as session:
        row = _load(session, actor, kb)
        stmt = select(KnowledgeDocument).where(KnowledgeDocument.kb_id == row.id)
        if search.strip():
            like = f"%{search.strip()}%"
            stmt = stmt.where(or_(KnowledgeDocument.source.ilike(like),
                                  KnowledgeDocument.title.ilike(like),
                                  KnowledgeDocument.error.ilike(like)))
        if statuses:
            stmt = stmt.where(KnowledgeDocument.status.in_(list(statuses)))
        stmt = stmt.order_by(KnowledgeDocument.source).limit(limit)
        return [_doc_view(d) for d in session.execute(stmt).scalars()]


def delete_document(*, actor: Actor, kb: int | str, document_id: int) -> DocumentView:
    """The document and every chunk of it, in every index, in one transaction. Copies stored
    as duplicates of it are indexed again from their own files."""
    from backend.knowledge.store import remove_document_chunks

    actor.require_role(Role.builder, "delete documents")
    with session_scope() as session:
        base = _load(session, actor, kb)
        doc = session.get(KnowledgeDocument, document_id, with_for_update=True)
        if doc is None or doc.kb_id != base.id:
            raise LookupError(f"No document #{document_id} in {base.name!r}.")
        view = _doc_view(doc)
        stored = doc.stored_path
        remove_document_chunks(session, document_id=doc.id)
        twins = session.execute(select(KnowledgeDocument).where(
            KnowledgeDocument.kb_id == base.id,
            KnowledgeDocument.duplicate_of == doc.id)).scalars().all()
        requeue = [{"source": t.source, "stored_path": t.stored_path, "file_type": t.file_type,
                    "size": int(t.size), "sha256": t.sha256} for t in twins]
        for t in twins:
            t.status = DocumentStatus.pending.value
            t.duplicate_of = None
        session.delete(doc)
        record(actor, "delete", "kb_document", doc.id, {"kb": base.name, "source": doc.source},
               session=session)
        kb_id, base_name = base.id, base.name
    _remove_stored(kb_id, stored)
    if requeue:
        _submit_ingest(actor, kb_id, requeue, kb_name=base_name, template="copies",
                       source=view.source)
    return view


def _remove_stored(kb_id: int, path: str) -> None:
    if not path:
        return
    p = Path(path)
    if _kb_upload_dir(kb_id) in p.parents:
        with session_scope() as session:
            in_use = session.execute(select(func.count()).select_from(KnowledgeDocument).where(
                KnowledgeDocument.stored_path == path)).scalar()
        if not in_use:
            p.unlink(missing_ok=True)


# -------------------------------------------------------------------------------- ingest


def _stash(kb_id: int, name: str, source: Path | bytes | BinaryIO, limit: int
           ) -> dict[str, Any]:
    """Keep one file under the base's upload folder with a generated name; a file over the
    size limit or of an unknown type becomes a refused item with its reason."""
    from backend.knowledge.ingest import sha256_of
    from backend.knowledge.loaders import FILE_TYPES, file_type_for

    ftype = file_type_for(name)
    item: dict[str, Any] = {"source": name, "stored_path": "", "file_type": ftype or "unknown",
                            "size": 0, "sha256": ""}
    if ftype is None:
        item["error"] = (f"{name}: this file type is not indexed. Accepted: "
                         f"{', '.join(sorted(FILE_TYPES))}.")
        return item
    folder = _kb_upload_dir(kb_id)
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{uuid.uuid4().hex}{Path(name).suffix.lower()}"
    size = 0
    too_big = False
    if isinstance(source, Path):
        size = source.stat().st_size
        too_big = size > limit
        if not too_big:
            shutil.copyfile(source, dest)
    else:
        data = source if isinstance(source, bytes | bytearray) else None
        with dest.open("wb") as out:
            if data is not None:
                size = len(data)
                too_big = size > limit
                if not too_big:
                    out.write(data)
            else:
                stream: Any = source
                while chunk := stream.read(1 << 20):
                    size += len(chunk)
                    if size > limit:
                        too_big = True
                        break
                    out.write(chunk)
    item["size"] = size
    if too_big:
        dest.unlink(missing_ok=True)
        item["error"] = (f"{name} is {size / 1048576:.1f} MB, over the "
                         f"{limit // 1048576} MB limit (setting STUDIO_MAX_UPLOAD_MB). Split it "
                         "or ask an admin to raise the limit.")
        return item
    item["stored_path"] = str(dest)
    item["sha256"] = sha256_of(dest)
    return item


def _walk(path: Path) -> Iterable[tuple[str, Path]]:
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file() and not any(part.startswith(".") for part in
                                       p.relative_to(path).parts):
                yield p.relative_to(path).as_posix(), p
    elif path.is_file():
        yield path.name, path
    else:
        raise FileNotFoundError(f"{path} does not exist.")


def _submit_ingest(actor: Actor, kb_id: int, items: list[dict[str, Any]], *, kb_name: str,
                   template: str = "add", source: str = "", enqueue: bool = True,
                   skipped: list[str] | None = None) -> int:
    from backend.jobs import titles
    from backend.services.jobs import submit_job

    if template == "copies":  # the copies of a removed document are indexed in its place
        title_template, args = titles.KB_REINDEX_COPIES, {"kb": kb_name, "source": source}
    else:
        names = ", ".join(i["source"] for i in items[:3]) + (" …" if len(items) > 3 else "")
        title_template, args = titles.KB_INGEST, {"kb": kb_name, "files": names}
    params: dict[str, Any] = {"kb_id": kb_id, "files": items}
    if skipped:
        params["skipped"] = skipped
    job = submit_job(actor=actor, kind=INGEST_KIND, params=params,
                     title_template=title_template, title_args=args, enqueue=enqueue)
    return job.id


def ingest_files(*, actor: Actor, kb: int | str, paths: Sequence[str | Path] | None = None,
                 uploads: Sequence[tuple[str, bytes | BinaryIO]] | None = None,
                 enqueue: bool = True) -> int:
    """Store the files (folders walked, names kept relative to them; zips opened by the job)
    and launch the ingest job on the cpu queue. Returns the job id."""
    actor.require_role(Role.builder, "add documents")
    from backend.accounts.uploads import display_name, max_upload_bytes

    with session_scope() as session:
        base = _load(session, actor, kb)
        kb_id, kb_name = base.id, base.name
    from backend.knowledge.loaders import never_indexed

    limit = max_upload_bytes()
    items: list[dict[str, Any]] = []
    # a folder's stylesheets, images, scripts and fonts: skipped and counted, not failed (a
    # file named on its own is still refused when its type is not indexed)
    skipped: list[str] = []
    for p in paths or []:
        root = Path(p).expanduser()
        for rel, file in _walk(root):
            name = display_name(rel, keep_dirs=True)
            if root.is_dir() and never_indexed(name):
                skipped.append(name)
                continue
            items.append(_stash(kb_id, name, file, limit))
    for name, data in uploads or []:
        items.append(_stash(kb_id, display_name(name, keep_dirs=True), data, limit))
    if not items:
        if skipped:
            raise ValueError(f"No files to ingest: the {len(skipped)} files given are "
                             "stylesheets, images, scripts or fonts, which are not indexed.")
        raise ValueError("No files to ingest: give files, folders or a zip.")
    job_id = _submit_ingest(actor, kb_id, items, kb_name=kb_name, enqueue=enqueue,
                            skipped=skipped)
    record(actor, "launch", "kb_ingest", kb_id, {"kb": kb_name, "files": len(items),
                                                 "job": job_id})
    return job_id


def reindex(*, actor: Actor, kb: int | str, enqueue: bool = True) -> int:
    """Build a new index with the base's current settings; search keeps using the old index
    until the new one is complete. Returns the job id."""
    actor.require_role(Role.builder, "re-index knowledge bases")
    from backend.jobs import titles
    from backend.services.jobs import submit_job

    with session_scope() as session:
        base = _load(session, actor, kb)
        kb_id, name = base.id, base.name
    job = submit_job(actor=actor, kind=REINDEX_KIND, params={"kb_id": kb_id},
                     title_template=titles.KB_REINDEX, title_args={"kb": name}, enqueue=enqueue)
    return job.id


def kb_jobs(*, actor: Actor, kb: int | str, limit: int = 10) -> list[Any]:
    """Recent ingest and re-index jobs of this base, newest first (the page follows them)."""
    actor.require_role(Role.builder, "see knowledge bases")
    from backend.services.jobs import list_jobs

    with session_scope() as session:
        kb_id = _load(session, actor, kb).id
    jobs = list_jobs(actor=actor, kinds=[INGEST_KIND, REINDEX_KIND], limit=200)
    return [j for j in jobs if (j.params or {}).get("kb_id") == kb_id][:limit]


# -------------------------------------------------------------------------------- search


def _rerank(actor: Actor, model: str, query: str, hits: list[SearchHit]) -> list[SearchHit]:
    from backend.knowledge.rerank import rerank_scores
    from backend.services.models import model_spec

    spec = model_spec(actor=actor, model=model)
    if not spec.is_local:
        raise ValueError(f"{model!r} is an endpoint; reranking needs a local cross-encoder or "
                         "reranker model folder.")
    scores = rerank_scores(spec.source, query, [h.text for h in hits])
    for h, s in zip(hits, scores, strict=True):
        h.metadata["retrieval_score"] = h.score
        h.score = float(s)
    return sorted(hits, key=lambda h: -h.score)


_side: ThreadPoolExecutor | None = None
_side_lock = threading.Lock()


def _side_pool() -> ThreadPoolExecutor:
    """Threads that run the keyword half of hybrid searches (each on its own connection)."""
    global _side
    if _side is None:
        with _side_lock:
            if _side is None:
                _side = ThreadPoolExecutor(max_workers=4, thread_name_prefix="kb-bm25")
    return _side


def _keyword_candidates(info: Any, query: str, n: int, flt: Any,
                        query_vec: Future[Any]) -> list[Any]:
    """The BM25 list of hybrid search (within ``retrieval.HYBRID_POSTINGS``, with the chunks'
    rows), on its own connection; then, once the question is embedded, each chunk's and its
    document's similarity to it (what hybrid needs of this list, read here beside the vector
    search rather than after it). Its connection starts with BM25's planner settings and
    reads in autocommit: no statements around the search's own."""
    from concurrent.futures import CancelledError

    from backend.knowledge import retrieval

    with read_scope(retrieval.BM25_OPTIONS) as session:
        cands = retrieval.keyword_search(session, info, query, n, flt,
                                         budget=retrieval.HYBRID_POSTINGS, details=True)
        try:
            qvec = query_vec.result()
        except (CancelledError, Exception):
            return cands
        retrieval.similarities(session, info, qvec, cands)
        return cands


def search(*, actor: Actor, kb: str | int, query: str, k: int = 5, mode: str = "hybrid",
           filters: dict[str, Any] | None = None, rerank: str | None = None,
           threshold: float | None = None, neighbors: int = 0,
           per_document: int | None = None) -> list[SearchHit]:
    """The ``k`` best chunks for ``query``. ``mode``: hybrid (RRF of vector and BM25), vector,
    keyword. ``filters``: source(s), heading, file_type(s). ``rerank``: a registered
    cross-encoder/reranker reorders the candidates. ``threshold``: drop hits below it, in the
    mode's own score (vector: cosine similarity; keyword: BM25; with rerank: the reranker's);
    for hybrid, whose RRF score is a rank, on the cosine similarity (``metadata['similarity']``).
    ``neighbors``: add the text of that many chunks before and after each hit as
    ``metadata['context']``. ``per_document``: at most that many chunks of one document lead
    the hits, the others follow them (default ``retrieval.PER_DOCUMENT``; 0: no limit)."""
    actor.require_role(Role.builder, "search knowledge bases")
    from backend.knowledge import retrieval
    from backend.knowledge.terms import highlight_terms, matches

    query = (query or "").strip()
    if not query:
        raise ValueError("Type a question to search for.")
    if mode not in MODES:
        raise ValueError(f"Unknown search mode {mode!r}: use {', '.join(MODES)}.")
    k = max(1, min(int(k), 200))
    flt = retrieval.Filters.from_dict(filters)
    pool = k * 4 if rerank else k
    per_doc = retrieval.PER_DOCUMENT if per_document is None else max(0, int(per_document))
    # room to move a document's extra chunks behind other documents' (same hybrid lists)
    fetch = max(pool, 3 * k) if per_doc else pool
    # one session (one connection) for the lookup, the search and the hits, reading in
    # autocommit (no BEGIN and COMMIT): on a busy machine every round trip to Postgres costs a
    # wait for the CPU. Keyword search's connections start with BM25's planner settings
    with read_scope(retrieval.BM25_OPTIONS if mode == "keyword" else "") as session:
        row = _search_target(session, actor, kb)
        if row is None:
            return []
        info = retrieval.IndexInfo(id=int(row[0]), dim=int(row[1]), language=str(row[2]),
                                   n_chunks=int(row[3]), total_length=int(row[4]),
                                   same_dim_chunks=int(row[6]))
        qvec = None
        keyword: Future[list[retrieval.Candidate]] | None = None
        query_vec: Future[Any] = Future()
        if mode == "hybrid":
            # BM25 on a second connection while the question is embedded and the vector search
            # runs (onnxruntime and psycopg let go of the GIL): hybrid takes about the longer
            # of the two, not their sum
            keyword = _side_pool().submit(_keyword_candidates, info, query,
                                          retrieval.hybrid_pool(pool), flt, query_vec)
        try:
            if mode != "keyword":
                if row[5] is not None:
                    # a registered model may be an endpoint: no transaction stays open across it
                    session.commit()
                try:
                    qvec = embedder_for_index(actor, row[5], row[7]).embed([query])[0]
                except BaseException:
                    if keyword is not None:
                        keyword.cancel()
                    raise
                query_vec.set_result(qvec)
        finally:
            query_vec.cancel()
        cands = retrieval.search(session, info, query=query, query_vec=qvec, k=k, mode=mode,
                                 filters=flt, candidates=fetch,
                                 pool=retrieval.hybrid_pool(pool),
                                 keyword=keyword.result if keyword is not None else None,
                                 details=True)
        if not cands:
            return []
        # the searches brought their chunks' rows (and hybrid the similarities); read them
        # only if some did not
        hybrid = mode == "hybrid"
        if all(c.row is not None and (not hybrid or c.similarity is not None) for c in cands):
            hits = [_hit(c, r.text, r.metadata, r.ord, c.similarity if hybrid else None)
                    for c in cands if (r := c.row) is not None]
        else:
            hits = _hits(session, cands, qvec if hybrid else None)
        if not rerank:
            hits = retrieval.diversify(hits, lambda h: h.document_id, per_doc)[:k]
        if neighbors > 0:
            _add_context(session, hits, info.id, int(neighbors))
    if rerank:
        hits = retrieval.diversify(_rerank(actor, rerank, query, hits),
                                   lambda h: h.document_id, per_doc)
    hits = hits[:k]
    if threshold is not None:
        # hybrid scores are ranks (RRF), not relevance: its threshold is on cosine similarity
        def relevance(h: SearchHit) -> float:
            if mode == "hybrid" and not rerank:
                return float(h.metadata.get("similarity", 0.0))
            return h.score

        hits = [h for h in hits if relevance(h) >= float(threshold)]
    words = highlight_terms(query, info.language)
    for h in hits:
        h.metadata["highlights"] = matches(h.text, words)
    _set_relevance(hits, mode=mode, reranked=bool(rerank))
    return hits


def _set_relevance(hits: list[SearchHit], *, mode: str, reranked: bool = False) -> None:
    """Give each hit ``metadata['relevance']``: a number from 0 to 1 that a person can read,
    never higher than that of a hit ranked above it (the numbers follow the order shown).

    It is the cosine similarity of the chunk to the question where there is one (vector and
    hybrid search; hybrid's own score is a fusion of ranks, about 0.05 whatever the match), a
    reranker's score (squashed to 0-1 when it is a logit), or for keyword search the BM25 score
    relative to the best hit's. A hit that the ranking put above one with a higher similarity
    (its page as a whole is about the question, its words match) shows the lower number of
    the two: the order is the ranking's, the number says at most how close the match is."""
    if not hits:
        return
    if reranked:
        raw = [h.score for h in hits]
        if any(v < 0.0 or v > 1.0 for v in raw):
            raw = [1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, v)))) for v in raw]
    elif mode == "keyword":
        top = max((h.score for h in hits), default=0.0)
        raw = [h.score / top if top > 0 else 0.0 for h in hits]
    elif mode == "vector":
        raw = [h.score for h in hits]
    else:
        top = max((h.score for h in hits), default=0.0)
        raw = [float(h.metadata["similarity"]) if "similarity" in h.metadata
               else (h.score / top if top > 0 else 0.0) for h in hits]
    cap = 1.0
    for h, value in zip(hits, raw, strict=True):
        cap = min(cap, max(0.0, min(1.0, float(value))))
        h.metadata["relevance"] = round(cap, 4)


def _hit(c: Any, chunk_text: str, chunk_meta: dict[str, Any] | None, ord_: int,
         similarity: float | None) -> SearchHit:
    """A search hit from a fused candidate and its chunk's row."""
    meta = dict(chunk_meta or {})
    meta["ranks"] = c.ranks
    meta["scores"] = {m: round(v, 6) for m, v in c.scores.items()}
    meta["ord"] = ord_
    if similarity is not None:
        meta["similarity"] = round(float(similarity), 6)
    return SearchHit(source=str(meta.get("source", "")), document_id=int(c.document_id),
                     chunk_id=c.chunk_id, score=float(c.score), text=chunk_text, metadata=meta)


def _hits(session: Session, cands: list[Any], qvec: Any) -> list[SearchHit]:
    """The hits of candidates whose rows the search did not bring (and, given the question's
    vector, their cosine similarity), read in one statement."""
    chunk = KnowledgeChunk.__table__.c
    sim = (1 - KnowledgeChunk.embedding.cosine_distance(qvec)) if qvec is not None \
        else literal(None)
    rows = {r[0]: r for r in session.execute(
        select(chunk.id, chunk.document_id, chunk.ord, chunk.text, chunk["metadata"], sim)
        .where(chunk.id.in_([c.chunk_id for c in cands]))).all()}
    hits = []
    for c in cands:
        if c.chunk_id not in rows:
            continue
        _id, document_id, ord_, chunk_text, chunk_meta, similarity = rows[c.chunk_id]
        c.document_id = document_id
        hits.append(_hit(c, chunk_text, chunk_meta, ord_, similarity))
    return hits


def _search_target(session: Session, actor: Actor, kb: int | str) -> Any:
    """The active index of the base ``kb`` names, in one statement: ``(id, dim, language,
    n_chunks, total_length, embedder, chunks of that dimension in every index, vectors)``, or
    None when the base has no index yet. A base the actor may not see is an error, as ``_load``
    says."""
    bases = KnowledgeBase.__table__.c
    ix = KnowledgeIndex.__table__.c
    same_dim = (select(func.coalesce(func.sum(KnowledgeIndex.n_chunks), 0))
                .where(KnowledgeIndex.dim == ix.dim).scalar_subquery())
    stmt = (select(bases.id, bases.workspace_id, ix.id, ix.dim, ix.language, ix.n_chunks,
                   ix.total_length, ix.embedder, same_dim, ix.vectors)
            .select_from(KnowledgeBase.__table__.outerjoin(
                KnowledgeIndex.__table__, ix.id == bases.active_index_id)))
    found = resolve_owned(
        actor, kb, lambda i: session.execute(stmt.where(bases.id == i)).first(),
        lambda name: session.execute(stmt.where(
            bases.name == name, bases.workspace_id == actor.workspace_id)).first(),
        lambda row: int(row[1]))
    if found is None:
        raise _not_found(kb)
    if found[2] is None:
        return None
    return tuple(found[2:])


def _add_context(session: Session, hits: list[SearchHit], index_id: int, n: int) -> None:
    for h in hits:
        ord_ = int(h.metadata.get("ord", 0))
        rows = session.execute(select(KnowledgeChunk.ord, KnowledgeChunk.text).where(
            KnowledgeChunk.index_id == index_id, KnowledgeChunk.document_id == h.document_id,
            KnowledgeChunk.ord.between(ord_ - n, ord_ + n)).order_by(KnowledgeChunk.ord)).all()
        h.metadata["context"] = "\n\n".join(t for _, t in rows)


def highlight(*, actor: Actor, query: str, text: str, language: str = "en"
              ) -> list[tuple[int, int]]:
    """Character spans of ``text`` that match words of ``query`` (as keyword search sees
    them)."""
    actor.require_role(Role.builder, "search knowledge bases")
    from backend.knowledge.terms import highlight_terms, matches

    return matches(text, highlight_terms(query, language))


# -------------------------------------------------------------------------------- chunks


def _chunk_view(c: KnowledgeChunk) -> ChunkView:
    meta = dict(c.meta or {})
    return ChunkView(id=c.id, document_id=c.document_id, source=str(meta.get("source", "")),
                     ord=c.ord, text=c.text, enabled=c.enabled, edited=c.edited,
                     length=c.length, metadata=meta)


def list_chunks(*, actor: Actor, kb: int | str, limit: int | None = None, offset: int = 0,
                document_id: int | None = None, search: str = "",
                include_disabled: bool = False) -> list[ChunkView]:
    """The chunks of the base's active index, in document order (for browsing and for building
    training data)."""
    actor.require_role(Role.builder, "browse chunks")
    with session_scope() as session:
        base = _load(session, actor, kb)
        if base.active_index_id is None:
            return []
        stmt = select(KnowledgeChunk).where(KnowledgeChunk.index_id == base.active_index_id)
        if document_id is not None:
            stmt = stmt.where(KnowledgeChunk.document_id == document_id)
        if not include_disabled:
            stmt = stmt.where(KnowledgeChunk.enabled)
        if search.strip():
            stmt = stmt.where(KnowledgeChunk.text.ilike(f"%{search.strip()}%"))
        stmt = stmt.order_by(KnowledgeChunk.document_id, KnowledgeChunk.ord).offset(
            max(0, offset))
        if limit is not None:
            stmt = stmt.limit(limit)
        return [_chunk_view(c) for c in session.execute(stmt).scalars()]


def count_chunks(*, actor: Actor, kb: int | str, document_id: int | None = None,
                 search: str = "", include_disabled: bool = True) -> int:
    """How many chunks ``list_chunks`` with the same filters would list (a pager's total)."""
    actor.require_role(Role.builder, "browse chunks")
    with session_scope() as session:
        base = _load(session, actor, kb)
        stmt = select(func.count()).select_from(KnowledgeChunk).where(
            KnowledgeChunk.index_id == base.active_index_id)
        if document_id is not None:
            stmt = stmt.where(KnowledgeChunk.document_id == document_id)
        if not include_disabled:
            stmt = stmt.where(KnowledgeChunk.enabled)
        if search.strip():
            stmt = stmt.where(KnowledgeChunk.text.ilike(f"%{search.strip()}%"))
        return int(session.execute(stmt).scalar() or 0)


def update_chunk(*, actor: Actor, kb: int | str, chunk_id: int, text: str | None = None,
                 enabled: bool | None = None) -> ChunkView:
    """Edit a chunk's text (re-embedded, keyword statistics updated) or enable/disable it
    (a disabled chunk is never returned by search)."""
    from backend.knowledge.splitting import ChunkDraft
    from backend.knowledge.store import refresh_document_vectors, rewrite_chunk

    actor.require_role(Role.builder, "edit chunks")
    with session_scope() as session:
        base = _load(session, actor, kb)
        chunk = session.get(KnowledgeChunk, chunk_id)
        if chunk is None or chunk.index_id != base.active_index_id:
            raise LookupError(f"No chunk #{chunk_id} in {base.name!r}.")
        ix = session.get(KnowledgeIndex, chunk.index_id)
        assert ix is not None
        embedder_name, vectors = ix.embedder, ix.vectors
        meta = dict(chunk.meta or {})
    vec = None
    new_text = None
    if text is not None:
        new_text = text.strip()
        if not new_text:
            raise ValueError("A chunk cannot be empty; disable it instead.")
        draft = ChunkDraft(new_text, list(meta.get("heading_path") or []))
        embed_text = draft.embed_text(str(meta.get("title") or ""))
        vec = embedder_for_index(actor, embedder_name, vectors).embed([embed_text])[0]
    with session_scope() as session:
        chunk = session.get(KnowledgeChunk, chunk_id, with_for_update=True)
        ix = session.get(KnowledgeIndex, chunk.index_id, with_for_update=True) if chunk else None
        if chunk is None or ix is None:
            raise LookupError(f"Chunk #{chunk_id} was deleted meanwhile.")
        changes: dict[str, Any] = {}
        if new_text is not None and vec is not None and new_text != chunk.text:
            rewrite_chunk(session, chunk=chunk, index=ix, new_text=new_text,
                          embed_text=embed_text, vector=vec)
            changes["text"] = True
        if enabled is not None and enabled != chunk.enabled:
            chunk.enabled = bool(enabled)
            changes["enabled"] = chunk.enabled
            refresh_document_vectors(session, [(chunk.index_id, chunk.document_id)])
        if changes:
            record(actor, "update", "kb_chunk", chunk.id, changes, session=session)
        session.flush()
        return _chunk_view(chunk)


# ------------------------------------------------------------------------- embedding map


@dataclass
class MapPoint:
    x: float
    y: float
    chunk_id: int
    source: str
    heading: str
    preview: str


def embedding_map(*, actor: Actor, kb: int | str, limit: int = 3000) -> list[MapPoint]:
    """A 2-D projection (PCA) of the base's chunk embeddings; at most ``limit`` chunks, spread
    evenly over the base."""
    actor.require_role(Role.builder, "see knowledge bases")
    import numpy as np

    with session_scope() as session:
        base = _load(session, actor, kb)
        if base.active_index_id is None:
            return []
        n = session.execute(select(func.count()).select_from(KnowledgeChunk).where(
            KnowledgeChunk.index_id == base.active_index_id)).scalar() or 0
        step = max(1, int(n) // max(1, limit))
        rows = session.execute(text(
            "SELECT id, embedding::text, metadata->>'source', metadata->>'heading', "
            "left(text, 160) FROM (SELECT *, row_number() OVER (ORDER BY id) AS rn "
            "FROM kb_chunks WHERE index_id = :i AND enabled) t WHERE (rn - 1) % :s = 0 "
            "LIMIT :l"), {"i": base.active_index_id, "s": step, "l": limit}).all()
    if len(rows) < 2:
        return []
    vecs = np.array([[float(v) for v in r[1][1:-1].split(",")] for r in rows],
                    dtype=np.float32)
    centred = vecs - vecs.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    return [MapPoint(float(xy[i, 0]), float(xy[i, 1]), int(r[0]), r[2] or "", r[3] or "",
                     (r[4] or "").replace("\n", " ")) for i, r in enumerate(rows)]
