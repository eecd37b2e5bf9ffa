"""Prompts as the playground, the CLI and the agent builder see them: save (every save is a new
version), list, show, compare and restore versions, render with variables, run against models
(one answer, or several columns streaming side by side), keep and search every run.

Everyone in a workspace may read and run its prompts; saving, restoring and deleting need the
builder role. Another workspace's prompts read as "not found".
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Text, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.accounts.actor import Actor, Role
from backend.accounts.audit import record
from backend.config import get_settings
from backend.db import session_scope
from backend.llm.types import GenerationParams, ToolCall, Usage
from backend.models.prompts import Prompt, PromptRun, PromptVersion
from backend.models.registry import RegisteredModel
from backend.prompts import reading
from backend.prompts.gallery import GalleryTemplate
from backend.prompts.gallery import gallery as gallery_templates
from backend.prompts.output import (
    Parsed,
    as_rows,
    check_format,
    parse_output,
    response_format,
    schema_from_fields,
)
from backend.prompts.reading import AttentionView, ReadingError, TokenView
from backend.prompts.template import (
    CONTEXT_VARIABLE,
    MissingVariables,
    PromptParts,
    TemplateError,
    check_examples,
    render_messages,
    template_variables,
)
from backend.prompts.versions import PartDiff, diff_versions
from backend.services.lookup import find_owned

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[^\s/\\][^/\\]{0,199}$")
MAX_COLUMNS = 4

__all__ = [
    "MissingVariables", "TemplateError", "Parsed", "ReadingError", "as_rows",
    "schema_from_fields", "template_variables",
]


class PromptNotFound(LookupError):
    pass


class PromptExists(ValueError):
    pass


class RunNotFound(LookupError):
    pass


# --- views ------------------------------------------------------------------------------------

@dataclass
class VersionView:
    prompt_id: int
    name: str
    version: int
    system: str
    template: str
    examples: list[dict[str, str]]
    output_format: dict[str, Any]
    context: dict[str, Any] | None
    params: dict[str, Any]
    message: str
    created_by: int | None
    created_at: datetime

    @property
    def variables(self) -> list[str]:
        return template_variables(self.system, self.template)

    @property
    def parts(self) -> PromptParts:
        return PromptParts(template=self.template, system=self.system,
                           examples=list(self.examples))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        d["variables"] = self.variables
        return d


@dataclass
class PromptView:
    id: int
    name: str
    description: str
    latest_version: int
    workspace_id: int
    created_by: int | None
    created_at: datetime
    updated_at: datetime
    current: VersionView  # the version asked for (the latest by default)

    # the fields the agent builder reads
    @property
    def version(self) -> int:
        return self.current.version

    @property
    def system(self) -> str:
        return self.current.system

    @property
    def template(self) -> str:
        return self.current.template

    @property
    def examples(self) -> list[dict[str, str]]:
        return self.current.examples

    @property
    def variables(self) -> list[str]:
        return self.current.variables

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "description": self.description,
            "latest_version": self.latest_version, "workspace_id": self.workspace_id,
            "created_by": self.created_by, "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(), **self.current.to_dict(),
        }


@dataclass
class RunView:
    id: int
    prompt_id: int | None
    prompt_name: str | None
    version: int | None
    model: str
    source: str
    system: str
    template: str
    variables: dict[str, Any]
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    output_format: dict[str, Any]
    text: str
    parsed: Any
    valid: bool | None
    invalid_reason: str | None
    error: str | None
    tokens_in: int | None
    tokens_out: int | None
    ttft_ms: float | None
    tokens_per_s: float | None
    total_ms: float | None
    cost: float | None
    finish_reason: str | None
    created_by: int | None
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        return d


def _version_view(p: Prompt, v: PromptVersion) -> VersionView:
    return VersionView(
        prompt_id=p.id, name=p.name, version=v.version, system=v.system, template=v.template,
        examples=list(v.examples or []), output_format=dict(v.output_format or {"type": "text"}),
        context=dict(v.context) if v.context else None, params=dict(v.params or {}),
        message=v.message, created_by=v.created_by, created_at=v.created_at,
    )


def _prompt_view(p: Prompt, v: PromptVersion) -> PromptView:
    return PromptView(id=p.id, name=p.name, description=p.description,
                      latest_version=p.latest_version, workspace_id=p.workspace_id,
                      created_by=p.created_by, created_at=p.created_at, updated_at=p.updated_at,
                      current=_version_view(p, v))


def _run_view(r: PromptRun, prompt_name: str | None) -> RunView:
    return RunView(
        id=r.id, prompt_id=r.prompt_id, prompt_name=prompt_name, version=r.version,
        model=r.model_name, source=r.source, system=r.system, template=r.template,
        variables=dict(r.variables or {}), messages=list(r.messages or []),
        params=dict(r.params or {}), output_format=dict(r.output_format or {}), text=r.output,
        parsed=r.parsed, valid=r.valid, invalid_reason=r.invalid_reason, error=r.error,
        tokens_in=r.tokens_in, tokens_out=r.tokens_out, ttft_ms=r.ttft_ms,
        tokens_per_s=r.tokens_per_s, total_ms=r.total_ms, cost=r.cost,
        finish_reason=r.finish_reason, created_by=r.created_by, created_at=r.created_at,
    )


# --- checks -----------------------------------------------------------------------------------

def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise ValueError("A prompt name needs 1 to 200 characters, no slashes, and must not "
                         "start with a space.")
    return name


def _check_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    if not params:
        return {}
    clean = {k: v for k, v in params.items() if v not in (None, "", [])}
    return {k: v for k, v in GenerationParams.from_dict(clean).to_dict().items() if k in clean}


def _check_context(context: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not context or not context.get("kb"):
        return None
    k = int(context.get("k") or 3)
    if not 1 <= k <= 20:
        raise ValueError("The knowledge-base context takes 1 to 20 chunks.")
    qv = str(context.get("query_variable") or "").strip()
    if not qv:
        raise ValueError("Say which variable holds the search query for the knowledge base.")
    return {"kb": str(context["kb"]), "query_variable": qv, "k": k}


def _content(*, template: str, system: str, examples: Sequence[Mapping[str, Any]] | None,
             output_format: Mapping[str, Any] | None, context: Mapping[str, Any] | None,
             params: Mapping[str, Any] | None) -> dict[str, Any]:
    """A version's content, validated: the templates parse, examples are pairs, the format
    and the settings are valid."""
    if not (template or "").strip():
        raise ValueError("The user message template is empty. Write the message to send, with "
                         "{{ variables }} where values go.")
    template_variables(system or "", template)  # raises TemplateError on a syntax error
    return {
        "template": template, "system": system or "", "examples": check_examples(examples),
        "output_format": check_format(output_format), "context": _check_context(context),
        "params": _check_params(params),
    }


# --- loading ----------------------------------------------------------------------------------

def _load(session: Session, actor: Actor, prompt: int | str, *, lock: bool = False) -> Prompt:
    row = find_owned(session, actor, Prompt, prompt, lock=lock)
    if row is None:
        raise PromptNotFound(f"No prompt {prompt!r} in this workspace. `studio prompts list` "
                             "shows the saved ones.")
    return row


def _version(session: Session, p: Prompt, version: int | None) -> PromptVersion:
    number = p.latest_version if version is None else int(version)
    row = session.execute(select(PromptVersion).where(
        PromptVersion.prompt_id == p.id, PromptVersion.version == number)).scalar_one_or_none()
    if row is None:
        raise PromptNotFound(f"The prompt {p.name!r} has no version {number}; its versions are "
                             f"1 to {p.latest_version}.")
    return row


# --- prompts and versions ---------------------------------------------------------------------

def list_prompts(*, actor: Actor, search: str = "") -> list[PromptView]:
    """The workspace's prompts (latest versions), by name. ``search`` looks in names,
    descriptions and the latest template."""
    actor.require_role(Role.builder, "see prompts")
    with session_scope() as session:
        stmt = (select(Prompt, PromptVersion)
                .join(PromptVersion, (PromptVersion.prompt_id == Prompt.id)
                      & (PromptVersion.version == Prompt.latest_version))
                .where(Prompt.workspace_id == actor.workspace_id).order_by(Prompt.name))
        if search.strip():
            like = f"%{search.strip()}%"
            stmt = stmt.where(or_(Prompt.name.ilike(like), Prompt.description.ilike(like),
                                  PromptVersion.template.ilike(like),
                                  PromptVersion.system.ilike(like)))
        return [_prompt_view(p, v) for p, v in session.execute(stmt).all()]


def get_prompt(*, actor: Actor, name: int | str, version: int | None = None) -> PromptView:
    """One prompt with the content of ``version`` (the latest when None)."""
    actor.require_role(Role.builder, "see prompts")
    with session_scope() as session:
        p = _load(session, actor, name)
        return _prompt_view(p, _version(session, p, version))


def create_prompt(*, actor: Actor, name: str, template: str, system: str = "",
                  examples: Sequence[Mapping[str, Any]] | None = None,
                  output_format: Mapping[str, Any] | None = None,
                  context: Mapping[str, Any] | None = None,
                  params: Mapping[str, Any] | None = None, message: str = "",
                  description: str = "") -> PromptView:
    """A new prompt with its first version."""
    actor.require_role(Role.builder, "save prompts")
    name = _check_name(name)
    content = _content(template=template, system=system, examples=examples,
                       output_format=output_format, context=context, params=params)
    try:
        with session_scope() as session:
            p = Prompt(name=name, description=description.strip()[:2000], latest_version=1,
                       workspace_id=actor.workspace_id, created_by=actor.user_id)
            session.add(p)
            session.flush()
            v = PromptVersion(prompt_id=p.id, version=1, workspace_id=p.workspace_id,
                              created_by=actor.user_id,
                              message=(message or "First version").strip()[:2000], **content)
            session.add(v)
            session.flush()
            record(actor, "create", "prompt", p.id, {"name": name}, session=session)
            return _prompt_view(p, v)
    except IntegrityError as exc:
        if "uq_prompts_workspace_id" in str(exc.orig):
            raise PromptExists(f"A prompt named {name!r} already exists in this workspace. Save "
                               "a new version of it, or pick another name.") from None
        raise


def save_version(*, actor: Actor, name: int | str, template: str, system: str = "",
                 examples: Sequence[Mapping[str, Any]] | None = None,
                 output_format: Mapping[str, Any] | None = None,
                 context: Mapping[str, Any] | None = None,
                 params: Mapping[str, Any] | None = None, message: str = "") -> PromptView:
    """Save the content as the prompt's next version (versions are never overwritten)."""
    actor.require_role(Role.builder, "save prompts")
    content = _content(template=template, system=system, examples=examples,
                       output_format=output_format, context=context, params=params)
    with session_scope() as session:
        p = _load(session, actor, name, lock=True)
        p.latest_version += 1
        v = PromptVersion(prompt_id=p.id, version=p.latest_version, workspace_id=p.workspace_id,
                          created_by=actor.user_id,
                          message=(message or f"Version {p.latest_version}").strip()[:2000],
                          **content)
        session.add(v)
        session.flush()
        record(actor, "update", "prompt", p.id, {"name": p.name, "version": v.version},
               session=session)
        return _prompt_view(p, v)


