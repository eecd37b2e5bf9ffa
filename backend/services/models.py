"""The model registry as pages, the CLI and other services see it: list, add (local folder or hub
id, OpenAI-compatible endpoint, tiny demo model), register what training produced, test, remove,
and resolve a model for chat or embeddings.

Everyone in a workspace may list and use its models; adding and removing needs the builder role.
Members see their workspace only; admins may look across workspaces.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.accounts import secrets as crypto
from backend.accounts.actor import Actor, Role
from backend.accounts.audit import record
from backend.config import get_settings
from backend.db import session_scope
from backend.llm.embeddings import Embedder, embedder_for
from backend.llm.errors import LLMError
from backend.llm.model_sources import check_model_folder, resolve_local_source
from backend.llm.openai_compat import normalise_base_url
from backend.llm.types import GenerationParams, ModelSpec
from backend.models.registry import Capability, ModelKind, RegisteredModel
from backend.services.lookup import find_owned

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[^\s/\\][^/\\]{0,199}$")
CAPABILITIES = tuple(c.value for c in Capability)


class ModelNotFound(LookupError):
    pass


class ModelExists(ValueError):
    pass


@dataclass
class ModelView:
    """A registered model as shown to people: the API key only ever masked."""

    id: int
    name: str
    kind: str
    source: str
    base_url: str | None
    remote_model: str | None
    api_key_masked: str | None
    capabilities: list[str]
    default_params: dict[str, Any]
    lineage: dict[str, Any] | None
    description: str
    workspace_id: int
    created_by: int | None
    created_at: datetime
    last_test_ok: bool | None
    last_test_message: str | None
    last_tested_at: datetime | None

    @property
    def target(self) -> str:
        """Where the model lives, in one line."""
        if self.kind == ModelKind.openai:
            return f"{self.remote_model} @ {self.base_url}"
        return self.source

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, datetime):
                d[k] = v.isoformat()
        d["target"] = self.target
        return d


@dataclass
class TestResult:
    ok: bool
    message: str
    latency_ms: float
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _view(m: RegisteredModel) -> ModelView:
    return ModelView(
        id=m.id, name=m.name, kind=m.kind, source=m.source, base_url=m.base_url,
        remote_model=m.remote_model, api_key_masked=m.api_key_masked,
        capabilities=list(m.capabilities or []), default_params=dict(m.default_params or {}),
        lineage=m.lineage, description=m.description, workspace_id=m.workspace_id,
        created_by=m.created_by, created_at=m.created_at, last_test_ok=m.last_test_ok,
        last_test_message=m.last_test_message, last_tested_at=m.last_tested_at,
    )


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise ValueError(
            "A model name needs 1 to 200 characters, no slashes, and must not start with a space."
        )
    return name


def _check_capabilities(caps: Sequence[str] | None, default: Sequence[str]) -> list[str]:
    caps = list(dict.fromkeys(c.strip().lower() for c in (caps or default) if c.strip()))
    bad = [c for c in caps if c not in CAPABILITIES]
    if bad:
        raise ValueError(
            f"Unknown capability {', '.join(bad)}: use {', '.join(CAPABILITIES)}."
        )
    if not caps:
        raise ValueError(f"Give at least one capability: {', '.join(CAPABILITIES)}.")
    return caps


def _check_params(params: dict[str, Any] | None) -> dict[str, Any]:
    if not params:
        return {}
    return {k: v for k, v in GenerationParams.from_dict(params).to_dict().items()
            if k in params}


def _load(session: Session, actor: Actor, model: int | str, *, lock: bool = False,
          name_only: bool = False) -> RegisteredModel:
    """By id, or by name in the actor's workspace. Other workspaces' models look absent.
    ``name_only``: by name in the actor's workspace only (the API names models so)."""
    row = find_owned(session, actor, RegisteredModel, model, lock=lock, name_only=name_only)
    if row is None:
        raise ModelNotFound(
            f"No model {model!r} in this workspace. `studio models list` shows the registered ones."
        )
    return row


def _by_name(session: Session, actor: Actor, name: str, lock: bool) -> RegisteredModel | None:
    stmt = select(RegisteredModel).where(RegisteredModel.name == name.strip(),
                                         RegisteredModel.workspace_id == actor.workspace_id)
    if lock:
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalar_one_or_none()


