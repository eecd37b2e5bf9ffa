"""Agents and published bots: what pages, the CLI and the API call.

- Builders create, edit, duplicate, delete and publish agents (publishing freezes the draft into a
  version; the published bot answers with that version until the next publish), define HTTP
  tools (a form or an OpenAPI document) and MCP servers. Admins allow-list private hosts.
- Anyone in the workspace chats with its published bots (``stream_agent``); builders also try
  drafts. Conversations, messages, traces (every step) and feedback are stored in Postgres.
- API keys may be limited to one agent and to a rate (``set_key_limit``, ``check_key``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Integer, and_, bindparam, delete, false, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.accounts import tokens
from backend.accounts.actor import Actor, PermissionDenied, Role
from backend.accounts.audit import record
from backend.agents.config import AgentConfig
from backend.agents.mcp_tools import McpServerSpec, McpToolInfo, mcp_tool
from backend.agents.mcp_tools import list_tools as mcp_list_tools
from backend.agents.tools import (
    BUILTIN_TOOLS,
    NAME_RE,
    AgentTool,
    HttpToolSpec,
    ToolError,
    ToolOutput,
    http_tool,
    openapi_operations,
)
from backend.db import read_scope, session_scope
from backend.models.accounts import ApiKey
from backend.models.agents import (
    Agent,
    AgentConversation,
    AgentFeedback,
    AgentMessage,
    AgentTrace,
    AgentTraceStep,
    AgentVersion,
    AllowedHost,
    ApiKeyLimit,
    HttpTool,
    McpServer,
)
from backend.models.registry import RegisteredModel
from backend.services.lookup import as_id

KNOWLEDGE_TOOL = "knowledge_search"
ICONS = ("🤖", "💬", "📚", "🧮", "🛠️", "🔎", "🧠", "📈", "🌐", "⭐")


class AgentNotFound(LookupError):
    pass


class AgentError(ValueError):
    """Bad input for an agent; the message says what to fix."""


class AgentStopped(RuntimeError):
    """The reader stopped the answer."""


class RateLimited(PermissionError):
    def __init__(self, retry_after_s: int, rate: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"This API key may make {rate} requests a minute; try again in "
                         f"{retry_after_s} s.")


# ------------------------------------------------------------------------------------ views

@dataclass
class AgentView:
    id: int
    name: str
    description: str
    icon: str
    config: dict[str, Any]
    published_version: int | None
    published_at: datetime | None
    workspace_id: int
    created_by: int | None
    created_at: datetime
    updated_at: datetime
    has_unpublished_changes: bool = False

    @property
    def published(self) -> bool:
        return self.published_version is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, datetime):
                d[k] = v.isoformat()
        d["published"] = self.published
        return d


@dataclass
class ConversationView:
    id: int
    agent_id: int
    agent: str
    title: str
    channel: str
    created_by: int | None
    created_at: datetime
    updated_at: datetime
    messages: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        d["updated_at"] = self.updated_at.isoformat()
        return d


@dataclass
class MessageView:
    id: int
    role: str
    content: str
    sources: list[dict[str, Any]]
    trace_id: int | None
    created_at: datetime
    rating: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        return d


@dataclass
class TraceView:
    id: int
    agent_id: int
    conversation_id: int | None
    version: int | None
    question: str
    status: str
    error: str | None
    plan: list[Any] | None
    prompt_tokens: int
    completion_tokens: int
    total_ms: float
    created_at: datetime
    steps: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        return d


@dataclass
class AgentAnswer:
    answer: str
    sources: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    plan: list[dict[str, Any]]
    trace_id: int
    conversation_id: int
    message_id: int
    prompt_tokens: int
    completion_tokens: int
    total_ms: float
    agent: str
    version: int | None
    finish_reason: str = "stop"  # "length": the answer hit its token limit (or the context)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FeedbackView:
    id: int
    message_id: int
    agent_id: int
    agent: str
    rating: int
    comment: str
    question: str
    answer: str
    username: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        return d


@dataclass
class HttpToolView:
    id: int
    name: str
    description: str
    method: str
    url_template: str
    parameters: dict[str, Any]
    headers: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class McpServerView:
    id: int
    name: str
    transport: str
    command: str
    args: list[str]
    url: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class KeyLimit:
    api_key_id: int
    agent_id: int | None
    agent: str | None
    rate_per_min: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------- helpers

def _has_draft_changes(session: Session, a: Agent) -> bool:
    if a.published_version is None:
        return True
    v = session.execute(select(AgentVersion.config).where(
        AgentVersion.agent_id == a.id, AgentVersion.version == a.published_version)
    ).scalar_one_or_none()
    return v != _frozen(a)


def _frozen(a: Agent) -> dict[str, Any]:
    return {**a.config, "_name": a.name, "_description": a.description, "_icon": a.icon}


def _view(session: Session, a: Agent) -> AgentView:
    return AgentView(id=a.id, name=a.name, description=a.description, icon=a.icon,
                     config=dict(a.config), published_version=a.published_version,
                     published_at=a.published_at, workspace_id=a.workspace_id,
                     created_by=a.created_by, created_at=a.created_at, updated_at=a.updated_at,
                     has_unpublished_changes=_has_draft_changes(session, a))


def _load(session: Session, actor: Actor, agent: int | str, *, lock: bool = False) -> Agent:
    row: Agent | None = None
    number = as_id(agent)
    if number is not None:
        row = session.get(Agent, number, with_for_update=lock)
        if row is not None and row.workspace_id != actor.workspace_id and not actor.is_admin:
            row = None
    if row is None and isinstance(agent, str):
        stmt = select(Agent).where(Agent.name == agent.strip(),
                                   Agent.workspace_id == actor.workspace_id)
        row = session.execute(stmt.with_for_update() if lock else stmt).scalar_one_or_none()
    if row is None:
        raise AgentNotFound(f"No agent {agent!r} in this workspace. `studio agents list` shows "
                            "them.")
    return row


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 200 or any(c in name for c in "\n\r\t/"):
        raise AgentError("An agent needs a name of 1 to 200 characters, without slashes or "
                         "line breaks (it is the bot's model name in the API).")
    return name


def _check_config(actor: Actor, config: AgentConfig | dict[str, Any]) -> AgentConfig:
    try:
        cfg = config if isinstance(config, AgentConfig) else AgentConfig.from_dict(config)
    except (TypeError, ValueError) as exc:
        raise AgentError(str(exc)) from None
    if not cfg.model.strip():
        raise AgentError("Pick the model the agent talks with (`studio models list` shows "
                         "the registered ones).")
    from backend.services import knowledge, prompts
    from backend.services.models import ModelNotFound, get_model

    # Everything the agent names is looked up in the agent's own workspace (an admin's id of
    # another workspace's row is refused too) and stored by its name, as it runs.
    own = replace(actor, role=Role.builder) if actor.is_admin else actor
    try:
        m = get_model(actor=own, model=cfg.model)
    except ModelNotFound as exc:
        raise AgentError(str(exc)) from None
    if "chat" not in m.capabilities:
        raise AgentError(f"The model {cfg.model!r} is not a chat model.")
    kb_names: list[str] = []
    for kb in cfg.knowledge_bases:
        try:
            kb_names.append(knowledge.get_knowledge_base(actor=own, kb=kb).name)
        except knowledge.KnowledgeBaseNotFound:
            raise AgentError(f"There is no knowledge base {kb!r} in this workspace: pick one "
                             "that `studio kb list` shows, or leave it out.") from None
    saved = cfg.saved_prompt
    if cfg.saved_prompt:
        try:
            p = prompts.get_prompt(actor=own, name=cfg.saved_prompt,
                                   version=cfg.saved_prompt_version)
        except prompts.PromptNotFound as exc:
            raise AgentError(f"{exc} Pick a saved prompt of this workspace or leave it out.") \
                from None
        saved = p.name
    for t in cfg.tools:
        if t in BUILTIN_TOOLS or t == KNOWLEDGE_TOOL or t.startswith(("http:", "mcp:")):
            continue
        raise AgentError(f"Unknown tool {t!r}. Use {', '.join(BUILTIN_TOOLS)}, "
                         "http:NAME for an HTTP tool or mcp:SERVER/TOOL for an MCP tool.")
    return replace(cfg, model=m.name, knowledge_bases=list(dict.fromkeys(kb_names)),
                   saved_prompt=saved)


def _unique_name(session: Session, workspace_id: int, base: str) -> str:
    taken = set(session.execute(select(Agent.name).where(
        Agent.workspace_id == workspace_id, Agent.name.like(f"{base}%"))).scalars())
    if base not in taken:
        return base
    n = 2
    while f"{base} ({n})" in taken:
        n += 1
    return f"{base} ({n})"


# ------------------------------------------------------------------------------- agent CRUD

def list_agents(*, actor: Actor, search: str = "", published_only: bool = False
                ) -> list[AgentView]:
    """The workspace's agents by name. Role ``user`` sees published bots only."""
    if not actor.has_role(Role.builder):
        published_only = True
    with session_scope() as session:
        stmt = select(Agent).where(Agent.workspace_id == actor.workspace_id).order_by(Agent.name)
        if search.strip():
            like = f"%{search.strip()}%"
            stmt = stmt.where(or_(Agent.name.ilike(like), Agent.description.ilike(like)))
        if published_only:
            stmt = stmt.where(Agent.published_version.is_not(None))
        return [_view(session, a) for a in session.execute(stmt).scalars()]