def save_prompt(*, actor: Actor, name: str, template: str, system: str = "",
                examples: Sequence[Mapping[str, Any]] | None = None,
                output_format: Mapping[str, Any] | None = None,
                context: Mapping[str, Any] | None = None,
                params: Mapping[str, Any] | None = None, message: str = "",
                description: str = "") -> PromptView:
    """Create the prompt, or save a new version when one of that name exists."""
    actor.require_role(Role.builder, "save prompts")
    with session_scope() as session:
        stmt = select(Prompt.id).where(Prompt.name == _check_name(name),
                                       Prompt.workspace_id == actor.workspace_id)
        exists = session.execute(stmt).scalar_one_or_none() is not None
    kw: dict[str, Any] = dict(template=template, system=system, examples=examples,
                              output_format=output_format, context=context, params=params,
                              message=message)
    if exists:
        return save_version(actor=actor, name=name, **kw)
    return create_prompt(actor=actor, name=name, description=description, **kw)


def list_versions(*, actor: Actor, name: int | str) -> list[VersionView]:
    """Every version of a prompt, newest first."""
    actor.require_role(Role.builder, "see prompts")
    with session_scope() as session:
        p = _load(session, actor, name)
        rows = session.execute(select(PromptVersion).where(PromptVersion.prompt_id == p.id)
                               .order_by(PromptVersion.version.desc())).scalars().all()
        return [_version_view(p, v) for v in rows]