def _insert(actor: Actor, row: RegisteredModel, details: dict[str, Any]) -> ModelView:
    row.workspace_id = actor.workspace_id
    row.created_by = actor.user_id
    try:
        with session_scope() as session:
            session.add(row)
            session.flush()
            record(actor, "create", "model", row.id, {"name": row.name, "kind": row.kind,
                                                      **details}, session=session)
            return _view(row)
    except IntegrityError as exc:
        if "uq_models_workspace_id" in str(exc.orig):
            raise ModelExists(
                f"A model named {row.name!r} already exists in this workspace. Pick another "
                "name or remove the old one first."
            ) from None
        raise


# --- reading ---------------------------------------------------------------------------------

def list_models(*, actor: Actor, search: str = "", capability: str | None = None,
                kind: str | None = None, all_workspaces: bool = False) -> list[ModelView]:
    """Models of the actor's workspace (all workspaces for an admin who asks), by name."""
    actor.require_role(Role.builder, "use the model registry")
    with session_scope() as session:
        stmt = select(RegisteredModel).order_by(RegisteredModel.name)
        if not (all_workspaces and actor.is_admin):
            stmt = stmt.where(RegisteredModel.workspace_id == actor.workspace_id)
        if search.strip():
            like = f"%{search.strip()}%"
            stmt = stmt.where(or_(RegisteredModel.name.ilike(like),
                                  RegisteredModel.source.ilike(like),
                                  RegisteredModel.remote_model.ilike(like),
                                  RegisteredModel.base_url.ilike(like),
                                  RegisteredModel.description.ilike(like)))
        if kind:
            stmt = stmt.where(RegisteredModel.kind == kind)
        rows = session.execute(stmt).scalars().all()
        views = [_view(r) for r in rows]
    if capability:
        views = [v for v in views if capability in v.capabilities]
    return views


def get_model(*, actor: Actor, model: int | str, name_only: bool = False) -> ModelView:
    """The model ``model`` names (an id or a name); ``name_only``: a name in the actor's own
    workspace, admins included (how the API and an agent's config name a model)."""
    actor.require_role(Role.builder, "use the model registry")
    with session_scope() as session:
        return _view(_load(session, actor, model, name_only=name_only))


def model_spec(*, actor: Actor, model: int | str, capability: str | None = None,
               session: Session | None = None) -> ModelSpec:
    """How to reach the model, API key decrypted. For other services; never show it.
    ``session``: read in the caller's session (one round trip for the caller's reads)."""
    actor.require_role(Role.builder, "use the model registry")
    if session is None:
        with session_scope() as own:
            return model_spec(actor=actor, model=model, capability=capability, session=own)
    return spec_of(_load(session, actor, model), capability)


def spec_of(row: RegisteredModel | Any, capability: str | None = None) -> ModelSpec:
    """``model_spec`` for a model already read in the caller's statement: a row, or its
    columns (name, kind, source, base_url, remote_model, api_key_encrypted, capabilities,
    default_params) as attributes."""
    if capability and capability not in (row.capabilities or []):
        raise ValueError(
            f"The model {row.name!r} is not registered for {capability}; its capabilities "
            f"are: {', '.join(row.capabilities or []) or 'none'}."
        )
    api_key = crypto.decrypt(row.api_key_encrypted) if row.api_key_encrypted else None
    return ModelSpec(
        name=row.name, kind=row.kind,  # type: ignore[arg-type]
        source=row.source, base_url=row.base_url, remote_model=row.remote_model,
        api_key=api_key, capabilities=tuple(row.capabilities or ()),
        default_params=dict(row.default_params or {}),
    )


# --- adding ------------------------------------------------------------------------------------

def add_local_model(*, actor: Actor, name: str, source: str,
                    source_type: Literal["folder", "hub"] | None = None,
                    capabilities: Sequence[str] | None = None, description: str = "",
                    default_params: dict[str, Any] | None = None) -> ModelView:
    """A Hugging Face folder (checked now) or hub id (fetched where first used)."""
    actor.require_role(Role.builder, "add models")
    caps = _check_capabilities(capabilities, ["chat"])
    src = resolve_local_source(source, source_type=source_type,
                               embeddings=caps == ["embeddings"])
    row = RegisteredModel(name=_check_name(name), kind=ModelKind.local.value, source=src.value,
                          capabilities=caps, description=description.strip()[:2000],
                          default_params=_check_params(default_params))
    return _insert(actor, row, {"source": src.value, "source_type": src.kind})


