"""Agents: build bots from a model, a prompt, knowledge bases and tools; try them with each
answer's trace; publish them (the Chat page and the /v1 API serve the published version);
review feedback and usage. Business users start with the bot in three steps."""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from backend.accounts.actor import Role
from backend.services import agents as agents_service
from studio.components.agent_chat import chat_panel, history_picker, share_box
from studio.components.errors import show_error
from studio.components.page_links import page_link
from studio.components.session import current_actor
from studio.formatting import format_relative
from studio.i18n import _

actor = current_actor()
PICK = "agents_pick"
NEXT_PICK = "agents_pick_next"  # applied at the top of the next run, before the widget exists
FLASH = "agents_flash"
BOT3_MADE = "bot3_made"  # the bot the three steps made last (its links stay shown)
NEW = 0

st.title(_("Agents"))
if not actor.has_role(Role.builder):
    st.info(_("Builders make agents here. Chat with the published bots on the Chat page."))
    page_link("chat", label=_("Open the Chat page"), icon="💬")
    st.stop()

TYPE_LABELS = {"tools": _("Tool-calling loop"), "plan": _("Plan and execute")}
TOP_K_HELP = _("How many passages the search returns for each question. As many of them as fit "
               "the model's context go into the prompt, best first; the trace says how many.")
BUDGET_HELP = _("The most tokens one question may use, prompt and answer together. 0 uses the "
                "model's whole context window (8,192 tokens for a model that does not say).")
KB_MODE_LABELS = {"context": _("Retrieve on every question (with citations)"),
                  "tool": _("A search tool the model calls"), "both": _("Both")}
BUILTIN_LABELS = {"calculator": _("Calculator"), "current_datetime": _("Current date and time"),
                  "knowledge_search": _("Knowledge search")}


def _flash(kind: str, message: str) -> None:
    st.session_state[FLASH] = (kind, message)


def _tool_label(tool_id: str) -> str:
    if tool_id in BUILTIN_LABELS:
        return BUILTIN_LABELS[tool_id]
    if tool_id.startswith("http:"):
        return _("HTTP tool {name}").format(name=tool_id[5:])
    if tool_id.startswith("mcp:"):
        return _("MCP tool {name}").format(name=tool_id[4:])
    return tool_id


def _state(a: agents_service.AgentView) -> str:
    if a.published_version is None:
        return _("Draft")
    if a.has_unpublished_changes:
        return _("Published v{v}, edited since").format(v=a.published_version)
    return _("Published v{v}").format(v=a.published_version)


if NEXT_PICK in st.session_state:
    st.session_state[PICK] = st.session_state.pop(NEXT_PICK)
flash = st.session_state.pop(FLASH, None)
if flash:
    getattr(st, flash[0])(flash[1])

try:
    model_names = agents_service.chat_model_names(actor=actor)
    kb_names = agents_service.knowledge_base_names(actor=actor)
    prompt_names = agents_service.saved_prompt_names(actor=actor)
except Exception as exc:  # noqa: BLE001
    show_error(exc, doing=_("Loading the models"))
    st.stop()

tab_agents, tab_bot, tab_tools, tab_feedback, tab_usage = st.tabs(
    [_("Agents"), _("Bot in three steps"), _("Tools"), _("Feedback"), _("Usage")])


# ------------------------------------------------------------------------------ the form