def compare_versions(*, actor: Actor, name: int | str, a: int, b: int) -> list[PartDiff]:
    """What changed from version ``a`` to version ``b`` (unified diffs of the changed parts)."""
    actor.require_role(Role.builder, "see prompts")
    with session_scope() as session:
        p = _load(session, actor, name)
        va, vb = _version_view(p, _version(session, p, a)), _version_view(p, _version(session, p, b))
    return diff_versions(asdict(va), asdict(vb), a_label=f"v{a}", b_label=f"v{b}")


def restore_version(*, actor: Actor, name: int | str, version: int,
                    message: str = "") -> PromptView:
    """Make an old version current again, by saving it as the newest version."""
    actor.require_role(Role.builder, "restore prompt versions")
    old = get_prompt(actor=actor, name=name, version=version).current
    return save_version(actor=actor, name=old.prompt_id, template=old.template,
                        system=old.system, examples=old.examples,
                        output_format=old.output_format, context=old.context,
                        params=old.params, message=message or f"Restored version {version}")


def delete_prompt(*, actor: Actor, name: int | str) -> PromptView:
    """Delete a prompt and its versions (its runs stay, without the link)."""
    actor.require_role(Role.builder, "delete prompts")
    with session_scope() as session:
        p = _load(session, actor, name, lock=True)
        view = _prompt_view(p, _version(session, p, None))
        session.delete(p)
        record(actor, "delete", "prompt", p.id, {"name": p.name}, session=session)
        return view