def get_agent(*, actor: Actor, agent: int | str) -> AgentView:
    with session_scope() as session:
        a = _load(session, actor, agent)
        if a.published_version is None and not actor.has_role(Role.builder):
            raise AgentNotFound(f"No published bot {agent!r} in this workspace.")
        return _view(session, a)


def create_agent(*, actor: Actor, name: str, config: AgentConfig | dict[str, Any],
                 description: str = "", icon: str = "🤖") -> AgentView:
    actor.require_role(Role.builder, "create agents")
    name = _check_name(name)
    cfg = _check_config(actor, config)
    try:
        with session_scope() as session:
            a = Agent(name=name, description=description.strip()[:2000], icon=(icon or "🤖")[:16],
                      config=cfg.to_dict(), workspace_id=actor.workspace_id,
                      created_by=actor.user_id)
            session.add(a)
            session.flush()
            record(actor, "create", "agent", a.id, {"name": name, "model": cfg.model},
                   session=session)
            return _view(session, a)
    except IntegrityError:
        raise AgentError(f"An agent named {name!r} already exists in this workspace; pick "
                         "another name.") from None


def update_agent(*, actor: Actor, agent: int | str, name: str | None = None,
                 description: str | None = None, icon: str | None = None,
                 config: AgentConfig | dict[str, Any] | None = None) -> AgentView:
    """Change the draft. The published bot keeps answering with its version."""
    actor.require_role(Role.builder, "edit agents")
    cfg = _check_config(actor, config) if config is not None else None
    try:
        with session_scope() as session:
            a = _load(session, actor, agent, lock=True)
            changed: dict[str, Any] = {}
            if name is not None and name.strip() != a.name:
                a.name = changed["name"] = _check_name(name)
            if description is not None:
                a.description = description.strip()[:2000]
            if icon is not None:
                a.icon = (icon or "🤖")[:16]
            if cfg is not None:
                a.config = cfg.to_dict()
                changed["config"] = True
            session.flush()
            record(actor, "update", "agent", a.id, changed, session=session)
            return _view(session, a)
    except IntegrityError:
        raise AgentError(f"An agent named {name!r} already exists in this workspace.") from None


def duplicate_agent(*, actor: Actor, agent: int | str, name: str | None = None) -> AgentView:
    actor.require_role(Role.builder, "duplicate agents")
    with session_scope() as session:
        src = _load(session, actor, agent)
        new_name = _check_name(name) if name else _unique_name(
            session, actor.workspace_id, f"{src.name} copy")
        copy = Agent(name=new_name, description=src.description, icon=src.icon,
                     config=dict(src.config), workspace_id=actor.workspace_id,
                     created_by=actor.user_id)
        session.add(copy)
        try:
            session.flush()
        except IntegrityError:
            raise AgentError(f"An agent named {new_name!r} already exists.") from None
        record(actor, "create", "agent", copy.id, {"name": new_name, "copy_of": src.id},
               session=session)
        return _view(session, copy)


def delete_agent(*, actor: Actor, agent: int | str) -> None:
    """Delete an agent with its versions, conversations, traces and feedback."""
    actor.require_role(Role.builder, "delete agents")
    with session_scope() as session:
        a = _load(session, actor, agent, lock=True)
        record(actor, "delete", "agent", a.id, {"name": a.name}, session=session)
        session.delete(a)


def publish_agent(*, actor: Actor, agent: int | str) -> AgentView:
    """Freeze the draft as the next version and serve it (pages, API)."""
    actor.require_role(Role.builder, "publish agents")
    with session_scope() as session:
        a = _load(session, actor, agent, lock=True)
        _check_config(actor, a.config)
        last = session.execute(select(func.max(AgentVersion.version)).where(
            AgentVersion.agent_id == a.id)).scalar_one_or_none() or 0
        session.add(AgentVersion(agent_id=a.id, version=last + 1, config=_frozen(a),
                                 created_by=actor.user_id))
        a.published_version = last + 1
        a.published_at = datetime.now(UTC)
        session.flush()
        record(actor, "publish", "agent", a.id, {"name": a.name, "version": last + 1},
               session=session)
        return _view(session, a)


def unpublish_agent(*, actor: Actor, agent: int | str) -> AgentView:
    actor.require_role(Role.builder, "unpublish agents")
    with session_scope() as session:
        a = _load(session, actor, agent, lock=True)
        a.published_version = None
        session.flush()
        record(actor, "unpublish", "agent", a.id, {"name": a.name}, session=session)
        return _view(session, a)


def list_versions(*, actor: Actor, agent: int | str) -> list[dict[str, Any]]:
    actor.require_role(Role.builder, "see an agent's versions")
    with session_scope() as session:
        a = _load(session, actor, agent)
        rows = session.execute(select(AgentVersion).where(AgentVersion.agent_id == a.id)
                               .order_by(AgentVersion.version.desc())).scalars()
        return [{"version": v.version, "created_at": v.created_at.isoformat(),
                 "model": v.config.get("model"), "published": v.version == a.published_version}
                for v in rows]


