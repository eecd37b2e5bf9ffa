"""Fine-tuning datasets as pages, the CLI and the fine-tune service see them: validate a file,
add it (a new dataset, or a new version of one), list, show, preview through a base model's
chat template, read the records, delete.

A file with bad records is refused as a whole (``DatasetInvalid`` lists every bad line): nothing
is stored. Versions never change once written; a new upload under the same name is the next
version. Everyone in a workspace may read its datasets; adding and deleting needs the builder role.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.accounts.actor import Actor, Role
from backend.accounts.audit import record
from backend.accounts.uploads import display_name
from backend.config import get_settings
from backend.db import session_scope
from backend.jobs import titles
from backend.jobs.context import JobContext
from backend.jobs.kinds import job_kind
from backend.models.finetune import DatasetVersion, TrainingDataset
from backend.services.lookup import as_id
from backend.training import datasets as ds
from backend.training.datasets import DatasetInvalid, Issue, ParsedDataset

__all__ = ["DatasetInvalid", "Issue"]

NAME_RE = re.compile(r"^[^\s/\\][^/\\]{0,199}$")
STORED_FORMAT = {"alpaca": "chat", "chat": "chat", "preference": "preference"}


class DatasetNotFound(LookupError):
    pass


class DatasetExists(ValueError):
    pass


@dataclass
class VersionView:
    version: int
    records: int
    original_name: str
    sha256: str
    stats: dict[str, Any]
    note: str
    created_at: datetime
    path: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        return d


@dataclass
class DatasetView:
    id: int
    name: str
    format: str
    description: str
    source: str
    latest_version: int
    workspace_id: int
    created_by: int | None
    created_at: datetime
    versions: list[VersionView] = field(default_factory=list)

    @property
    def records(self) -> int:
        latest = next((v for v in self.versions if v.version == self.latest_version), None)
        return latest.records if latest else 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        d["versions"] = [v.to_dict() for v in self.versions]
        d["records"] = self.records
        return d


def _vview(v: DatasetVersion) -> VersionView:
    return VersionView(version=v.version, records=v.records, original_name=v.original_name,
                       sha256=v.sha256, stats=dict(v.stats or {}), note=v.note,
                       created_at=v.created_at, path=v.path)


def _view(session: Session, d: TrainingDataset) -> DatasetView:
    versions = session.execute(select(DatasetVersion).where(DatasetVersion.dataset_id == d.id)
                               .order_by(DatasetVersion.version.desc())).scalars().all()
    return DatasetView(id=d.id, name=d.name, format=d.format, description=d.description,
                       source=d.source, latest_version=d.latest_version,
                       workspace_id=d.workspace_id, created_by=d.created_by,
                       created_at=d.created_at, versions=[_vview(v) for v in versions])


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise ValueError("A dataset name needs 1 to 200 characters, no slashes, and must not "
                         "start with a space.")
    return name


def _load(session: Session, actor: Actor, dataset: int | str, *, lock: bool = False
          ) -> TrainingDataset:
    row: TrainingDataset | None = None
    if as_id(dataset) is not None:
        row = session.get(TrainingDataset, as_id(dataset), with_for_update=lock)
    if row is None:
        stmt = select(TrainingDataset).where(TrainingDataset.name == str(dataset).strip(),
                                             TrainingDataset.workspace_id == actor.workspace_id)
        if lock:
            stmt = stmt.with_for_update()
        row = session.execute(stmt).scalar_one_or_none()
    if row is None or (not actor.is_admin and row.workspace_id != actor.workspace_id):
        raise DatasetNotFound(f"No dataset {dataset!r} in this workspace. "
                              "`studio datasets list` shows them.")
    return row


# --- tokenizers for length checks and previews -------------------------------------------------

@lru_cache(maxsize=4)
def _tokenizer_for_path(path: str) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def base_tokenizer(*, actor: Actor, model: int | str) -> Any:
    """The tokenizer (with chat template) of a registered local model."""
    actor.require_role(Role.builder, "see datasets")
    from backend.services.models import model_spec

    spec = model_spec(actor=actor, model=model, capability="chat")
    if not spec.is_local:
        raise ValueError(f"{spec.name!r} is an endpoint; fine-tuning needs a local model "
                         "(a folder on this machine, or one the studio made).")
    return _tokenizer_for_path(spec.source)


def _counter(actor: Actor, base_model: int | str | None) -> Any:
    if base_model is None:
        return None
    from backend.training.finetune_data import count_tokens

    tok = base_tokenizer(actor=actor, model=base_model)
    return lambda rec: count_tokens(tok, rec)


# --- validating and adding ----------------------------------------------------------------------

def validate_file(*, actor: Actor, filename: str, data: bytes, format: str | None = None,
                  base_model: int | str | None = None, max_length: int | None = None
                  ) -> ParsedDataset:
    """Check every record (and, with a base model, its length in tokens). Stores nothing."""
    kind = ds.file_kind(display_name(filename))
    return ds.parse_dataset(data, kind=kind, format=format,
                            count_tokens=_counter(actor, base_model) if max_length else None,
                            max_length=max_length)


def _store(actor: Actor, dataset_id: int, version: int, records: list[dict[str, Any]]
           ) -> tuple[Path, str]:
    folder = get_settings().data_dir / "datasets" / f"ws{actor.workspace_id}" / str(dataset_id)
    folder.mkdir(parents=True, exist_ok=True)
    text = ds.dumps_jsonl(records)
    final = folder / f"v{version}.jsonl"
    partial = final.with_suffix(".jsonl.part")
    partial.write_text(text, encoding="utf-8")
    partial.rename(final)
    return final, hashlib.sha256(text.encode()).hexdigest()


def _drop_nul(value: Any) -> tuple[Any, int]:
    """``value`` with NUL characters (U+0000) dropped from every string, and how many were."""
    if isinstance(value, str):
        return value.replace("\x00", ""), value.count("\x00")
    if isinstance(value, list):
        pairs = [_drop_nul(v) for v in value]
        return [v for v, _ in pairs], sum(n for _, n in pairs)
    if isinstance(value, dict):
        out, total = {}, 0
        for k, v in value.items():
            (k2, n1), (v2, n2) = _drop_nul(k), _drop_nul(v)
            out[k2] = v2
            total += n1 + n2
        return out, total
    return value, 0


def _save(actor: Actor, *, name: str, fmt: str, records: list[dict[str, Any]],
          original_name: str, stats: dict[str, Any], description: str, source: str,
          note: str) -> DatasetView:
    actor.require_role(Role.builder, "add datasets")
    name = _check_name(name)
    stored = STORED_FORMAT[fmt]
    if not records:
        raise ValueError("The dataset has no records to save.")
    records, removed = _drop_nul(records)
    if removed:  # Postgres text cannot hold NUL; the version says how many were dropped
        stats = {**stats, "nul_removed": removed}
    try:
        with session_scope() as session:
            row = session.execute(
                select(TrainingDataset).where(TrainingDataset.name == name,
                                              TrainingDataset.workspace_id == actor.workspace_id)
                .with_for_update()).scalar_one_or_none()
            if row is None:
                row = TrainingDataset(name=name, format=stored, description=description.strip(),
                                      source=source, workspace_id=actor.workspace_id,
                                      created_by=actor.user_id, latest_version=0)
                session.add(row)
                session.flush()
                action = "create"
            else:
                if row.format != stored:
                    raise ValueError(
                        f"{name!r} holds {row.format} records; these are {stored}. Give the new "
                        "file another dataset name.")
                action = "update"
            version = row.latest_version + 1
            path, sha = _store(actor, row.id, version, records)
            session.add(DatasetVersion(dataset_id=row.id, version=version, path=str(path),
                                       original_name=original_name[:255], records=len(records),
                                       sha256=sha, stats=stats, note=note[:2000],
                                       created_by=actor.user_id))
            row.latest_version = version
            if description.strip():
                row.description = description.strip()[:2000]
            session.flush()
            record(actor, action, "dataset", row.id, {"name": name, "version": version,
                                                      "records": len(records)}, session=session)
            return _view(session, row)
    except IntegrityError as exc:
        raise DatasetExists(f"A dataset named {name!r} was just added by someone else; "
                            "try again.") from exc


def add_dataset(*, actor: Actor, name: str, filename: str, data: bytes,
                format: str | None = None, description: str = "",
                base_model: int | str | None = None, max_length: int | None = None
                ) -> DatasetView:
    """Validate a file and keep its records as a new dataset (or the next version of ``name``).
    Raises ``DatasetInvalid`` (every bad line, by number) and stores nothing when a record is
    bad."""
    actor.require_role(Role.builder, "add datasets")
    _check_name(name)
    parsed = validate_file(actor=actor, filename=filename, data=data, format=format,
                           base_model=base_model, max_length=max_length)
    if not parsed.ok:
        raise DatasetInvalid(parsed.issues)
    stats = {"duplicates": [{"line": a, "duplicate_of": b} for a, b in parsed.duplicates],
             "source_format": parsed.format}
    return _save(actor, name=name, fmt=parsed.format, records=parsed.records,
                 original_name=display_name(filename), stats=stats, description=description,
                 source="upload", note="")


def add_records(*, actor: Actor, name: str, records: list[dict[str, Any]], format: str,
                source: str = "upload", description: str = "", note: str = "") -> DatasetView:
    """Save records built elsewhere (reviewed Q&A pairs, feedback) as a dataset version. They
    are checked like a file's lines (record numbers from 1)."""
    actor.require_role(Role.builder, "add datasets")
    data = ds.dumps_jsonl(records)
    parsed = ds.parse_dataset(data, kind="jsonl", format=format)
    if not parsed.ok:
        raise DatasetInvalid(parsed.issues)
    return _save(actor, name=name, fmt=parsed.format, records=parsed.records,
                 original_name="", stats={"source_format": parsed.format}, description=description,
                 source=source, note=note)