# --- rendering --------------------------------------------------------------------------------

def _with_context(actor: Actor, context: Mapping[str, Any] | None,
                  variables: Mapping[str, Any]) -> dict[str, Any]:
    """The variables, plus ``context`` from the knowledge base when the prompt has one."""
    values = {k: v for k, v in variables.items()}
    if not context or CONTEXT_VARIABLE in values:
        return values
    query = str(values.get(context["query_variable"]) or "").strip()
    if not query:
        raise MissingVariables([context["query_variable"]])
    from backend.services import knowledge

    hits = knowledge.search(actor=actor, kb=context["kb"], query=query, k=int(context["k"]))
    values[CONTEXT_VARIABLE] = "\n\n".join(
        f"[{i}] {h.text}" for i, h in enumerate(hits, 1))
    return values


def knowledge_bases(*, actor: Actor) -> list[str]:
    """Names of the workspace's knowledge bases (for a prompt's context)."""
    actor.require_role(Role.builder, "use the playground")
    from backend.services import knowledge

    return [kb.name for kb in knowledge.list_knowledge_bases(actor=actor)]


def render_parts(*, actor: Actor, parts: PromptParts, variables: Mapping[str, Any],
                 context: Mapping[str, Any] | None = None) -> list[dict[str, str]]:
    """Messages for unsaved content (the editor): raises MissingVariables naming what is
    missing, TemplateError for anything the sandbox refuses."""
    actor.require_role(Role.builder, "use the playground")
    values = _with_context(actor, _check_context(context), variables)
    return render_messages(parts, values)