def _config_form(a: agents_service.AgentView | None) -> None:
    cfg: dict[str, Any] = dict(a.config) if a else {}
    key = f"agent_form_{a.id if a else NEW}"
    try:
        tool_choices = agents_service.available_tools(actor=actor) if st.session_state.get(
            f"{key}_tools_loaded") else []
    except Exception as exc:  # noqa: BLE001
        show_error(exc, doing=_("Listing the tools"))
        tool_choices = []
    tool_ids = sorted({*(t["id"] for t in tool_choices if not t.get("error")),
                       "calculator", "current_datetime", "knowledge_search",
                       *cfg.get("tools", [])})
    if not st.session_state.get(f"{key}_tools_loaded") and st.button(
            _("Load HTTP and MCP tools"), key=f"{key}_load",
            help=_("Asks each MCP server for its tools.")):
        st.session_state[f"{key}_tools_loaded"] = True
        st.rerun()
    if not model_names:
        st.warning(_("Register a chat model on the Models page first."))
        return
    with st.form(key):
        c1, c2, c3 = st.columns([3, 1, 2])
        name = c1.text_input(_("Name"), value=a.name if a else "",
                             help=_("Also the bot's model name in the API."))
        icons = list(agents_service.ICONS)
        icon = c2.selectbox(_("Icon"), icons, index=icons.index(a.icon) if a and a.icon in icons
                            else 0)
        model = c3.selectbox(_("Model"), model_names, index=model_names.index(cfg["model"])
                             if cfg.get("model") in model_names else 0)
        description = st.text_input(_("Description"), value=a.description if a else "")
        c1, c2, c3 = st.columns(3)
        types = list(TYPE_LABELS)
        agent_type = c1.radio(_("Agent type"), types, format_func=lambda t: TYPE_LABELS[t],
                              index=types.index(cfg.get("type", "tools")))
        params = dict(cfg.get("params") or {})
        temperature = c2.slider(_("Temperature"), 0.0, 2.0,
                                float(params.get("temperature", 0.7)), 0.1)
        max_tokens = c3.number_input(_("Longest answer (tokens)"), 1, 32768,
                                     int(params.get("max_new_tokens", 512)))
        prompt_options = ["", *prompt_names]
        saved = st.selectbox(_("Saved prompt from the playground"), prompt_options,
                             index=prompt_options.index(cfg.get("saved_prompt") or "")
                             if (cfg.get("saved_prompt") or "") in prompt_options else 0,
                             format_func=lambda p: p or _("None: use the prompt below"))
        saved_version = st.number_input(_("Prompt version (0: the latest)"), 0, 10000,
                                        int(cfg.get("saved_prompt_version") or 0))
        system = st.text_area(_("System prompt"),
                              value=cfg.get("system_prompt", _("You are a helpful assistant.")))
        c1, c2 = st.columns(2)
        kbs = c1.multiselect(_("Knowledge bases"), sorted({*kb_names, *cfg.get(
            "knowledge_bases", [])}), default=cfg.get("knowledge_bases", []))
        modes = list(KB_MODE_LABELS)
        kb_mode = c2.radio(_("Use the knowledge"), modes, format_func=lambda m: KB_MODE_LABELS[m],
                           index=modes.index(cfg.get("kb_mode", "context")))
        c1, c2 = st.columns(2)
        top_k = c1.number_input(_("Passages to retrieve (top-k)"), 1, 50,
                                int(cfg.get("kb_top_k") or 4), help=TOP_K_HELP)
        budget = c2.number_input(_("Context budget in tokens (0: the model's whole context)"),
                                 0, 2_000_000, int(cfg.get("context_budget") or 0), step=256,
                                 help=BUDGET_HELP)
        c1, c2 = st.columns(2)
        citations = c1.checkbox(_("Cite sources"), value=cfg.get("citations", True))
        idk = c2.text_input(_("Said when nothing relevant is found"),
                            value=cfg.get("idk_message") or _(
                                "I'm sorry, I don't know: I found nothing about that in the "
                                "documents I can search."))
        tools = st.multiselect(_("Tools"), tool_ids, default=[t for t in cfg.get("tools", [])
                                                              if t in tool_ids],
                               format_func=_tool_label)
        c1, c2, c3 = st.columns(3)
        max_steps = c1.number_input(_("Maximum steps"), 1, 50, int(cfg.get("max_steps", 6)))
        turns = c2.number_input(_("Memory: last turns"), 0, 100, int(cfg.get("memory_turns", 6)))
        summary = c3.checkbox(_("Summarise older turns"), value=cfg.get("memory_summary", False))
        welcome = st.text_input(_("Welcome message"), value=cfg.get("welcome", ""))
        suggestions = st.text_area(_("Suggested questions (one a line)"),
                                   value="\n".join(cfg.get("suggestions", [])))
        submitted = st.form_submit_button(_("Save the draft") if a else _("Create the agent"),
                                          type="primary")
    if not submitted:
        return
    new_cfg = {**{k: v for k, v in cfg.items() if k in (
        "kb_threshold", "tool_timeout_s", "tool_max_chars")},
        "kb_top_k": int(top_k), "context_budget": int(budget) or None,
        "model": model, "type": agent_type, "system_prompt": system,
        "params": {**params, "temperature": temperature, "max_new_tokens": int(max_tokens)},
        "saved_prompt": saved or None, "saved_prompt_version": int(saved_version) or None,
        "knowledge_bases": kbs, "kb_mode": kb_mode, "citations": citations, "idk_message": idk,
        "tools": tools, "max_steps": int(max_steps), "memory_turns": int(turns),
        "memory_summary": summary, "welcome": welcome,
        "suggestions": [s for s in suggestions.splitlines() if s.strip()]}
    try:
        if a is None:
            made = agents_service.create_agent(actor=actor, name=name, config=new_cfg,
                                               description=description, icon=icon)
            st.session_state[NEXT_PICK] = made.id
            _flash("success", _("Created {name}. Try it, then publish it.").format(name=made.name))
        else:
            agents_service.update_agent(actor=actor, agent=a.id, name=name, config=new_cfg,
                                        description=description, icon=icon)
            _flash("success", _("Saved the draft. The published bot changes when you publish."))
        st.rerun()
    except Exception as exc:  # noqa: BLE001
        show_error(exc, doing=_("Saving the agent"))