def build_from_feedback(*, actor: Actor, name: str, agent: int | str | None = None,
                        save: bool = True) -> dict[str, Any]:
    """Agents' feedback as datasets: thumbs-up answers as chat examples (saved as ``name``),
    thumbs-down answers with a corrected answer in the comment as preference pairs (saved as
    ``name-preferences``). ``save=False`` only returns the records, for review."""
    from backend.services import agents as agents_service

    actor.require_role(Role.builder, "build datasets from feedback")
    items = agents_service.list_feedback(actor=actor, agent=agent, limit=100_000)
    chat, pairs = ds.records_from_feedback([f.to_dict() for f in items])
    saved: dict[str, str] = {}
    if save and chat:
        saved["chat"] = add_records(actor=actor, name=name, records=chat, format="chat",
                                    source="feedback", note="thumbs-up answers").name
    if save and pairs:
        saved["preference"] = add_records(
            actor=actor, name=f"{name}-preferences", records=pairs, format="preference",
            source="feedback", note="thumbs-down answers with a corrected answer").name
    if save and not saved:
        raise ValueError("No usable feedback yet: thumbs-up answers, or thumbs-down answers "
                         "whose comment gives the corrected answer, become training data.")
    return {"chat": chat, "preference": pairs, "datasets": saved}