def add_openai_model(*, actor: Actor, name: str, base_url: str, remote_model: str,
                     api_key: str | None = None, capabilities: Sequence[str] | None = None,
                     description: str = "", default_params: dict[str, Any] | None = None
                     ) -> ModelView:
    """An OpenAI-compatible endpoint. The API key is stored encrypted and never shown again."""
    actor.require_role(Role.builder, "add models")
    remote = (remote_model or "").strip()
    if not remote:
        raise ValueError("Give the model name the endpoint knows (e.g. gpt-4o-mini, qwen2.5:7b).")
    key = (api_key or "").strip() or None
    row = RegisteredModel(
        name=_check_name(name), kind=ModelKind.openai.value, base_url=normalise_base_url(base_url),
        remote_model=remote[:300], capabilities=_check_capabilities(capabilities, ["chat"]),
        api_key_encrypted=crypto.encrypt(key) if key else None,
        api_key_masked=crypto.mask(key) if key else None,
        description=description.strip()[:2000], default_params=_check_params(default_params),
    )
    return _insert(actor, row, {"base_url": row.base_url, "remote_model": remote})


def set_api_key(*, actor: Actor, model: int | str, api_key: str | None) -> ModelView:
    """Replace (or clear, with None) an endpoint's API key."""
    actor.require_role(Role.builder, "change models")
    key = (api_key or "").strip() or None
    with session_scope() as session:
        row = _load(session, actor, model, lock=True)
        if row.kind != ModelKind.openai:
            raise ValueError(f"{row.name!r} is not an endpoint; it has no API key.")
        row.api_key_encrypted = crypto.encrypt(key) if key else None
        row.api_key_masked = crypto.mask(key) if key else None
        record(actor, "rotate", "model", row.id, {"name": row.name}, session=session)
        return _view(row)


def register_produced_model(*, actor: Actor, name: str, path: str | Path,
                            lineage: dict[str, Any], capabilities: Sequence[str] | None = None,
                            description: str = "") -> ModelView:
    """A model this studio wrote (pre-training, fine-tuning). ``lineage`` records where it came
    from, e.g. ``{"base_model": "tiny", "dataset": "faq.jsonl", "job_id": 12}``."""
    actor.require_role(Role.builder, "register models")
    folder = check_model_folder(Path(path))
    if not isinstance(lineage, dict):
        raise ValueError("lineage must be a dict such as {'base_model': ..., 'job_id': ...}.")
    row = RegisteredModel(name=_check_name(name), kind=ModelKind.produced.value,
                          source=str(folder), lineage=dict(lineage),
                          capabilities=_check_capabilities(capabilities, ["chat"]),
                          description=description.strip()[:2000])
    return _insert(actor, row, {"source": str(folder), "lineage": lineage})


def add_tiny_model(*, actor: Actor, name: str, seed: int = 0,
                   progress: Callable[[float, str], None] | None = None) -> ModelView:
    """Build a tiny offline chat model under the models folder and register it."""
    from backend.llm.tiny import build_tiny_model, tiny_model_info

    actor.require_role(Role.builder, "add models")
    name = _check_name(name)
    with session_scope() as session:
        if _by_name(session, actor, name, False) is not None:
            raise ModelExists(f"A model named {name!r} already exists in this workspace.")
    settings = get_settings()
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "model"
    folder = settings.models_dir / "tiny" / f"ws{actor.workspace_id}-{safe}-{int(time.time())}"
    if progress:
        progress(0.1, "Training the tokenizer and building the model")
    build_tiny_model(folder, seed=seed)
    info = tiny_model_info(folder) or {}
    if progress:
        progress(0.9, "Registering the model")
    view = register_produced_model(
        actor=actor, name=name, path=folder,
        lineage={"recipe": "tiny", "seed": seed, "parameters": info.get("parameters")},
    )
    if progress:
        progress(1.0, "Done")
    return view


def remove_model(*, actor: Actor, model: int | str, delete_files: bool = False) -> ModelView:
    """Unregister a model. ``delete_files`` also deletes a folder the studio produced."""
    import shutil

    actor.require_role(Role.builder, "remove models")
    with session_scope() as session:
        row = _load(session, actor, model, lock=True)
        view = _view(row)
        session.delete(row)
        record(actor, "delete", "model", row.id, {"name": row.name}, session=session)
    if delete_files and view.kind == ModelKind.produced:
        folder = Path(view.source)
        if folder.is_dir() and get_settings().models_dir in folder.parents:
            shutil.rmtree(folder, ignore_errors=True)
    return view