# ---------------------------------------------------------------------------- agents tab

with tab_agents:
    search = st.text_input(_("Search agents"), key="agents_search",
                           placeholder=_("Name or description"))
    try:
        listed = agents_service.list_agents(actor=actor, search=search)
    except Exception as exc:  # noqa: BLE001
        show_error(exc, doing=_("Loading the agents"))
        listed = []
    if listed:
        st.dataframe([{_("Agent"): f"{a.icon} {a.name}", _("State"): _state(a),
                       _("Type"): TYPE_LABELS.get(a.config.get("type", "tools"), ""),
                       _("Model"): a.config.get("model", ""),
                       _("Changed"): format_relative(a.updated_at)} for a in listed],
                     hide_index=True, width="stretch")
    ids = [NEW, *(a.id for a in listed)]
    by_id = {a.id: a for a in listed}
    if st.session_state.get(PICK) not in ids:
        st.session_state[PICK] = ids[1] if len(ids) > 1 else NEW
    pick = st.selectbox(_("Agent"), ids, key=PICK, format_func=lambda i: _("➕ New agent")
                        if i == NEW else f"{by_id[i].icon} {by_id[i].name}")
    current = by_id.get(pick)
    if current is None:
        _config_form(None)
    else:
        st.caption(_state(current))
        b1, b2, b3, b4 = st.columns(4)
        if b1.button(_("Publish"), type="primary", icon="🚀", key="agents_publish"):
            try:
                v = agents_service.publish_agent(actor=actor, agent=current.id)
                _flash("success", _("Published {name} as version {v}.").format(
                    name=v.name, v=v.published_version))
                st.rerun()
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Publishing"))
        if b2.button(_("Duplicate"), icon="📄", key="agents_duplicate"):
            try:
                copy = agents_service.duplicate_agent(actor=actor, agent=current.id)
                st.session_state[NEXT_PICK] = copy.id
                _flash("success", _("Made {name}.").format(name=copy.name))
                st.rerun()
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Duplicating"))
        with b3.popover(_("Delete"), icon="🗑️"):
            st.write(_("Delete {name} with its conversations, traces and feedback?").format(
                name=current.name))
            if st.button(_("Delete for good"), type="primary", key="agents_delete"):
                try:
                    agents_service.delete_agent(actor=actor, agent=current.id)
                    st.session_state[NEXT_PICK] = NEW
                    _flash("success", _("Deleted {name}.").format(name=current.name))
                    st.rerun()
                except Exception as exc:  # noqa: BLE001
                    show_error(exc, doing=_("Deleting the agent"))
        if current.published_version:
            with b4:
                page_link("chat", label=_("Share the chat page"), icon="🔗",
                          query_params={"bot": current.name})
        chat_col, side_col = st.columns([3, 2])
        with side_col:
            t_settings, t_history = st.tabs([_("Settings"), _("History")])
            with t_settings:
                _config_form(current)
            with t_history:
                history_picker(actor, current, prefix="build")
        with chat_col:
            versions = ["draft"] + (["published"] if current.published_version else [])
            version = st.radio(_("Try"), versions, horizontal=True, key="agents_try",
                               format_func=lambda v: _("The draft") if v == "draft"
                               else _("The published version"))
            chat_panel(actor, current, prefix="build", version=version, traces=True)