# --- question/answer pairs from a knowledge base ------------------------------------------------

KB_QA_KIND = "dataset_from_kb"


def start_qa_generation(*, actor: Actor, kb: int | str, model: int | str,
                        max_chunks: int = 50, enqueue: bool = True) -> Any:
    """Launch a job in which ``model`` writes one question/answer pair per chunk of the
    knowledge base (up to ``max_chunks``). Its result holds the pairs for review; nothing is
    saved until ``save_qa_pairs``."""
    from backend.services import jobs as jobs_service
    from backend.services import knowledge
    from backend.services.models import model_spec

    actor.require_role(Role.builder, "build datasets")
    if not 1 <= max_chunks <= 5000:
        raise ValueError("The number of passages must be between 1 and 5000.")
    base = knowledge.get_knowledge_base(actor=actor, kb=kb)
    spec = model_spec(actor=actor, model=model, capability="chat")
    return jobs_service.submit_job(
        actor=actor, kind=KB_QA_KIND, enqueue=enqueue,
        params={"kb_id": base.id, "kb": base.name, "model": spec.name, "max_chunks": max_chunks},
        title_template=titles.KB_QA, title_args={"kb": base.name, "model": spec.name})


@job_kind(KB_QA_KIND, queue="cpu", title="Q&A pairs from a knowledge base")
def run_qa_generation(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    from backend.models.jobs import Job
    from backend.services import knowledge
    from backend.services.chat import stream_chat

    with session_scope() as session:
        job = session.get(Job, ctx.job_id) if ctx.job_id is not None else None
        actor = (Actor(user_id=job.created_by, username=f"job #{job.id}", role=Role.builder,
                       workspace_id=job.workspace_id) if job else Actor.system())
    chunks = knowledge.list_chunks(actor=actor, kb=int(params["kb_id"]),
                                   limit=int(params["max_chunks"]))
    if not chunks:
        raise ValueError(f"The knowledge base {params['kb']!r} has no passages yet; add "
                         "documents to it first.")
    pairs: list[dict[str, Any]] = []
    for i, chunk in enumerate(chunks):
        ctx.check_cancelled()
        reply = stream_chat(params["model"], ds.qa_messages(chunk.text),
                            {"temperature": 0, "max_new_tokens": 256}, actor=actor,
                            placement="auto").collect().text
        parsed = ds.parse_qa(reply)
        if parsed:
            pairs.append({"question": parsed[0], "answer": parsed[1], "source": chunk.source,
                          "chunk_id": chunk.id})
        else:
            ctx.log(f"Passage {chunk.id} ({chunk.source}): the reply was not a question and "
                    "an answer; skipped")
        ctx.progress((i + 1) / len(chunks), "passage {done}/{total}", done=i + 1,
                     total=len(chunks))
    return {"pairs": pairs, "kb": params["kb"], "model": params["model"],
            "passages": len(chunks), "skipped": len(chunks) - len(pairs)}


def save_qa_pairs(*, actor: Actor, name: str, pairs: list[dict[str, Any]],
                  note: str = "") -> DatasetView:
    """Reviewed pairs (``question``, ``answer``; edited or deleted by a person) as a dataset."""
    records = [{"instruction": str(p.get("question") or "").strip(),
                "output": str(p.get("answer") or "").strip()} for p in pairs]
    return add_records(actor=actor, name=name, records=records, format="alpaca",
                       source="knowledge_base", note=note)


# --- reading ------------------------------------------------------------------------------------

def list_datasets(*, actor: Actor, search: str = "", format: str | None = None
                  ) -> list[DatasetView]:
    actor.require_role(Role.builder, "see datasets")
    with session_scope() as session:
        stmt = select(TrainingDataset).order_by(TrainingDataset.name)
        if not actor.is_admin:
            stmt = stmt.where(TrainingDataset.workspace_id == actor.workspace_id)
        if search.strip():
            like = f"%{search.strip()}%"
            stmt = stmt.where(or_(TrainingDataset.name.ilike(like),
                                  TrainingDataset.description.ilike(like)))
        if format:
            stmt = stmt.where(TrainingDataset.format == STORED_FORMAT.get(format, format))
        return [_view(session, d) for d in session.execute(stmt).scalars()]


def get_dataset(*, actor: Actor, dataset: int | str) -> DatasetView:
    actor.require_role(Role.builder, "see datasets")
    with session_scope() as session:
        return _view(session, _load(session, actor, dataset))


def _version_row(session: Session, row: TrainingDataset, version: int | None) -> DatasetVersion:
    v = version or row.latest_version
    found = session.execute(select(DatasetVersion).where(DatasetVersion.dataset_id == row.id,
                                                         DatasetVersion.version == v)
                            ).scalar_one_or_none()
    if found is None:
        raise DatasetNotFound(f"Dataset {row.name!r} has no version {v}.")
    return found


def load_records(*, actor: Actor, dataset: int | str, version: int | None = None
                 ) -> tuple[DatasetView, int, list[dict[str, Any]]]:
    """The dataset, the version read, and its normalised records."""
    actor.require_role(Role.builder, "see datasets")
    with session_scope() as session:
        row = _load(session, actor, dataset)
        ver = _version_row(session, row, version)
        view, number, path = _view(session, row), ver.version, Path(ver.path)
    if not path.exists():
        raise FileNotFoundError(f"The file of {view.name!r} version {number} is missing "
                                f"({path}); add the dataset again.")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
               if line.strip()]
    return view, number, records