def create_bot(*, actor: Actor, name: str, model: str, knowledge_bases: Sequence[str],
               welcome: str = "", publish: bool = True, top_k: int = 4,
               context_budget: int | None = None) -> AgentView:
    """The three-step bot: a knowledge base, a model, a name. Retrieval on every question
    (``top_k`` passages, as many as fit the model's context or ``context_budget`` tokens),
    citations on, "I don't know" when nothing relevant is found; published at once."""
    try:
        cfg = AgentConfig(
            model=model, knowledge_bases=list(knowledge_bases), kb_mode="context",
            citations=True, kb_top_k=int(top_k), context_budget=context_budget or None,
            system_prompt=("You answer questions from the team's documents. Use only the "
                           "passages you are given, cite them like [1], and say you don't know "
                           "when they do not answer the question."),
            welcome=welcome,
            params={"temperature": 0.2})
    except ValueError as exc:
        raise AgentError(str(exc)) from None
    view = create_agent(actor=actor, name=name, config=cfg, icon="📚")
    return publish_agent(actor=actor, agent=view.id) if publish else view


# ------------------------------------------------------------------------------------ tools

def _allowed_hosts(session: Session) -> list[str]:
    return list(session.execute(select(AllowedHost.host)).scalars())


def available_tools(*, actor: Actor) -> list[dict[str, str]]:
    """What an agent may pick: built-ins, the workspace's HTTP tools and its MCP servers'
    tools (listed by asking each server; unreachable ones are reported, not raised)."""
    actor.require_role(Role.builder, "see agent tools")
    out = [{"id": "calculator", "kind": "builtin",
            "description": "Evaluate arithmetic exactly."},
           {"id": "current_datetime", "kind": "builtin",
            "description": "The current date and time."},
           {"id": KNOWLEDGE_TOOL, "kind": "knowledge",
            "description": "Search the agent's knowledge bases."}]
    with session_scope() as session:
        https = session.execute(select(HttpTool).where(
            HttpTool.workspace_id == actor.workspace_id).order_by(HttpTool.name)).scalars().all()
        servers = session.execute(select(McpServer).where(
            McpServer.workspace_id == actor.workspace_id).order_by(McpServer.name)
        ).scalars().all()
        allowed = _allowed_hosts(session)
        specs = [(s.name, _mcp_spec(s)) for s in servers]
        out += [{"id": f"http:{t.name}", "kind": "http", "description": t.description}
                for t in https]
    for name, spec in specs:
        try:
            for info in mcp_list_tools(spec, allowed_hosts=allowed, timeout_s=15):
                out.append({"id": f"mcp:{name}/{info.name}", "kind": "mcp",
                            "description": info.description})
        except ToolError as exc:
            out.append({"id": f"mcp:{name}/", "kind": "mcp", "description": str(exc),
                        "error": "unreachable"})
    return out


def create_http_tool(*, actor: Actor, name: str, url_template: str, method: str = "GET",
                     description: str = "", parameters: dict[str, Any] | None = None,
                     headers: dict[str, str] | None = None) -> HttpToolView:
    actor.require_role(Role.builder, "create HTTP tools")
    try:
        spec = HttpToolSpec(name=name, description=description, method=method,
                            url_template=url_template.strip(), parameters=parameters or {},
                            headers=headers or {})
    except ValueError as exc:
        raise AgentError(str(exc)) from None
    from backend.services.secrets import SecretNotFound, list_secrets

    known = {s.name for s in list_secrets(actor=actor)}
    for secret in spec.secret_names():
        if secret not in known:
            raise AgentError(f"The header uses the secret {secret!r}, which this workspace does "
                             "not have; add it on the Settings page or with `studio secrets set`.")
    _ = SecretNotFound
    try:
        with session_scope() as session:
            row = HttpTool(name=spec.name, description=spec.description, method=spec.method,
                           url_template=spec.url_template, parameters=spec.parameters,
                           headers=spec.headers, workspace_id=actor.workspace_id,
                           created_by=actor.user_id)
            session.add(row)
            session.flush()
            record(actor, "create", "http_tool", row.id, {"name": spec.name,
                                                          "url": spec.url_template},
                   session=session)
            return _http_view(row)
    except IntegrityError:
        raise AgentError(f"An HTTP tool named {spec.name!r} already exists.") from None


def _http_view(t: HttpTool) -> HttpToolView:
    return HttpToolView(id=t.id, name=t.name, description=t.description, method=t.method,
                        url_template=t.url_template, parameters=dict(t.parameters),
                        headers=dict(t.headers))


def openapi_tools(*, actor: Actor, document: str) -> list[HttpToolView]:
    """The operations of an OpenAPI document, to pick from (nothing is saved)."""
    actor.require_role(Role.builder, "import OpenAPI tools")
    try:
        specs = openapi_operations(document)
    except ValueError as exc:
        raise AgentError(str(exc)) from None
    return [HttpToolView(id=0, name=s.name, description=s.description, method=s.method,
                         url_template=s.url_template, parameters=s.parameters, headers={})
            for s in specs]


def import_openapi(*, actor: Actor, document: str, operations: Sequence[str] | None = None,
                   headers: dict[str, str] | None = None) -> list[HttpToolView]:
    """Save the picked operations (all when ``operations`` is None) as HTTP tools."""
    picked = [t for t in openapi_tools(actor=actor, document=document)
              if operations is None or t.name in operations]
    if not picked:
        raise AgentError("None of the picked operations is in the document.")
    return [create_http_tool(actor=actor, name=t.name, url_template=t.url_template,
                             method=t.method, description=t.description,
                             parameters=t.parameters, headers=headers) for t in picked]


def list_http_tools(*, actor: Actor) -> list[HttpToolView]:
    actor.require_role(Role.builder, "see HTTP tools")
    with session_scope() as session:
        return [_http_view(t) for t in session.execute(select(HttpTool).where(
            HttpTool.workspace_id == actor.workspace_id).order_by(HttpTool.name)).scalars()]


def delete_http_tool(*, actor: Actor, name: str) -> None:
    actor.require_role(Role.builder, "delete HTTP tools")
    with session_scope() as session:
        row = session.execute(select(HttpTool).where(
            HttpTool.workspace_id == actor.workspace_id, HttpTool.name == name)).scalar_one_or_none()
        if row is None:
            raise AgentError(f"No HTTP tool {name!r}.")
        record(actor, "delete", "http_tool", row.id, {"name": name}, session=session)
        session.delete(row)


def _mcp_spec(s: McpServer) -> McpServerSpec:
    return McpServerSpec(name=s.name, transport=s.transport, command=s.command,
                         args=list(s.args), url=s.url, headers=dict(s.headers))


def add_mcp_server(*, actor: Actor, name: str, transport: str, command: str = "",
                   args: Sequence[str] = (), url: str = "",
                   headers: dict[str, str] | None = None) -> McpServerView:
    """Register an MCP server. A local command runs on the studio's machines, so only admins
    add stdio servers; builders add URLs (checked by the SSRF guard when used)."""
    actor.require_role(Role.builder, "add MCP servers")
    if transport == "stdio":
        actor.require_role(Role.admin, "add MCP servers that run a local command")
    if not NAME_RE.match(name.strip()):
        raise AgentError("An MCP server's name starts with a letter and has letters, digits, "
                         "_ or - (e.g. files).")
    try:
        spec = McpServerSpec(name=name.strip(), transport=transport, command=command,
                             args=list(args), url=url.strip(), headers=headers or {})
    except ValueError as exc:
        raise AgentError(str(exc)) from None
    try:
        with session_scope() as session:
            row = McpServer(name=spec.name, transport=spec.transport, command=spec.command,
                            args=spec.args, url=spec.url, headers=spec.headers,
                            workspace_id=actor.workspace_id, created_by=actor.user_id)
            session.add(row)
            session.flush()
            record(actor, "create", "mcp_server", row.id,
                   {"name": spec.name, "transport": transport}, session=session)
            return McpServerView(id=row.id, name=row.name, transport=row.transport,
                                 command=row.command, args=list(row.args), url=row.url)
    except IntegrityError:
        raise AgentError(f"An MCP server named {name!r} already exists.") from None