# ------------------------------------------------------------------------ bot in 3 steps

with tab_bot:
    st.subheader(_("A bot that answers from your documents, in three steps"))
    st.markdown(_("1. Pick a knowledge base (or make one on the Knowledge page and upload "
                  "files).  \n2. Pick a model.  \n3. Name the bot. It answers with sources "
                  "and says so politely when the documents hold nothing relevant."))
    with st.expander(_("Step 1, if you have no knowledge base yet: make one from your files"),
                     expanded=not kb_names, icon="📚"):
        new_kb = st.text_input(_("Name of the new knowledge base"), key="bot3_kb_name")
        files = st.file_uploader(_("Files (PDF, Word, Markdown, HTML, text, CSV, zip)"),
                                 accept_multiple_files=True, key="bot3_files")
        if st.button(_("Make the knowledge base and read the files"), key="bot3_kb_go",
                     disabled=not (new_kb and files)):
            from backend.services import knowledge as kb_service

            try:
                made_kb = kb_service.create_knowledge_base(actor=actor, name=new_kb)
                st.session_state["bot3_job"] = kb_service.ingest_files(
                    actor=actor, kb=made_kb.id,
                    uploads=[(f.name, f.getvalue()) for f in files or []])
                st.rerun()
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Making the knowledge base"))
        if st.session_state.get("bot3_job"):
            from studio.components.jobs_widgets import job_progress

            job_progress(st.session_state["bot3_job"], actor=actor, key="bot3_progress",
                         show_metrics=False)
    if not kb_names:
        st.info(_("No knowledge base yet: make one above or on the Knowledge page."))
        page_link("knowledge", label=_("Open the Knowledge page"), icon="📚")
    elif not model_names:
        st.warning(_("Register a chat model on the Models page first."))
    else:
        with st.form("bot3"):
            kb = st.selectbox(_("Step 1: knowledge base"), kb_names)
            model = st.selectbox(_("Step 2: model"), model_names)
            name = st.text_input(_("Step 3: the bot's name"))
            welcome = st.text_input(_("Welcome message (optional)"))
            with st.expander(_("Advanced"), icon="⚙️"):
                c1, c2 = st.columns(2)
                bot_top_k = c1.number_input(_("Passages to retrieve (top-k)"), 1, 50, 4,
                                            help=TOP_K_HELP)
                bot_budget = c2.number_input(
                    _("Context budget in tokens (0: the model's whole context)"), 0, 2_000_000,
                    0, step=256, help=BUDGET_HELP)
            go = st.form_submit_button(_("Create and publish the bot"), type="primary")
        if go:
            try:
                with st.spinner(_("Creating the bot…")):
                    bot = agents_service.create_bot(
                        actor=actor, name=name, model=model, knowledge_bases=[kb],
                        welcome=welcome, top_k=int(bot_top_k),
                        context_budget=int(bot_budget) or None)
                st.session_state[NEXT_PICK] = bot.id
                st.session_state[BOT3_MADE] = bot.name
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Creating the bot"))
        made_bot = st.session_state.get(BOT3_MADE)
        if made_bot:  # stays until the next bot: the user follows the link when ready
            st.success(_("{name} is ready to chat and to share.").format(name=made_bot))
            page_link("chat", label=_("Chat with {name}").format(name=made_bot), icon="💬",
                      query_params={"bot": made_bot})
            share_box(made_bot)