def preview(*, actor: Actor, dataset: int | str, base_model: int | str,
            version: int | None = None, examples: int = 3, max_length: int = 512,
            val_fraction: float = 0.1, seed: int = 42) -> dict[str, Any]:
    """What training will see: a few examples through the base model's chat template with the
    loss tokens marked, the token-length histogram, the split sizes and the duplicates."""
    actor.require_role(Role.builder, "see datasets")
    from backend.training.finetune_data import count_tokens
    from backend.training.finetune_data import preview as token_runs

    view, number, records = load_records(actor=actor, dataset=dataset, version=version)
    tok = base_tokenizer(actor=actor, model=base_model)
    lengths = [count_tokens(tok, r) for r in records]
    train, val = ds.split(records, val_fraction=val_fraction, seed=seed)
    ver = next(v for v in view.versions if v.version == number)
    return {
        "dataset": view.name, "version": number, "format": view.format,
        "records": len(records),
        "examples": [token_runs(tok, r, max_length) for r in records[:examples]],
        "lengths": lengths, "histogram": ds.histogram(lengths),
        "max_tokens": max(lengths, default=0), "over_max_length": sum(n > max_length
                                                                      for n in lengths),
        "train": len(train), "validation": len(val),
        "duplicates": ver.stats.get("duplicates", []),
    }


def delete_dataset(*, actor: Actor, dataset: int | str) -> DatasetView:
    actor.require_role(Role.builder, "delete datasets")
    with session_scope() as session:
        row = _load(session, actor, dataset, lock=True)
        view = _view(session, row)
        session.delete(row)
        record(actor, "delete", "dataset", row.id, {"name": row.name}, session=session)
    folder = get_settings().data_dir / "datasets" / f"ws{view.workspace_id}" / str(view.id)
    shutil.rmtree(folder, ignore_errors=True)
    return view