def list_mcp_servers(*, actor: Actor) -> list[McpServerView]:
    actor.require_role(Role.builder, "see MCP servers")
    with session_scope() as session:
        return [McpServerView(id=s.id, name=s.name, transport=s.transport, command=s.command,
                              args=list(s.args), url=s.url)
                for s in session.execute(select(McpServer).where(
                    McpServer.workspace_id == actor.workspace_id)
                    .order_by(McpServer.name)).scalars()]


def delete_mcp_server(*, actor: Actor, name: str) -> None:
    actor.require_role(Role.builder, "delete MCP servers")
    with session_scope() as session:
        row = session.execute(select(McpServer).where(
            McpServer.workspace_id == actor.workspace_id, McpServer.name == name)
        ).scalar_one_or_none()
        if row is None:
            raise AgentError(f"No MCP server {name!r}.")
        record(actor, "delete", "mcp_server", row.id, {"name": name}, session=session)
        session.delete(row)


def allow_host(*, actor: Actor, host: str) -> list[str]:
    """Let HTTP and MCP tools reach ``host`` although it is private or local."""
    actor.require_role(Role.admin, "allow-list hosts for tools")
    host = host.strip().lower().strip("[]").rstrip(".")
    if not host or "/" in host or " " in host:
        raise AgentError("Give a host name or address only, e.g. wiki.intranet or 10.0.0.5.")
    with session_scope() as session:
        if session.get(AllowedHost, host) is None:
            session.add(AllowedHost(host=host, created_by=actor.user_id))
            record(actor, "update", "tool_allow_list", host, {"allowed": host}, session=session)
        session.flush()
        return _allowed_hosts(session)


def disallow_host(*, actor: Actor, host: str) -> list[str]:
    actor.require_role(Role.admin, "change the tools' allow-list")
    with session_scope() as session:
        session.execute(delete(AllowedHost).where(AllowedHost.host == host.strip().lower()))
        record(actor, "update", "tool_allow_list", host, {"removed": host}, session=session)
        return _allowed_hosts(session)


def list_allowed_hosts(*, actor: Actor) -> list[str]:
    actor.require_role(Role.builder, "see the tools' allow-list")
    with session_scope() as session:
        return sorted(_allowed_hosts(session))


def _knowledge_hits(actor: Actor, cfg: AgentConfig, query: str) -> list[dict[str, Any]]:
    from backend.services import knowledge  # type: ignore[attr-defined,unused-ignore]

    hits: list[dict[str, Any]] = []
    for kb in cfg.knowledge_bases:
        for h in knowledge.search(actor=actor, kb=kb, query=query, k=cfg.kb_top_k,
                                  threshold=cfg.kb_threshold):
            d = h.to_dict()
            d["knowledge_base"] = kb
            hits.append(d)
    hits.sort(key=lambda h: -float(h.get("score") or 0))
    return hits[:cfg.kb_top_k]


@dataclass
class _ToolRows:
    """What an agent's HTTP and MCP tools are built from (read with the agent's own rows)."""

    allowed: list[str] = field(default_factory=list)
    https: dict[str, HttpToolSpec] = field(default_factory=dict)
    servers: dict[str, McpServerSpec] = field(default_factory=dict)


def _tool_rows(session: Session, actor: Actor, cfg: AgentConfig) -> _ToolRows:
    http_names = [n[5:] for n in cfg.tools if n.startswith("http:")]
    servers = [n[4:].partition("/")[0] for n in cfg.tools if n.startswith("mcp:")]
    if not http_names and not servers:
        return _ToolRows()
    rows = _ToolRows(allowed=_allowed_hosts(session))
    if http_names:
        for t in session.execute(select(HttpTool).where(
                HttpTool.workspace_id == actor.workspace_id,
                HttpTool.name.in_(http_names))).scalars():
            rows.https[t.name] = HttpToolSpec(
                name=t.name, description=t.description, method=t.method,
                url_template=t.url_template, parameters=dict(t.parameters),
                headers=dict(t.headers))
    if servers:
        for m in session.execute(select(McpServer).where(
                McpServer.workspace_id == actor.workspace_id,
                McpServer.name.in_(servers))).scalars():
            rows.servers[m.name] = _mcp_spec(m)
    return rows


def _build_tools(actor: Actor, cfg: AgentConfig, rows: _ToolRows | None = None
                 ) -> list[AgentTool]:
    from backend.services.secrets import reveal_secret

    tools: list[AgentTool] = []
    names = list(cfg.tools)
    if cfg.knowledge_bases and cfg.kb_mode in ("tool", "both") and KNOWLEDGE_TOOL not in names:
        names.append(KNOWLEDGE_TOOL)
    if rows is None:
        with session_scope() as session:
            rows = _tool_rows(session, actor, cfg)
    allowed, https, servers = rows.allowed, rows.https, rows.servers
    mcp_listed: dict[str, list[McpToolInfo]] = {}
    system = Actor.system(actor.workspace_id)
    for name in names:
        if name in BUILTIN_TOOLS:
            tools.append(BUILTIN_TOOLS[name]())
        elif name == KNOWLEDGE_TOOL:
            if not cfg.knowledge_bases:
                continue

            def search(args: dict[str, Any]) -> ToolOutput:
                query = str(args.get("query") or "").strip()
                if not query:
                    raise ToolError("Give a query to search for.")
                hits = _knowledge_hits(actor, cfg, query)
                if not hits:
                    return ToolOutput(text="Nothing relevant was found.")
                text = "\n\n".join(f"[{h.get('source')}] {h.get('text')}" for h in hits)
                return ToolOutput(text=text, sources=hits)

            tools.append(AgentTool(
                name=KNOWLEDGE_TOOL, kind="knowledge", run=search,
                description=("Search the knowledge bases (" + ", ".join(cfg.knowledge_bases)
                             + ") for passages about a query."),
                parameters={"type": "object", "properties": {"query": {"type": "string"}},
                            "required": ["query"]}))
        elif name.startswith("http:"):
            spec = https.get(name[5:])
            if spec is None:
                raise AgentError(f"The agent uses the HTTP tool {name[5:]!r}, which no longer "
                                 "exists; remove it from the agent's tools.")
            tools.append(http_tool(
                spec, allowed_hosts=allowed, timeout_s=cfg.tool_timeout_s,
                max_bytes=cfg.tool_max_chars * 4,
                secret_value=lambda n: reveal_secret(actor=system, name=n)))
        elif name.startswith("mcp:"):
            server, _, tool_name = name[4:].partition("/")
            spec_m = servers.get(server)
            if spec_m is None:
                raise AgentError(f"The agent uses the MCP server {server!r}, which no longer "
                                 "exists.")
            if server not in mcp_listed:
                mcp_listed[server] = mcp_list_tools(spec_m, allowed_hosts=allowed)
            info = next((i for i in mcp_listed[server] if i.name == tool_name), None)
            if info is None:
                raise AgentError(f"The MCP server {server!r} has no tool {tool_name!r}.")
            tools.append(mcp_tool(spec_m, info, allowed_hosts=allowed,
                                  timeout_s=cfg.tool_timeout_s))
    return tools