def render_prompt(*, actor: Actor, name: int | str, version: int | None = None,
                  variables: Mapping[str, Any] | None = None) -> list[dict[str, str]]:
    """The saved prompt's messages with the variables filled in (system, few-shot turns, user)."""
    actor.require_role(Role.builder, "use the playground")
    v = get_prompt(actor=actor, name=name, version=version).current
    return render_parts(actor=actor, parts=v.parts, variables=variables or {}, context=v.context)


def prompt_variables(*, actor: Actor, template: str, system: str = "",
                     context: Mapping[str, Any] | None = None) -> list[str]:
    """The variables a form must ask for (``context`` is left out when a knowledge base
    fills it)."""
    actor.require_role(Role.builder, "use the playground")
    names = template_variables(system, template)
    if context and context.get("kb"):
        names = [n for n in names if n != CONTEXT_VARIABLE]
        qv = str(context.get("query_variable") or "")
        if qv and qv not in names:
            names.append(qv)
    return names


# --- running ----------------------------------------------------------------------------------

def run_cost(model_id: int, tokens_in: int | None, tokens_out: int | None) -> float | None:
    with session_scope() as session:
        row = session.get(RegisteredModel, model_id)
        if row is None or (row.price_input_per_mtok is None and row.price_output_per_mtok is None):
            return None
        pin, pout = row.price_input_per_mtok or 0.0, row.price_output_per_mtok or 0.0
    return ((tokens_in or 0) * pin + (tokens_out or 0) * pout) / 1e6


def set_model_price(*, actor: Actor, model: int | str, input_per_mtok: float | None,
                    output_per_mtok: float | None) -> None:
    """Prices per million tokens in and out (None clears); runs then show their cost."""
    from backend.services.models import get_model

    actor.require_role(Role.builder, "set model prices")
    for v in (input_per_mtok, output_per_mtok):
        if v is not None and not (0 <= float(v) < 1e6):
            raise ValueError("A price per million tokens must be 0 or more.")
    mid = get_model(actor=actor, model=model).id
    with session_scope() as session:
        row = session.get(RegisteredModel, mid, with_for_update=True)
        assert row is not None
        row.price_input_per_mtok = input_per_mtok
        row.price_output_per_mtok = output_per_mtok
        record(actor, "update", "model", mid, {"price_input_per_mtok": input_per_mtok,
                                               "price_output_per_mtok": output_per_mtok},
               session=session)


def model_prices(*, actor: Actor, model: int | str) -> tuple[float | None, float | None]:
    """(input, output) price per million tokens, None where unset."""
    actor.require_role(Role.builder, "use the playground")
    from backend.services.models import get_model

    mid = get_model(actor=actor, model=model).id
    with session_scope() as session:
        row = session.get(RegisteredModel, mid)
        assert row is not None
        return row.price_input_per_mtok, row.price_output_per_mtok


def supports_response_format() -> bool:
    """Whether ``stream_chat`` params take OpenAI's ``response_format`` (constrained JSON)."""
    return "response_format" in GenerationParams.__dataclass_fields__


def chat_params(params: Mapping[str, Any] | None,
                output_format: Mapping[str, Any] | None) -> dict[str, Any]:
    """The generation settings to send: the column's settings, plus ``response_format`` for a
    JSON output where the chat service supports it."""
    out = _check_params(params)
    rf = response_format(output_format)
    if rf is not None and supports_response_format():
        out["response_format"] = rf
    return out


@dataclass
class RunSpec:
    """One column of a run: a model with its settings, the prompt content, and the turns of a
    chat continued after the first answer."""

    model: str
    parts: PromptParts
    params: dict[str, Any] = field(default_factory=dict)
    output_format: dict[str, Any] = field(default_factory=lambda: {"type": "text"})
    context: dict[str, Any] | None = None
    prompt_id: int | None = None
    version: int | None = None
    history: list[dict[str, str]] = field(default_factory=list)  # earlier turns (follow-ups)


@dataclass
class ColumnState:
    """What a column shows while it runs and after."""

    model: str
    messages: list[dict[str, str]]
    text: str = ""
    done: bool = False
    stopped: bool = False
    usage: Usage | None = None
    error: str | None = None
    parsed: Parsed | None = None
    run_id: int | None = None
    cost: float | None = None
    request_id: str | None = None