# ---------------------------------------------------------------------------------- tools

with tab_tools:
    st.subheader(_("HTTP tools"))
    try:
        http_tools = agents_service.list_http_tools(actor=actor)
    except Exception as exc:  # noqa: BLE001
        show_error(exc, doing=_("Loading the tools"))
        http_tools = []
    if http_tools:
        st.dataframe([{_("Name"): t.name, _("Method"): t.method, "URL": t.url_template,
                       _("Description"): t.description} for t in http_tools],
                     hide_index=True, width="stretch")
    with st.expander(_("New HTTP tool"), icon="➕"), st.form("http_tool"):
        c1, c2 = st.columns([3, 1])
        tname = c1.text_input(_("Tool name"), placeholder="get_weather")
        method = c2.selectbox(_("Method"), ["GET", "POST", "PUT", "PATCH", "DELETE"])
        url = st.text_input("URL", placeholder="https://api.example.com/weather?city={city}")
        tdesc = st.text_input(_("What it does (the model reads this)"))
        tparams = st.text_area(_("Parameters (JSON schema)"), value=json.dumps(
            {"type": "object", "properties": {"city": {"type": "string"}},
             "required": ["city"]}, indent=2))
        theaders = st.text_area(_("Headers (JSON; {secret:NAME} inserts a workspace "
                                  "secret)"), value="{}")
        if st.form_submit_button(_("Save the tool")):
            try:
                agents_service.create_http_tool(
                    actor=actor, name=tname, url_template=url, method=method,
                    description=tdesc, parameters=json.loads(tparams or "{}"),
                    headers=json.loads(theaders or "{}"))
                _flash("success", _("Saved the tool {name}.").format(name=tname))
                st.rerun()
            except json.JSONDecodeError as exc:
                st.error(_("The parameters and headers must be JSON: {error}").format(
                    error=exc))
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Saving the tool"))
    with st.expander(_("Import from an OpenAPI document"), icon="📥"):
        doc = st.text_area(_("OpenAPI document (JSON or YAML)"), key="openapi_doc", height=150)
        if doc.strip():
            try:
                ops = agents_service.openapi_tools(actor=actor, document=doc)
                picked = st.multiselect(_("Operations"), [o.name for o in ops],
                                        default=[o.name for o in ops])
                if st.button(_("Import the picked operations")):
                    agents_service.import_openapi(actor=actor, document=doc, operations=picked)
                    _flash("success", _("Imported {n} tools.").format(n=len(picked)))
                    st.rerun()
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Reading the document"))
    if http_tools:
        gone = st.selectbox(_("Delete a tool"), ["", *(t.name for t in http_tools)],
                            key="http_delete")
        if gone and st.button(_("Delete the tool"), key="http_delete_go"):
            try:
                agents_service.delete_http_tool(actor=actor, name=gone)
                st.rerun()
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Deleting the tool"))

    st.subheader(_("MCP servers"))
    try:
        servers = agents_service.list_mcp_servers(actor=actor)
    except Exception as exc:  # noqa: BLE001
        show_error(exc, doing=_("Loading the tools"))
        servers = []
    if servers:
        st.dataframe([{_("Name"): s.name, _("Transport"): s.transport,
                       _("Command or URL"): s.url or " ".join([s.command, *s.args])}
                      for s in servers], hide_index=True, width="stretch")
    with st.expander(_("New MCP server"), icon="➕"), st.form("mcp_server"):
        sname = st.text_input(_("Server name"))
        transport = st.radio(_("Transport"), ["http", "stdio"], horizontal=True,
                             format_func=lambda t: _("Streamable HTTP URL") if t == "http"
                             else _("Local command (admins)"))
        surl = st.text_input("URL", placeholder="https://tools.example.com/mcp")
        command = st.text_input(_("Command and arguments"),
                                placeholder="python3 /srv/mcp/server.py")
        if st.form_submit_button(_("Add the server")):
            parts = command.split()
            try:
                agents_service.add_mcp_server(
                    actor=actor, name=sname, transport=transport, url=surl,
                    command=parts[0] if parts else "", args=parts[1:])
                _flash("success", _("Added {name}.").format(name=sname))
                st.rerun()
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Adding the server"))
    if actor.is_admin:
        st.subheader(_("Hosts tools may reach although they are private"))
        hosts = agents_service.list_allowed_hosts(actor=actor)
        st.write(", ".join(hosts) if hosts else _("None: tools reach public addresses only."))
        c1, c2 = st.columns([3, 1])
        host = c1.text_input(_("Host"), key="allow_host", placeholder="wiki.intranet")
        if c2.button(_("Allow"), key="allow_host_go") and host:
            try:
                agents_service.allow_host(actor=actor, host=host)
                st.rerun()
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Allowing the host"))