# ------------------------------------------------------------------------------ running

def _system_prompt(actor: Actor, cfg: AgentConfig) -> str:
    if cfg.saved_prompt:
        from backend.services import prompts  # type: ignore[attr-defined,unused-ignore]

        p = prompts.get_prompt(actor=actor, name=cfg.saved_prompt,
                               version=cfg.saved_prompt_version)
        text = p.system or p.template  # the saved system text (or a template without one)
        if text.strip():
            return text
    return cfg.system_prompt


@dataclass
class _RunRow:
    """What a turn reads of its agent, the version asked for and the model the config names."""

    id: int
    name: str
    workspace_id: int
    config: dict[str, Any]
    published_version: int | None
    version: int | None  # the version's number, None for the draft or when there is none
    version_config: dict[str, Any] | None
    model: Any  # the model's columns (what ``models.spec_of`` reads), None when none matched


_MODEL_COLUMNS = ("name", "kind", "source", "base_url", "remote_model", "api_key_encrypted",
                  "capabilities", "default_params")


def _prompt_budget(cfg: AgentConfig, model: Any, tools: Sequence[AgentTool]) -> Any:
    """How many tokens a question may use with this model (a spec or a registry row; None:
    an unknown model, estimated): its context window, or the agent's smaller context budget,
    less the longest answer asked for."""
    import json

    from backend.agents.packing import model_budget

    defaults = dict(getattr(model, "default_params", None) or {})
    answer = cfg.params.get("max_new_tokens") or defaults.get("max_new_tokens")
    local = model is not None and getattr(model, "kind", "") in ("local", "produced")
    extra = json.dumps([t.spec() for t in tools]) if tools else ""
    return model_budget(name=getattr(model, "name", None) or cfg.model or "the model",
                        source=getattr(model, "source", None) if local else None,
                        answer_tokens=int(answer) if answer else None,
                        context_budget=cfg.context_budget, extra_text=extra)


@cache
def _run_statement(version: str, by: str) -> Any:
    """The one statement a turn reads its agent with: columns only (no ORM objects to build),
    made once per kind of lookup ("draft", "published" or "number"; by "id" or "name")."""
    if version == "draft":
        wanted: Any = false()
        model_name: Any = Agent.config["model"].astext
    else:
        number: Any = Agent.published_version if version == "published" \
            else bindparam("number", type_=Integer)
        wanted = AgentVersion.version == number
        model_name = AgentVersion.config["model"].astext
    stmt = (select(Agent.id, Agent.name, Agent.workspace_id, Agent.config,
                   Agent.published_version, AgentVersion.version.label("v_version"),
                   AgentVersion.config.label("v_config"),
                   *(getattr(RegisteredModel, c).label(f"m_{c}") for c in _MODEL_COLUMNS))
            .select_from(Agent)
            .outerjoin(AgentVersion, and_(AgentVersion.agent_id == Agent.id, wanted))
            .outerjoin(RegisteredModel, and_(RegisteredModel.workspace_id == Agent.workspace_id,
                                             RegisteredModel.name == model_name)))
    if by == "id":
        return stmt.where(Agent.id == bindparam("ref"))
    return stmt.where(Agent.name == bindparam("ref"), Agent.workspace_id == bindparam("ws"))


def _load_for_run(session: Session, actor: Actor, agent: int | str, version: str | int
                  ) -> _RunRow:
    """The agent (found as ``_load`` finds it), the version asked for ("published" or a
    number) and the model its config names, in one statement."""
    kind = version if version in ("draft", "published") else "number"
    params: dict[str, Any] = {} if kind != "number" else {"number": int(version)}
    found: Any = None
    number = as_id(agent)
    if number is not None:
        found = session.execute(_run_statement(kind, "id"), {**params, "ref": number}).first()
        if found is not None and found.workspace_id != actor.workspace_id \
                and not actor.is_admin:
            found = None
    if found is None and isinstance(agent, str):
        found = session.execute(_run_statement(kind, "name"), {
            **params, "ref": agent.strip(), "ws": actor.workspace_id}).first()
    if found is None:
        raise AgentNotFound(f"No agent {agent!r} in this workspace. `studio agents list` shows "
                            "them.")
    model = SimpleNamespace(**{c: getattr(found, f"m_{c}") for c in _MODEL_COLUMNS}) \
        if found.m_name is not None else None
    return _RunRow(id=found.id, name=found.name, workspace_id=found.workspace_id,
                   config=found.config, published_version=found.published_version,
                   version=found.v_version, version_config=found.v_config, model=model)


def _config_for(session: Session, actor: Actor, agent: int | str, version: str | int
                ) -> tuple[_RunRow, AgentConfig, int | None]:
    """The agent, the config of the version asked for and its number (None for the draft);
    ``row.model`` is the model the config names when a model has that name."""
    a = _load_for_run(session, actor, agent, version)
    if version == "published" and a.version_config is not None:
        cfg = {k: v for k, v in a.version_config.items() if not k.startswith("_")}
        return a, AgentConfig.from_dict(cfg), a.version
    if version == "draft":
        if not actor.has_role(Role.builder):
            raise PermissionDenied(f"{actor.username} ({actor.role.value}) may not chat with "
                                   "drafts: it needs the builder role. Ask an admin.")
        return a, AgentConfig.from_dict(a.config), None
    number = a.published_version if version == "published" else int(version)
    if number is None:
        if not actor.has_role(Role.builder):
            raise AgentNotFound(f"No published bot {agent!r} in this workspace.")
        raise AgentError(f"The agent {a.name!r} is not published yet; publish it first "
                         "(`studio agents publish`).")
    if a.version_config is None:
        raise AgentError(f"The agent {a.name!r} has no version {number}.")
    cfg = {k: v for k, v in a.version_config.items() if not k.startswith("_")}
    return a, AgentConfig.from_dict(cfg), number


class AgentRun:
    """One answer in progress: iterate for the answer's text pieces; ``result`` (an
    :class:`AgentAnswer`) and ``conversation_id`` (for a new conversation) are set once the
    iteration ends."""

    _END = object()

    def __init__(self, agent: str, conversation_id: int | None) -> None:
        self.agent = agent
        self.conversation_id = conversation_id
        self.result: AgentAnswer | None = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._error: BaseException | None = None
        self._stop = threading.Event()

    def stop(self) -> None:
        """Stop the answer at the next token (the model's generation stops with it)."""
        self._stop.set()

    def _emit(self, text: str) -> None:
        if self._stop.is_set():
            raise AgentStopped("The answer was stopped (the client left).")
        self._queue.put(text)

    def __iter__(self) -> Iterator[str]:
        while True:
            item = self._queue.get()
            if item is self._END:
                if self._error is not None:
                    raise self._error
                return
            yield item

    def collect(self) -> AgentAnswer:
        for _ in self:
            pass
        assert self.result is not None
        return self.result