class LiveRun:
    """Several columns generating at once, each in its own thread. Read ``columns`` any time;
    ``stop(i)`` stops one column; the runs are recorded when each column ends."""

    def __init__(self, columns: list[ColumnState], threads: list[threading.Thread],
                 streams: list[Any]) -> None:
        self.columns = columns
        self._threads = threads
        self._streams = streams

    @property
    def done(self) -> bool:
        return all(c.done for c in self.columns)

    def stop(self, index: int) -> None:
        stream = self._streams[index]
        if stream is not None and not self.columns[index].done:
            self.columns[index].stopped = True
            stream.stop()

    def stop_all(self) -> None:
        for i in range(len(self.columns)):
            self.stop(i)

    def wait(self, timeout_s: float | None = None) -> bool:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self.done


def _record_run(actor: Actor, spec: RunSpec, variables: Mapping[str, Any],
                state: ColumnState, source: str) -> int:
    u = state.usage
    with session_scope() as session:
        model_id = session.execute(select(RegisteredModel.id).where(
            RegisteredModel.name == spec.model,
            RegisteredModel.workspace_id == actor.workspace_id)).scalar_one_or_none()
    cost = run_cost(model_id, u.prompt_tokens if u else None,
                    u.completion_tokens if u else None) if model_id and u else None
    state.cost = cost
    parsed = state.parsed
    with session_scope() as session:
        row = PromptRun(
            workspace_id=actor.workspace_id, created_by=actor.user_id, prompt_id=spec.prompt_id,
            version=spec.version, model_name=spec.model, model_id=model_id, source=source,
            system=spec.parts.system, template=spec.parts.template,
            variables=_jsonable(dict(variables)), messages=state.messages + (
                [{"role": "assistant", "content": state.text}] if state.text else []),
            params=dict(spec.params), output_format=dict(spec.output_format), output=state.text,
            parsed=_jsonable(parsed.value) if parsed and parsed.valid else None,
            valid=parsed.valid if parsed else None,
            invalid_reason=parsed.reason if parsed else None, error=state.error,
            tokens_in=u.prompt_tokens if u else None, tokens_out=u.completion_tokens if u else None,
            ttft_ms=u.ttft_ms if u else None, tokens_per_s=u.tokens_per_s if u else None,
            total_ms=u.total_ms if u else None, cost=cost,
            finish_reason=(u.finish_reason if u else ("error" if state.error else None)),
        )
        session.add(row)
        session.flush()
        return row.id


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


def start_runs(*, actor: Actor, specs: Sequence[RunSpec], variables: Mapping[str, Any],
               source: str = "playground", record_runs: bool = True) -> LiveRun:
    """Start every column at once (1-4 models, or two versions against one model). Everything
    is checked first: a missing variable or a refused template raises before any model runs."""
    actor.require_role(Role.builder, "run prompts")
    from backend.services.chat import stream_chat

    if not 1 <= len(specs) <= MAX_COLUMNS:
        raise ValueError(f"Run 1 to {MAX_COLUMNS} columns at once.")
    prepared: list[tuple[RunSpec, list[dict[str, str]], dict[str, Any]]] = []
    for spec in specs:
        if not spec.model:
            raise ValueError("Pick a model for every column.")
        msgs = render_parts(actor=actor, parts=spec.parts, variables=variables,
                            context=spec.context)
        if spec.history:
            msgs = msgs + list(spec.history)
        prepared.append((spec, msgs, chat_params(spec.params, spec.output_format)))
    columns = [ColumnState(model=s.model, messages=m) for s, m, _ in prepared]
    streams: list[Any] = []
    for (spec, msgs, params), state in zip(prepared, columns, strict=True):
        try:
            stream = stream_chat(spec.model, msgs, params, actor=actor, placement="auto")
            state.request_id = stream.request_id
        except (LookupError, ValueError, PermissionError) as exc:
            stream = None
            state.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown in the column, logged
            log.exception("starting a run on %s failed", spec.model)
            stream = None
            state.error = f"{type(exc).__name__}: {exc}"
        streams.append(stream)

    def consume(i: int) -> None:
        spec, _, _ = prepared[i]
        state, stream = columns[i], streams[i]
        try:
            if stream is not None:
                for piece in stream:
                    if isinstance(piece, ToolCall):
                        continue
                    state.text += piece
                state.usage = stream.usage
                state.parsed = parse_output(state.text, spec.output_format)
        except Exception as exc:  # noqa: BLE001 - the column shows it; the trace goes to the log
            log.warning("run on %s failed: %s", spec.model, exc, exc_info=True)
            state.error = str(exc) or type(exc).__name__
        finally:
            if record_runs:
                try:
                    state.run_id = _record_run(actor, spec, variables, state, source)
                except Exception:  # noqa: BLE001 - an unrecorded run still shows its answer
                    log.exception("recording a run failed")
            state.done = True

    threads = [threading.Thread(target=consume, args=(i,), daemon=True, name=f"run-{i}")
               for i in range(len(columns))]
    for t in threads:
        t.start()
    return LiveRun(columns, threads, streams)