# ------------------------------------------------------------------------------- feedback

with tab_feedback:
    c1, c2, c3 = st.columns(3)
    agent_filter = c1.selectbox(_("Agent"), [NEW, *(a.id for a in listed)], key="fb_agent",
                                format_func=lambda i: _("All agents") if i == NEW
                                else by_id[i].name)
    rating_filter = c2.selectbox(_("Rating"), [0, 1, -1], key="fb_rating",
                                 format_func=lambda r: {0: _("All"), 1: "👍", -1: "👎"}[r])
    text_filter = c3.text_input(_("Search comments and answers"), key="fb_search")
    try:
        fbs = agents_service.list_feedback(actor=actor, agent=agent_filter or None,
                                           rating=rating_filter or None, search=text_filter)
    except Exception as exc:  # noqa: BLE001
        show_error(exc, doing=_("Loading the feedback"))
        fbs = []
    if fbs:
        st.dataframe([{_("When"): format_relative(f.created_at), _("Agent"): f.agent,
                       _("Rating"): "👍" if f.rating > 0 else "👎", _("Comment"): f.comment,
                       _("Question"): f.question, _("Answer"): f.answer, _("By"): f.username}
                      for f in fbs], hide_index=True, width="stretch")
    else:
        st.caption(_("No feedback matches."))


# ---------------------------------------------------------------------------------- usage

with tab_usage:
    days = st.slider(_("Days"), 1, 90, 30, key="usage_days")
    try:
        rows = agents_service.usage(actor=actor, days=days)
    except Exception as exc:  # noqa: BLE001
        show_error(exc, doing=_("Loading the usage"))
        rows = []
    if not rows:
        st.caption(_("No conversations in this period."))
    else:
        import plotly.express as px

        totals = {k: sum(r[k] for r in rows) for k in ("conversations", "messages", "tokens",
                                                        "thumbs_up", "thumbs_down")}
        m = st.columns(5)
        m[0].metric(_("Conversations"), totals["conversations"])
        m[1].metric(_("Messages"), totals["messages"])
        m[2].metric(_("Tokens"), totals["tokens"])
        m[3].metric("👍", totals["thumbs_up"])
        m[4].metric("👎", totals["thumbs_down"])
        labels = {"messages": _("Messages"), "conversations": _("Conversations"),
                  "tokens": _("Tokens"), "thumbs_up": "👍", "thumbs_down": "👎"}
        measure = st.radio(_("Show"), list(labels), format_func=lambda k: labels[k],
                           horizontal=True, key="usage_measure")
        fig = px.bar(rows, x="day", y=measure, color="agent",
                     labels={"day": _("Day"), measure: labels[measure], "agent": _("Agent")},
                     title=_("{what} per day").format(what=labels[measure]))
        st.plotly_chart(fig, width="stretch")