def stream_agent(*, actor: Actor, agent: int | str, question: str,
                 conversation_id: int | None = None, version: str | int = "published",
                 channel: str = "studio", history: Sequence[dict[str, str]] | None = None,
                 llm: Any = None, placement: str = "auto",
                 max_tokens: int | None = None,
                 sampling: dict[str, Any] | None = None) -> AgentRun:
    """Ask an agent. ``version``: "published" (anyone in the workspace), "draft" or a number
    (builders). ``history`` replaces the stored conversation as memory (the API sends its own
    messages). ``llm``: a LangChain chat model to use instead of the agent's (tests, benches).
    ``max_tokens``: the caller's limit on each model call of the turn (the API's
    ``max_tokens``); the agent's own ``max_new_tokens`` still applies when lower. ``sampling``:
    the caller's ``temperature``, ``top_p`` and ``seed``, which replace the agent's (the same
    request gets the same answer, streamed or not)."""
    from backend.agents.runtime import Tracer, Turn

    question = (question or "").replace("\x00", "").strip()
    if not question:
        raise AgentError("Ask a question.")
    # A user-role member may ask a published bot, and the bot reads what it was built with
    # (its model, prompt, knowledge bases) on the builder's terms; the user may not reach those
    # directly (the services refuse them), and the turn is stored as the user's.
    runner = actor if actor.has_role(Role.builder) else replace(actor, role=Role.builder)
    # One session reads everything the turn needs (agent, version and model in one statement,
    # then conversation and tool rows where there are any), in autocommit: no BEGIN and COMMIT
    # round trips. Only reads: everything the turn writes (conversation, both messages, trace)
    # is written in one transaction when it ends, so nothing delays the first token.
    with read_scope() as session:
        a, cfg, number = _config_for(session, actor, agent, version)
        # what the config names is read in the agent's own workspace, an admin's turn too
        # (an admin's id would otherwise reach another workspace's model or knowledge base)
        runner = replace(runner, role=Role.builder, workspace_id=a.workspace_id)
        spec = None
        if llm is None:
            from backend.services.models import model_spec, spec_of

            # the model came with the agent (one statement) when the config names it by name
            ref = cfg.model.strip()
            if a.model is not None and a.model.name == ref and as_id(ref) is None:
                spec = spec_of(a.model, "chat")
            else:
                spec = model_spec(actor=runner, model=cfg.model, capability="chat",
                                  session=session)
        tool_rows = _tool_rows(session, actor, cfg)
        past: list[dict[str, Any]] = []
        summary, summarized_upto = "", 0
        if conversation_id is not None:
            conv = session.get(AgentConversation, conversation_id)
            if conv is None or conv.agent_id != a.id or (
                    conv.created_by != actor.user_id and not actor.has_role(Role.builder)):
                raise AgentError(f"No conversation #{conversation_id} with {a.name!r}.")
            summary, summarized_upto = conv.summary, conv.summarized_upto
            if history is None:
                rows = session.execute(select(AgentMessage).where(
                    AgentMessage.conversation_id == conv.id).order_by(AgentMessage.id)).scalars()
                past = [{"role": m.role, "content": m.content, "id": m.id} for m in rows]
        if history is not None:
            past = [{"role": m["role"], "content": m["content"]} for m in history
                    if m.get("role") in ("user", "assistant")]
        agent_id, agent_name, workspace_id = a.id, a.name, a.workspace_id
        conv_id = conversation_id
        model_row = a.model
    keep = cfg.memory_turns * 2
    window = past[-keep:] if keep else []
    older = past[:-keep] if keep else past
    system = _system_prompt(runner, cfg)
    tools = _build_tools(runner, cfg, tool_rows)
    tracer = Tracer(secrets=[s for t in tools for s in t.secrets])
    if llm is None:
        from backend.services.chat import chat_model

        assert spec is not None
        llm = chat_model(actor=runner, model=spec, placement=placement,  # type: ignore[arg-type]
                         **_with_limit({**cfg.params, **(sampling or {})}, max_tokens))
    retrieve = (lambda q: _knowledge_hits(runner, cfg, q)) if cfg.knowledge_bases else None
    run = AgentRun(agent_name, conv_id)
    turn = Turn(llm, cfg, question=question, system=system,
                history=[{"role": m["role"], "content": m["content"]} for m in window],
                summary=summary if cfg.memory_summary else "", tools=tools, retrieve=retrieve,
                tracer=tracer, on_token=run._emit,
                budget=_prompt_budget(cfg, spec or model_row, tools))
    started = time.perf_counter()
    # The first model call goes out now, when it is known (no knowledge to retrieve into its
    # prompt first): the model works on it while the answer's thread and its graph start.
    turn.prime()

    def work() -> None:
        from backend.agents.runtime import summarize

        error: BaseException | None = None
        answer = None
        try:
            answer = turn.run()
        except BaseException as exc:  # noqa: BLE001 - stored in the trace, raised to the reader
            error = exc
        new_summary = None
        if error is None and cfg.memory_summary and history is None:
            fresh = [m for m in older if m.get("id", 0) > summarized_upto]
            if fresh:
                try:
                    new_summary = (summarize(llm, summary, fresh, tracer), fresh[-1]["id"])
                except Exception:  # noqa: BLE001 - the answer stands; the summary waits
                    new_summary = None
        total_ms = (time.perf_counter() - started) * 1000
        try:
            result = _store_turn(
                actor, agent_id=agent_id, agent_name=agent_name, workspace_id=workspace_id,
                conv_id=conv_id, channel=channel, version=number, question=question,
                tracer=tracer, answer=answer, error=error, total_ms=total_ms,
                new_summary=new_summary)
            run.result = result
            run.conversation_id = result.conversation_id
        except BaseException as exc:  # noqa: BLE001
            error = error or exc
        run._error = error
        run._queue.put(AgentRun._END)

    try:
        threading.Thread(target=work, name=f"agent-{agent_id}", daemon=True).start()
    except BaseException:
        turn.discard()
        raise
    return run


def _with_limit(params: dict[str, Any], max_tokens: int | None) -> dict[str, Any]:
    """The agent's generation settings with the caller's token limit (the lower one wins)."""
    if max_tokens is None:
        return dict(params)
    out = {k: v for k, v in params.items() if k not in ("max_tokens", "max_new_tokens")}
    own = params.get("max_new_tokens", params.get("max_tokens"))
    out["max_tokens"] = min(own, max_tokens) if isinstance(own, int) and own > 0 else max_tokens
    return out


