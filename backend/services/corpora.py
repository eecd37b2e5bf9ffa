"""Corpora for pre-training: add files (or a knowledge base's documents) as a new version, list,
show, remove.

A version is built here, in the calling process (reading and de-duplicating is quick next to
training): cleaned, de-duplicated and split documents land under the data dir; the row keeps the
statistics. Everyone in a workspace may look; adding and removing needs the builder role.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from backend.accounts.actor import Actor, Role
from backend.accounts.audit import record
from backend.accounts.uploads import store_upload
from backend.config import get_settings
from backend.db import session_scope
from backend.models.pretrain import Corpus, CorpusVersion
from backend.services.lookup import as_id
from backend.training.corpus import CorpusRefused, Document, Source, build_corpus, sample_text

NAME_RE = re.compile(r"^[^\s/\\][^/\\]{0,199}$")
Progress = Callable[[float, str], None]
UPLOAD_KINDS = ("txt", "md", "html", "pdf", "jsonl", "zip")


class CorpusNotFound(LookupError):
    pass


@dataclass
class CorpusVersionView:
    id: int
    corpus_id: int
    version: int
    folder: str
    sources: list[dict[str, Any]]
    heldout_fraction: float
    documents: int
    heldout_documents: int
    characters: int
    stats: dict[str, Any]
    token_files: dict[str, Any]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        return d


@dataclass
class CorpusView:
    id: int
    name: str
    description: str
    workspace_id: int
    created_by: int | None
    created_at: datetime
    versions: list[CorpusVersionView] = field(default_factory=list)

    @property
    def latest(self) -> CorpusVersionView | None:
        return self.versions[-1] if self.versions else None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "description": self.description,
                "workspace_id": self.workspace_id, "created_by": self.created_by,
                "created_at": self.created_at.isoformat(),
                "versions": [v.to_dict() for v in self.versions]}


def _version_view(v: CorpusVersion) -> CorpusVersionView:
    return CorpusVersionView(
        id=v.id, corpus_id=v.corpus_id, version=v.version, folder=v.folder,
        sources=list(v.sources or []), heldout_fraction=v.heldout_fraction,
        documents=v.documents, heldout_documents=v.heldout_documents, characters=v.characters,
        stats=dict(v.stats or {}), token_files=dict(v.token_files or {}), created_at=v.created_at,
    )


def _view(c: Corpus) -> CorpusView:
    return CorpusView(id=c.id, name=c.name, description=c.description,
                      workspace_id=c.workspace_id, created_by=c.created_by,
                      created_at=c.created_at, versions=[_version_view(v) for v in c.versions])


def _load(session: Session, actor: Actor, corpus: int | str, *, lock: bool = False) -> Corpus:
    row: Corpus | None = None
    if as_id(corpus) is not None:
        row = session.get(Corpus, as_id(corpus), with_for_update=lock)
    if row is None and isinstance(corpus, str):
        stmt = select(Corpus).where(Corpus.name == corpus.strip(),
                                    Corpus.workspace_id == actor.workspace_id)
        row = session.execute(stmt.with_for_update() if lock else stmt).scalar_one_or_none()
    if row is None or (not actor.is_admin and row.workspace_id != actor.workspace_id):
        raise CorpusNotFound(
            f"No corpus {corpus!r} in this workspace. `studio corpora list` shows the corpora.")
    return row


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise ValueError("A corpus name needs 1 to 200 characters, no slashes, and must not "
                         "start with a space.")
    return name


# --- reading ----------------------------------------------------------------------------------

def list_corpora(*, actor: Actor, search: str = "") -> list[CorpusView]:
    """The workspace's corpora, by name, each with its versions."""
    actor.require_role(Role.builder, "see corpora")
    with session_scope() as session:
        stmt = select(Corpus).where(Corpus.workspace_id == actor.workspace_id).order_by(Corpus.name)
        if search.strip():
            like = f"%{search.strip()}%"
            stmt = stmt.where(or_(Corpus.name.ilike(like), Corpus.description.ilike(like)))
        return [_view(c) for c in session.execute(stmt).scalars().all()]


def get_corpus(*, actor: Actor, corpus: int | str) -> CorpusView:
    actor.require_role(Role.builder, "see corpora")
    with session_scope() as session:
        return _view(_load(session, actor, corpus))


def get_version(*, actor: Actor, corpus: int | str, version: int | None = None
                ) -> CorpusVersionView:
    """One version of a corpus (the latest when ``version`` is None)."""
    actor.require_role(Role.builder, "see corpora")
    view = get_corpus(actor=actor, corpus=corpus)
    if not view.versions:
        raise CorpusNotFound(f"The corpus {view.name!r} has no version yet.")
    if version is None:
        return view.versions[-1]
    for v in view.versions:
        if v.version == version:
            return v
    raise CorpusNotFound(f"The corpus {view.name!r} has no version {version}; it has "
                         f"{', '.join(str(v.version) for v in view.versions)}.")


def corpus_sample(*, actor: Actor, corpus: int | str, version: int | None = None,
                  chars: int = 400) -> str:
    """The start of a training document, to show how tokenizers split it."""
    actor.require_role(Role.builder, "see corpora")
    v = get_version(actor=actor, corpus=corpus, version=version)
    return sample_text(Path(v.folder) / "train.jsonl", chars)


# --- adding -----------------------------------------------------------------------------------