def run_prompt(*, actor: Actor, name: int | str | None = None, version: int | None = None,
               models: Sequence[str], variables: Mapping[str, Any] | None = None,
               params: Mapping[str, Any] | None = None, parts: PromptParts | None = None,
               source: str = "cli", timeout_s: float | None = None) -> list[ColumnState]:
    """Run a saved prompt (or unsaved ``parts``) against each model and wait for the answers."""
    actor.require_role(Role.builder, "run prompts")
    if parts is None:
        if name is None:
            raise ValueError("Give a prompt name or the prompt's content.")
        v = get_prompt(actor=actor, name=name, version=version).current
        specs = [RunSpec(model=m, parts=v.parts, params={**v.params, **dict(params or {})},
                         output_format=v.output_format, context=v.context,
                         prompt_id=v.prompt_id, version=v.version) for m in models]
    else:
        specs = [RunSpec(model=m, parts=parts, params=dict(params or {})) for m in models]
    live = start_runs(actor=actor, specs=specs, variables=variables or {}, source=source)
    live.wait(timeout_s or get_settings().request_timeout_s * 4)
    return live.columns


# --- history ----------------------------------------------------------------------------------

def list_runs(*, actor: Actor, search: str = "", prompt: int | str | None = None,
              model: str | None = None, limit: int = 100) -> list[RunView]:
    """Runs of the workspace, newest first. ``search`` looks in the template, variables,
    messages (follow-up turns too) and output; users see their own runs, builders everyone's in
    the workspace."""
    actor.require_role(Role.builder, "see prompt runs")
    with session_scope() as session:
        stmt = (select(PromptRun, Prompt.name).outerjoin(Prompt, Prompt.id == PromptRun.prompt_id)
                .where(PromptRun.workspace_id == actor.workspace_id)
                .order_by(PromptRun.id.desc()).limit(max(1, min(limit, 1000))))
        if actor.role == Role.user:
            stmt = stmt.where(PromptRun.created_by == actor.user_id)
        if prompt is not None:
            stmt = stmt.where(PromptRun.prompt_id == _load(session, actor, prompt).id)
        if model:
            stmt = stmt.where(PromptRun.model_name == model)
        if search.strip():
            like = f"%{search.strip()}%"
            stmt = stmt.where(or_(PromptRun.template.ilike(like), PromptRun.output.ilike(like),
                                  PromptRun.system.ilike(like),
                                  PromptRun.model_name.ilike(like), Prompt.name.ilike(like),
                                  PromptRun.variables.cast(Text).ilike(like),
                                  PromptRun.messages.cast(Text).ilike(like)))
        return [_run_view(r, n) for r, n in session.execute(stmt).all()]