def _store_turn(actor: Actor, *, agent_id: int, agent_name: str, workspace_id: int,
                conv_id: int | None, channel: str, version: int | None, question: str,
                tracer: Any, answer: Any, error: BaseException | None, total_ms: float,
                new_summary: tuple[str, int] | None) -> AgentAnswer:
    with session_scope() as session:
        if conv_id is None:
            conv = AgentConversation(agent_id=agent_id, title=question[:200],
                                     channel=channel[:16], workspace_id=workspace_id,
                                     created_by=actor.user_id)
            session.add(conv)
            session.flush()
            conv_id = conv.id
        session.add(AgentMessage(conversation_id=conv_id, role="user", content=question))
        trace = AgentTrace(
            agent_id=agent_id, workspace_id=workspace_id, conversation_id=conv_id,
            version=version, question=question[:10000], status="error" if error else "ok",
            error=tracer.scrub(f"{type(error).__name__}: {error}") if error else None,
            plan=answer.plan if answer is not None and answer.plan else None,
            prompt_tokens=tracer.prompt_tokens, completion_tokens=tracer.completion_tokens,
            total_ms=total_ms)
        session.add(trace)
        session.flush()
        for s in tracer.steps:
            session.add(AgentTraceStep(trace_id=trace.id, **s))
        if answer is None:
            return AgentAnswer(answer="", sources=[], steps=list(tracer.steps), plan=[],
                               trace_id=trace.id, conversation_id=conv_id, message_id=0,
                               prompt_tokens=tracer.prompt_tokens,
                               completion_tokens=tracer.completion_tokens, total_ms=total_ms,
                               agent=agent_name, version=version)
        msg = AgentMessage(conversation_id=conv_id, role="assistant", content=answer.answer,
                           sources=_jsonable(answer.sources), trace_id=trace.id,
                           tokens=tracer.completion_tokens)
        session.add(msg)
        row = session.get(AgentConversation, conv_id)
        if row is not None:
            row.updated_at = datetime.now(UTC)
            if new_summary is not None:
                row.summary, row.summarized_upto = new_summary
        session.flush()
        return AgentAnswer(
            answer=answer.answer, sources=_jsonable(answer.sources), steps=list(tracer.steps),
            plan=list(answer.plan), trace_id=trace.id, conversation_id=conv_id,
            message_id=msg.id, prompt_tokens=tracer.prompt_tokens,
            completion_tokens=tracer.completion_tokens, total_ms=total_ms, agent=agent_name,
            version=version, finish_reason=tracer.finish_reason)


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str).replace("\\u0000", ""))


def run_agent(*, actor: Actor, agent: int | str, question: str,
              conversation_id: int | None = None, version: str | int = "published",
              channel: str = "studio", llm: Any = None) -> AgentAnswer:
    """The whole answer at once."""
    return stream_agent(actor=actor, agent=agent, question=question,
                        conversation_id=conversation_id, version=version, channel=channel,
                        llm=llm).collect()


# ------------------------------------------------------------------- conversations, traces

def list_conversations(*, actor: Actor, agent: int | str | None = None, search: str = "",
                       limit: int = 100) -> list[ConversationView]:
    """Builders: every conversation of the workspace; users: their own."""
    with session_scope() as session:
        count = (select(func.count()).select_from(AgentMessage)
                 .where(AgentMessage.conversation_id == AgentConversation.id)
                 .scalar_subquery())
        stmt = (select(AgentConversation, Agent.name, count)
                .join(Agent, Agent.id == AgentConversation.agent_id)
                .where(AgentConversation.workspace_id == actor.workspace_id)
                .order_by(AgentConversation.updated_at.desc()).limit(limit))
        if agent is not None:
            stmt = stmt.where(AgentConversation.agent_id == _load(session, actor, agent).id)
        if not actor.has_role(Role.builder):
            stmt = stmt.where(AgentConversation.created_by == actor.user_id)
        if search.strip():
            stmt = stmt.where(AgentConversation.title.ilike(f"%{search.strip()}%"))
        return [ConversationView(id=c.id, agent_id=c.agent_id, agent=name, title=c.title,
                                 channel=c.channel, created_by=c.created_by,
                                 created_at=c.created_at, updated_at=c.updated_at, messages=n)
                for c, name, n in session.execute(stmt)]


def _conversation(session: Session, actor: Actor, conversation_id: int) -> AgentConversation:
    conv = session.get(AgentConversation, conversation_id)
    if conv is None or conv.workspace_id != actor.workspace_id or (
            not actor.has_role(Role.builder) and conv.created_by != actor.user_id):
        raise AgentError(f"No conversation #{conversation_id}.")
    return conv


def get_messages(*, actor: Actor, conversation_id: int) -> list[MessageView]:
    with session_scope() as session:
        conv = _conversation(session, actor, conversation_id)
        ratings = dict(session.execute(
            select(AgentFeedback.message_id, AgentFeedback.rating)
            .join(AgentMessage, AgentMessage.id == AgentFeedback.message_id)
            .where(AgentMessage.conversation_id == conv.id,
                   AgentFeedback.user_id == actor.user_id)).all())  # type: ignore[arg-type]
        return [MessageView(id=m.id, role=m.role, content=m.content, sources=list(m.sources),
                            trace_id=m.trace_id, created_at=m.created_at,
                            rating=ratings.get(m.id))
                for m in session.execute(select(AgentMessage).where(
                    AgentMessage.conversation_id == conv.id).order_by(AgentMessage.id)).scalars()]


def delete_conversation(*, actor: Actor, conversation_id: int) -> None:
    with session_scope() as session:
        conv = _conversation(session, actor, conversation_id)
        if conv.created_by != actor.user_id:
            actor.require_role(Role.builder, "delete others' conversations")
        session.delete(conv)