def _join_chunks(texts: list[str], max_overlap: int = 1000) -> str:
    """Chunks of one document back into its text, without the overlap splitters repeat."""
    out = texts[0] if texts else ""
    for t in texts[1:]:
        k = min(len(out), len(t), max_overlap)
        while k > 0 and not out.endswith(t[:k]):
            k -= 1
        out += ("" if k else "\n\n") + t[k:]
    return out


def _knowledge_documents(actor: Actor, kb: str | int) -> tuple[list[Document], dict[str, Any]]:
    """A knowledge base's documents, joined back from their chunks (in document order)."""
    from backend.services import knowledge

    base = knowledge.get_knowledge_base(actor=actor, kb=kb)
    chunks = knowledge.list_chunks(actor=actor, kb=base.id)
    by_doc: dict[int, list[Any]] = {}
    for c in chunks:
        by_doc.setdefault(c.document_id, []).append(c)
    docs = [Document(cs[0].source, _join_chunks([c.text for c in sorted(cs, key=lambda c: c.ord)]))
            for cs in by_doc.values()]
    return docs, {"knowledge_base": base.name, "knowledge_base_id": base.id,
                  "documents": len(docs), "chunks": len(chunks)}


def add_corpus(*, actor: Actor, name: str, paths: Sequence[Path | str] = (),
               uploads: Sequence[tuple[str, Any]] = (), knowledge_base: str | int | None = None,
               heldout_fraction: float = 0.05, description: str = "",
               progress: Progress | None = None) -> CorpusView:
    """A new version of the corpus ``name`` (made on first use) from files, folders and zips on
    this machine, uploads (file name and its bytes or a readable; checked and stored like every
    upload), and/or a knowledge base's documents.
    Refused with the reason when nothing usable comes out; then nothing is kept."""
    actor.require_role(Role.builder, "add corpora")
    name = _check_name(name)
    if not paths and not uploads and knowledge_base is None:
        raise ValueError("Give files, folders or zips (or a knowledge base) to build the corpus "
                         "from.")
    extra: list[Document] = []
    sources: list[dict[str, Any]] = [{"path": str(Path(p).expanduser().resolve())} for p in paths]
    stored = [store_upload(shown, data, allowed=UPLOAD_KINDS, subdir="corpora")
              for shown, data in uploads]
    sources += [{"upload": u.display_name, "sha256": u.sha256} for u in stored]
    if knowledge_base is not None:
        docs, src = _knowledge_documents(actor, knowledge_base)
        extra += docs
        sources.append(src)
    settings = get_settings()
    with session_scope() as session:
        row = session.execute(select(Corpus).where(
            Corpus.name == name, Corpus.workspace_id == actor.workspace_id)).scalar_one_or_none()
        if row is None:
            row = Corpus(name=name, description=description.strip()[:2000],
                         workspace_id=actor.workspace_id, created_by=actor.user_id)
            session.add(row)
            session.flush()
            record(actor, "create", "corpus", row.id, {"name": name}, session=session)
        corpus_id = row.id
        next_version = (session.execute(select(func.max(CorpusVersion.version)).where(
            CorpusVersion.corpus_id == corpus_id)).scalar() or 0) + 1
    folder = settings.data_dir / "corpora" / f"corpus-{corpus_id}" / f"v{next_version}"
    shutil.rmtree(folder, ignore_errors=True)
    items: list[Source] = [Path(p) for p in paths]
    items += [(u.display_name, u.path) for u in stored]
    try:
        stats = build_corpus(items, folder, heldout_fraction=heldout_fraction,
                             extra_documents=extra, progress=progress)
    except (CorpusRefused, ValueError):
        shutil.rmtree(folder, ignore_errors=True)
        for u in stored:
            u.path.unlink(missing_ok=True)
        _drop_if_empty(corpus_id)
        raise
    with session_scope() as session:
        version = CorpusVersion(
            corpus_id=corpus_id, version=next_version, folder=str(folder), sources=sources,
            heldout_fraction=heldout_fraction, documents=stats.documents,
            heldout_documents=stats.heldout_documents, characters=stats.characters,
            stats=stats.to_dict(), token_files={}, created_by=actor.user_id,
        )
        session.add(version)
        session.flush()
        record(actor, "create", "corpus_version", version.id,
               {"corpus": name, "version": next_version, "documents": stats.documents},
               session=session)
    return get_corpus(actor=actor, corpus=corpus_id)


def _drop_if_empty(corpus_id: int) -> None:
    with session_scope() as session:
        row = session.get(Corpus, corpus_id)
        if row is not None and not row.versions:
            session.delete(row)


def delete_corpus(*, actor: Actor, corpus: int | str) -> CorpusView:
    """Remove a corpus, its versions, and their files (token files and tokenizers included)."""
    actor.require_role(Role.builder, "remove corpora")
    with session_scope() as session:
        row = _load(session, actor, corpus, lock=True)
        view = _view(row)
        session.delete(row)
        record(actor, "delete", "corpus", row.id, {"name": row.name}, session=session)
    root = get_settings().data_dir / "corpora"
    for v in view.versions:
        folder = Path(v.folder)
        if root in folder.parents:
            shutil.rmtree(folder, ignore_errors=True)
    return view


def record_token_files(*, actor: Actor, version_id: int, key: str, info: dict[str, Any]) -> None:
    """Remember the token files made for a version with a tokenizer (for reuse and display)."""
    actor.require_role(Role.builder, "prepare corpora")
    with session_scope() as session:
        v = session.get(CorpusVersion, version_id, with_for_update=True)
        if v is None:
            raise CorpusNotFound(f"No corpus version {version_id}.")
        _load(session, actor, v.corpus_id)
        v.token_files = {**(v.token_files or {}), key: info}