# --- testing ----------------------------------------------------------------------------------

def _run_with_timeout(fn: Callable[[], TestResult], timeout_s: float, what: str) -> TestResult:
    box: list[TestResult] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    started = time.perf_counter()
    t = threading.Thread(target=target, daemon=True, name="model-test")
    t.start()
    t.join(timeout_s)
    elapsed = (time.perf_counter() - started) * 1000
    if t.is_alive():
        return TestResult(False, f"{what} did not answer within {timeout_s:g} s.", elapsed, {})
    if errors:
        exc = errors[0]
        if isinstance(exc, ValueError | LookupError | OSError):
            msg = str(exc)
        else:
            log.error("testing %s failed", what, exc_info=exc)
            msg = f"{what} failed: {type(exc).__name__}: {exc}"
        return TestResult(False, msg, elapsed, {})
    return box[0]


def _test_spec(actor: Actor, spec: ModelSpec, timeout_s: float) -> TestResult:
    from backend.services.chat import stream_chat

    started = time.perf_counter()
    detail: dict[str, Any] = {}
    if spec.kind == ModelKind.openai:
        from backend.llm.openai_compat import list_remote_models

        try:
            offered = list_remote_models(spec, timeout_s=timeout_s)
            detail["endpoint_models"] = offered[:50]
            if offered and spec.remote_model not in offered:
                detail["warning"] = (f"{spec.base_url} does not list {spec.remote_model!r}; it "
                                     f"offers: {', '.join(offered[:10])}")
        except LLMError as exc:
            if "HTTP 404" not in str(exc):  # some servers have no /models; the chat test decides
                raise
    if "chat" in spec.capabilities:
        result = stream_chat(spec, [{"role": "user", "content": "Say hello."}],
                             {"max_new_tokens": 8, "temperature": 0}, actor=actor,
                             placement="auto").collect()
        detail["reply"] = result.text
        if result.usage:
            detail["usage"] = result.usage.to_dict()
    if "embeddings" in spec.capabilities:
        emb = embedder_for(spec, timeout_s=timeout_s)
        detail["dimension"] = int(emb.embed(["hello"]).shape[1])
    ms = (time.perf_counter() - started) * 1000
    parts = []
    if "reply" in detail:
        where = detail.get("usage", {}).get("where", "")
        parts.append(f"answered {detail['reply'][:60]!r} ({where})")
    if "dimension" in detail:
        parts.append(f"embeds to {detail['dimension']} dimensions")
    msg = f"{spec.name} works: " + "; ".join(parts) + f" in {ms:.0f} ms."
    if detail.get("warning"):
        msg += " " + detail["warning"]
    return TestResult(True, msg, ms, detail)


def test_model(*, actor: Actor, model: int | str, timeout_s: float | None = None) -> TestResult:
    """Send a tiny request (a short chat, or one embedding) and say plainly whether it worked.
    Answers within ``timeout_s`` (default: the request timeout) and records the outcome."""
    actor.require_role(Role.builder, "use the model registry")
    timeout = timeout_s or get_settings().request_timeout_s
    spec = model_spec(actor=actor, model=model)
    if spec.is_local and Path(spec.source).is_absolute():
        try:
            check_model_folder(Path(spec.source), embeddings=spec.capabilities == ("embeddings",))
        except ValueError as exc:
            result = TestResult(False, str(exc), 0.0, {})
            _save_test(actor, model, result)
            return result
    result = _run_with_timeout(lambda: _test_spec(actor, spec, timeout), timeout,
                               f"{spec.name} ({spec.base_url or spec.source})")
    _save_test(actor, model, result)
    return result


def _save_test(actor: Actor, model: int | str, result: TestResult) -> None:
    with session_scope() as session:
        row = _load(session, actor, model, lock=True)
        row.last_test_ok = result.ok
        row.last_test_message = result.message[:2000]
        row.last_tested_at = datetime.now(UTC)


# --- using --------------------------------------------------------------------------------------

def embedder(*, actor: Actor, model: int | str | None = None) -> Embedder:
    """The embedder for a registered model with the embeddings capability, or the bundled
    all-MiniLM-L6-v2 when ``model`` is None."""
    s = get_settings()
    spec = None if model is None else model_spec(actor=actor, model=model,
                                                 capability="embeddings")
    return embedder_for(spec, timeout_s=s.request_timeout_s, batch_size=s.embedding_batch_size,
                        device_preference=s.inference_device)