def get_trace(*, actor: Actor, trace_id: int) -> TraceView:
    actor.require_role(Role.builder, "see agent traces")
    with session_scope() as session:
        t = session.get(AgentTrace, trace_id)
        if t is None or (t.workspace_id != actor.workspace_id and not actor.is_admin):
            raise AgentError(f"No trace #{trace_id}.")
        steps = session.execute(select(AgentTraceStep).where(AgentTraceStep.trace_id == t.id)
                                .order_by(AgentTraceStep.seq)).scalars()
        return TraceView(
            id=t.id, agent_id=t.agent_id, conversation_id=t.conversation_id, version=t.version,
            question=t.question, status=t.status, error=t.error, plan=t.plan,
            prompt_tokens=t.prompt_tokens, completion_tokens=t.completion_tokens,
            total_ms=t.total_ms, created_at=t.created_at,
            steps=[{"seq": s.seq, "kind": s.kind, "name": s.name, "input": s.input,
                    "output": s.output, "error": s.error, "latency_ms": s.latency_ms,
                    "prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens}
                   for s in steps])


# -------------------------------------------------------------------------------- feedback

def give_feedback(*, actor: Actor, message_id: int, rating: int, comment: str = "") -> None:
    """Thumbs up (1) or down (-1) on an answer, with an optional comment (one per user)."""
    if rating not in (1, -1):
        raise AgentError("A rating is 1 (thumbs up) or -1 (thumbs down).")
    with session_scope() as session:
        msg = session.get(AgentMessage, message_id)
        conv = _conversation(session, actor, msg.conversation_id) if msg else None
        if msg is None or conv is None or msg.role != "assistant":
            raise AgentError(f"No answer #{message_id}.")
        row = session.execute(select(AgentFeedback).where(
            AgentFeedback.message_id == msg.id, AgentFeedback.user_id == actor.user_id)
        ).scalar_one_or_none()
        if row is None:
            row = AgentFeedback(message_id=msg.id, agent_id=conv.agent_id,
                                workspace_id=conv.workspace_id, user_id=actor.user_id,
                                rating=rating)
            session.add(row)
        row.rating = rating
        row.comment = comment.strip()[:5000]


def list_feedback(*, actor: Actor, agent: int | str | None = None, rating: int | None = None,
                  search: str = "", limit: int = 200) -> list[FeedbackView]:
    """Feedback to review (and, later, to turn into fine-tuning data)."""
    actor.require_role(Role.builder, "review feedback")
    from backend.models.accounts import User

    with session_scope() as session:
        answer = AgentMessage
        stmt = (select(AgentFeedback, Agent.name, answer.content, answer.conversation_id,
                       answer.id, User.username)
                .join(Agent, Agent.id == AgentFeedback.agent_id)
                .join(answer, answer.id == AgentFeedback.message_id)
                .outerjoin(User, User.id == AgentFeedback.user_id)
                .where(AgentFeedback.workspace_id == actor.workspace_id)
                .order_by(AgentFeedback.created_at.desc()).limit(limit))
        if agent is not None:
            stmt = stmt.where(AgentFeedback.agent_id == _load(session, actor, agent).id)
        if rating is not None:
            stmt = stmt.where(AgentFeedback.rating == rating)
        if search.strip():
            like = f"%{search.strip()}%"
            stmt = stmt.where(or_(AgentFeedback.comment.ilike(like), answer.content.ilike(like)))
        out = []
        for fb, name, content, conv_id, msg_id, username in session.execute(stmt):
            question = session.execute(select(AgentMessage.content).where(
                AgentMessage.conversation_id == conv_id, AgentMessage.id < msg_id,
                AgentMessage.role == "user").order_by(AgentMessage.id.desc()).limit(1)
            ).scalar_one_or_none() or ""
            out.append(FeedbackView(id=fb.id, message_id=fb.message_id, agent_id=fb.agent_id,
                                    agent=name, rating=fb.rating, comment=fb.comment,
                                    question=question, answer=content,
                                    username=username or "", created_at=fb.created_at))
        return out


def usage(*, actor: Actor, days: int = 30, agent: int | str | None = None
          ) -> list[dict[str, Any]]:
    """Per agent and day: conversations, messages, tokens, thumbs up and down."""
    actor.require_role(Role.builder, "see agent usage")
    since = datetime.now(UTC) - timedelta(days=days)
    with session_scope() as session:
        agent_id = _load(session, actor, agent).id if agent is not None else None
        day = func.date_trunc("day", AgentMessage.created_at)
        stmt = (select(Agent.name, day, func.count(func.distinct(AgentConversation.id)),
                       func.count(AgentMessage.id), func.coalesce(func.sum(AgentMessage.tokens), 0))
                .join(AgentConversation, AgentConversation.agent_id == Agent.id)
                .join(AgentMessage, AgentMessage.conversation_id == AgentConversation.id)
                .where(Agent.workspace_id == actor.workspace_id, AgentMessage.created_at >= since)
                .group_by(Agent.name, day))
        if agent_id is not None:
            stmt = stmt.where(Agent.id == agent_id)
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for name, d, convs, msgs, toks in session.execute(stmt):
            rows[(name, d.date().isoformat())] = {
                "agent": name, "day": d.date().isoformat(), "conversations": convs,
                "messages": msgs, "tokens": int(toks), "thumbs_up": 0, "thumbs_down": 0}
        fday = func.date_trunc("day", AgentFeedback.created_at)
        fstmt = (select(Agent.name, fday, AgentFeedback.rating, func.count())
                 .join(Agent, Agent.id == AgentFeedback.agent_id)
                 .where(AgentFeedback.workspace_id == actor.workspace_id,
                        AgentFeedback.created_at >= since)
                 .group_by(Agent.name, fday, AgentFeedback.rating))
        if agent_id is not None:
            fstmt = fstmt.where(Agent.id == agent_id)
        for name, d, rating, n in session.execute(fstmt):
            key = (name, d.date().isoformat())
            row = rows.setdefault(key, {"agent": name, "day": key[1], "conversations": 0,
                                        "messages": 0, "tokens": 0, "thumbs_up": 0,
                                        "thumbs_down": 0})
            row["thumbs_up" if rating > 0 else "thumbs_down"] += n
        return sorted(rows.values(), key=lambda r: (r["day"], r["agent"]))


# ------------------------------------------------------------------------- API key limits

def set_key_limit(*, actor: Actor, key_id: int, agent: int | str | None = None,
                  rate_per_min: int | None = None) -> KeyLimit:
    """Limit an API key to one published agent and/or ``rate_per_min`` requests a minute."""
    if rate_per_min is not None and not 1 <= rate_per_min <= 100_000:
        raise AgentError("The rate is a whole number of requests per minute, 1 to 100000.")
    with session_scope() as session:
        key = session.get(ApiKey, key_id)
        if key is None or (key.user_id != actor.user_id and not actor.is_admin):
            raise AgentError(f"No API key #{key_id} of yours.")
        key_actor = Actor(user_id=actor.user_id, username=actor.username, role=actor.role,
                          workspace_id=key.workspace_id)
        agent_row = _load(session, key_actor, agent) if agent is not None else None
        row = session.get(ApiKeyLimit, key_id) or ApiKeyLimit(api_key_id=key_id)
        row.agent_id = agent_row.id if agent_row else None
        row.rate_per_min = rate_per_min
        session.add(row)
        record(actor, "update", "api_key", key_id,
               {"agent": agent_row.name if agent_row else None, "rate_per_min": rate_per_min},
               workspace_id=key.workspace_id, session=session)
        return KeyLimit(api_key_id=key_id, agent_id=row.agent_id,
                        agent=agent_row.name if agent_row else None, rate_per_min=rate_per_min)


def key_limit(api_key: str) -> KeyLimit | None:
    """The limits of an API key (None: unlimited). For the API, after it authenticated the key."""
    with session_scope() as session:
        row = session.execute(
            select(ApiKeyLimit, Agent.name)
            .join(ApiKey, ApiKey.id == ApiKeyLimit.api_key_id)
            .outerjoin(Agent, Agent.id == ApiKeyLimit.agent_id)
            .where(ApiKey.key_hash == tokens.digest(api_key.strip()))).first()
        if row is None:
            return None
        lim, name = row
        return KeyLimit(api_key_id=lim.api_key_id, agent_id=lim.agent_id, agent=name,
                        rate_per_min=lim.rate_per_min)


def check_rate(limit: KeyLimit) -> None:
    """Count one request against the key's rate: at most ``rate_per_min`` in any 60 s (a
    sliding window in Redis, one atomic script); raise ``RateLimited`` with the seconds to wait
    when it is used up (nothing is counted then). Call it only for requests that are served."""
    if not limit.rate_per_min:
        return
    from backend.accounts import keyrate
    from backend.services.chat import channel_redis

    wait = keyrate.take(channel_redis(), limit.api_key_id, limit.rate_per_min)
    if wait:
        raise RateLimited(int(wait), limit.rate_per_min)


def published_agents(*, actor: Actor) -> list[AgentView]:
    """Published bots of the actor's workspace (what ``/v1/models`` lists next to models)."""
    return list_agents(actor=actor, published_only=True)


# ------------------------------------------------------------------ what the forms offer

def chat_model_names(*, actor: Actor) -> list[str]:
    """Registered chat models an agent may talk with."""
    from backend.services.models import list_models

    return [m.name for m in list_models(actor=actor, capability="chat")]


def knowledge_base_names(*, actor: Actor) -> list[str]:
    """The workspace's knowledge bases (none while the knowledge service is absent)."""
    try:
        from backend.services import knowledge  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return []
    return [str(getattr(kb, "name", kb)) for kb in knowledge.list_knowledge_bases(actor=actor)]


def saved_prompt_names(*, actor: Actor) -> list[str]:
    """The playground's saved prompts (none while the prompts service is absent)."""
    try:
        from backend.services import prompts  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return []
    return [str(getattr(p, "name", p)) for p in prompts.list_prompts(actor=actor)]