def get_run(*, actor: Actor, run_id: int) -> RunView:
    actor.require_role(Role.builder, "see prompt runs")
    with session_scope() as session:
        r = session.get(PromptRun, int(run_id))
        if r is None or (not actor.is_admin and (
                r.workspace_id != actor.workspace_id
                or (actor.role == Role.user and r.created_by != actor.user_id))):
            raise RunNotFound(f"No run #{run_id}.")
        name = session.get(Prompt, r.prompt_id).name if r.prompt_id else None  # type: ignore[union-attr]
        return _run_view(r, name)


# --- using a prompt elsewhere -----------------------------------------------------------------

def code_snippets(*, actor: Actor, model: str, messages: Sequence[Mapping[str, Any]],
                  params: Mapping[str, Any] | None = None) -> dict[str, str]:
    """"Copy as code": the same request through the studio's OpenAI-compatible API, as Python
    (the ``openai`` client) and as curl. The key is a placeholder."""
    actor.require_role(Role.builder, "use the playground")
    s = get_settings()
    base = f"http://{s.host}:{s.api_port}/v1"
    p = {k: v for k, v in _check_params(params).items()}
    body: dict[str, Any] = {"model": model, "messages": [
        {"role": m["role"], "content": m["content"]} for m in messages]}
    mapping = {"temperature": "temperature", "top_p": "top_p", "max_new_tokens": "max_tokens",
               "stop": "stop", "seed": "seed"}
    for k, v in p.items():
        if k in mapping:
            body[mapping[k]] = v
    kwargs = ",\n    ".join(f"{k}={json.dumps(v, ensure_ascii=False)}"
                            for k, v in body.items() if k not in ("model", "messages"))
    msgs = json.dumps(body["messages"], ensure_ascii=False, indent=4).replace("\n", "\n    ")
    python = (
        "from openai import OpenAI\n\n"
        f'client = OpenAI(base_url="{base}", api_key="sk-studio-...")  # studio keys create\n'
        "response = client.chat.completions.create(\n"
        f"    model={json.dumps(model, ensure_ascii=False)},\n"
        f"    messages={msgs},\n"
        + (f"    {kwargs},\n" if kwargs else "")
        + ")\nprint(response.choices[0].message.content)\n"
    )
    payload = json.dumps(body, ensure_ascii=False, indent=2)
    curl = (f"curl {base}/chat/completions \\\n"
            '  -H "Authorization: Bearer sk-studio-..." \\\n'
            '  -H "Content-Type: application/json" \\\n'
            f"  -d {shlex.quote(payload)}\n")
    return {"python": python, "curl": curl}


# --- how the model reads ------------------------------------------------------------------------

def token_view(*, actor: Actor, model: str, messages: Sequence[Mapping[str, Any]]) -> TokenView:
    """How a local model's tokenizer splits the messages (chat template included), with the
    count against its context window. Endpoints don't share their tokenizer: ReadingError."""
    actor.require_role(Role.builder, "use the playground")
    from backend.services.models import model_spec

    spec = model_spec(actor=actor, model=model)
    if not spec.is_local:
        raise ReadingError(f"{spec.name} is an endpoint; its tokenizer is not available here, so "
                           "the studio cannot show its tokens.")
    return reading.token_view(spec.name, spec.source, [dict(m) for m in messages])


def attention_view(*, actor: Actor, model: str, messages: Sequence[Mapping[str, Any]],
                   layer: int, head: int) -> AttentionView:
    """One layer's and head's attention over the prompt's tokens (local models; 0-based)."""
    actor.require_role(Role.builder, "use the playground")
    from backend.services.models import model_spec

    spec = model_spec(actor=actor, model=model)
    if not spec.is_local:
        raise ReadingError(f"{spec.name} is an endpoint; attention weights are only available "
                           "for local models.")
    return reading.attention_view(spec.name, spec.source, [dict(m) for m in messages],
                                  layer=layer, head=head)


def gallery(*, actor: Actor, language: str = "en") -> list[GalleryTemplate]:
    """Starting templates (role, few-shot classification, chain of thought, JSON extraction,
    summary, translation, customer service with context) in English or Chinese."""
    actor.require_role(Role.builder, "use the playground")
    return gallery_templates(language)
