"""The chat with an agent, shared by the Agents page (builders, with traces) and the Chat page
(everyone, published bots): the conversation so far with sources and thumbs, a streamed answer
to the next question, and each answer's trace on demand."""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from backend.accounts.actor import Actor
from backend.services import agents as agents_service
from studio.components.errors import show_error
from studio.i18n import _

STEP_KINDS = {"model": _("Model call"), "tool": _("Tool call"), "retrieval": _("Retrieval"),
              "plan": _("Plan"), "context": _("Context")}


def step_name(step: dict[str, Any]) -> str:
    """A step's name as a reader sees it: the fit of the context says how many passages went
    in ("3 of 5 passages fit")."""
    out = step.get("output") or {}
    if step.get("kind") == "context" and isinstance(out, dict) and "passages_used" in out:
        text = _("{used} of {found} passages fit").format(used=out["passages_used"],
                                                         found=out["passages_found"])
        if out.get("turns_dropped"):
            text += " · " + _("{n} older turns left out").format(n=out["turns_dropped"])
        return text
    if step.get("kind") == "context":
        return _("Fitting the prompt into the model's context")
    return str(step.get("name") or "")


def share_url(bot: str) -> str:
    """The address that opens this bot's chat: the studio's own address as the browser sees it
    (a relative one where the page has none, as under AppTest)."""
    from urllib.parse import quote, urlsplit

    path = f"chat?bot={quote(bot, safe='')}"
    here = getattr(st.context, "url", None)
    if not here:
        return "/" + path
    parts = urlsplit(here)
    base = parts.path.rstrip("/").rsplit("/", 1)[0] if parts.path.strip("/") else ""
    return f"{parts.scheme}://{parts.netloc}{base}/{path}"


def share_box(bot: str) -> None:
    """The bot's share link, to copy (the copy button is the code block's own)."""
    st.markdown(_("**Share link**: anyone in this workspace opens {name}'s chat with it.")
                .format(name=bot))
    st.code(share_url(bot), language=None)


def conversation_key(prefix: str, agent_id: int) -> str:
    return f"{prefix}_conversation_{agent_id}"


def show_sources(sources: list[dict[str, Any]], key: str) -> None:
    if not sources:
        return
    with st.expander(_("Sources ({n})").format(n=len(sources))):
        for i, s in enumerate(sources, 1):
            meta = s.get("metadata") or {}
            where = []
            if meta.get("page"):
                where.append(_("page {page}").format(page=meta["page"]))
            if meta.get("heading_path"):
                where.append(" > ".join(str(h) for h in meta["heading_path"]))
            if meta.get("relevance") is not None:
                where.append(_("relevance {percent}").format(
                    percent=f"{float(meta['relevance']):.0%}"))
            st.markdown(f"**[{i}] {s.get('source', '')}**" + (f" · {' · '.join(where)}"
                                                                  if where else ""))
            with st.popover(_("Show the passage"), key=f"{key}_src_{i}"):
                st.write(s.get("text", ""))


def show_trace(actor: Actor, trace_id: int, key: str) -> None:
    with st.expander(_("Trace #{id}").format(id=trace_id)):
        try:
            trace = agents_service.get_trace(actor=actor, trace_id=trace_id)
        except Exception as exc:  # noqa: BLE001
            show_error(exc, doing=_("Loading the trace"))
            return
        st.caption(_("{steps} steps · {ms} ms · {tokens} tokens").format(
            steps=len(trace.steps), ms=round(trace.total_ms),
            tokens=trace.prompt_tokens + trace.completion_tokens))
        if trace.error:
            st.error(trace.error)
        fit = next((s for s in trace.steps if s["kind"] == "context" and s["output"]), None)
        if fit is not None:
            st.caption(_("Context: {what}; the prompt took {tokens} of the {limit} tokens the "
                         "model leaves after {answer} for the answer.").format(
                what=step_name(fit), tokens=fit["output"].get("prompt_tokens", 0),
                limit=fit["output"].get("prompt_limit", 0),
                answer=fit["output"].get("answer_tokens", 0)))
        for plan in trace.plan or []:
            st.markdown(_("**Plan {version}**").format(version=plan["version"]))
            st.markdown("\n".join(f"{i}. {s}" for i, s in enumerate(plan["steps"], 1)))
        rows = [{_("Step"): s["seq"], _("Kind"): STEP_KINDS.get(s["kind"], s["kind"]),
                 _("Name"): step_name(s), _("Milliseconds"): round(s["latency_ms"]),
                 _("Tokens"): s["prompt_tokens"] + s["completion_tokens"],
                 _("Error"): s["error"] or ""} for s in trace.steps]
        st.dataframe(rows, hide_index=True, width="stretch")
        pick = st.selectbox(_("Step details"), [s["seq"] for s in trace.steps],
                            key=f"{key}_step")
        step = next((s for s in trace.steps if s["seq"] == pick), None)
        if step is not None:
            st.code(json.dumps({"input": step["input"], "output": step["output"],
                                "error": step["error"]}, ensure_ascii=False, indent=2,
                               default=str), language="json")


def feedback(actor: Actor, message_id: int, rating: int | None, key: str) -> None:
    cols = st.columns([1, 1, 6])
    for col, value, icon in ((cols[0], 1, "👍"), (cols[1], -1, "👎")):
        pressed = col.button(icon, key=f"{key}_fb_{message_id}_{value}",
                             type="primary" if rating == value else "secondary",
                             help=_("Helpful") if value > 0 else _("Not helpful"))
        if pressed:
            try:
                agents_service.give_feedback(actor=actor, message_id=message_id, rating=value)
                st.rerun()
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Saving the feedback"))
    if rating is not None:
        with cols[2].popover(_("Add a comment")):
            comment = st.text_area(_("What was wrong or right?"), key=f"{key}_c_{message_id}")
            if st.button(_("Save the comment"), key=f"{key}_cs_{message_id}"):
                try:
                    agents_service.give_feedback(actor=actor, message_id=message_id,
                                                 rating=rating, comment=comment)
                    st.toast(_("Thank you: the feedback was saved."))
                except Exception as exc:  # noqa: BLE001
                    show_error(exc, doing=_("Saving the feedback"))


def chat_panel(actor: Actor, agent: agents_service.AgentView, *, prefix: str,
               version: str = "published", traces: bool = False) -> None:
    """The conversation kept under ``prefix`` for this agent, and a box for the next question."""
    conv_key = conversation_key(prefix, agent.id)
    conv_id: int | None = st.session_state.get(conv_key)
    messages: list[agents_service.MessageView] = []
    if conv_id is not None:
        try:
            messages = agents_service.get_messages(actor=actor, conversation_id=conv_id)
        except Exception:  # noqa: BLE001 - deleted meanwhile: start afresh
            st.session_state.pop(conv_key, None)
            conv_id = None
    cfg = agent.config
    if not messages and cfg.get("welcome"):
        with st.chat_message("assistant", avatar=agent.icon):
            st.markdown(cfg["welcome"])
    for m in messages:
        with st.chat_message(m.role, avatar=agent.icon if m.role == "assistant" else None):
            st.markdown(m.content)
            if m.role == "assistant":
                show_sources(m.sources, f"{prefix}_{m.id}")
                if traces and m.trace_id:
                    show_trace(actor, m.trace_id, f"{prefix}_t{m.id}")
                feedback(actor, m.id, m.rating, prefix)
    question = None
    if not messages and cfg.get("suggestions"):
        cols = st.columns(min(3, len(cfg["suggestions"])))
        for i, s in enumerate(cfg["suggestions"]):
            if cols[i % len(cols)].button(s, key=f"{prefix}_sugg_{agent.id}_{i}"):
                question = s
    typed = st.chat_input(_("Ask {name}…").format(name=agent.name), key=f"{prefix}_input")
    question = typed or question
    if not question:
        return
    with st.chat_message("user"):
        st.markdown(question)
    with st.chat_message("assistant", avatar=agent.icon):
        try:
            run = agents_service.stream_agent(actor=actor, agent=agent.id, question=question,
                                              conversation_id=conv_id, version=version,
                                              channel="studio" if traces else "share")
            with st.spinner(_("Thinking…")):
                st.write_stream(run)
            st.session_state[conv_key] = run.conversation_id
        except Exception as exc:  # noqa: BLE001
            show_error(exc, doing=_("Answering"))
            return
    st.rerun()


def history_picker(actor: Actor, agent: agents_service.AgentView, *, prefix: str) -> None:
    """Past conversations with this agent (builders: everyone's; users: their own).

    The picked conversation lives in one session key (``conversation_key``); the radio only
    shows it. Both buttons act in callbacks, before the page runs again, so the question asked
    next goes to the conversation the page shows (a radio keeping its old pick used to put the
    first question after "New conversation" into the previous one)."""
    conv_key = conversation_key(prefix, agent.id)
    radio_key = f"{prefix}_hist_{agent.id}"
    convs = agents_service.list_conversations(actor=actor, agent=agent.id, limit=50)

    def new_conversation() -> None:
        st.session_state.pop(conv_key, None)
        st.session_state[radio_key] = None

    def picked() -> None:
        st.session_state[conv_key] = st.session_state.get(radio_key)

    st.button(_("New conversation"), key=f"{prefix}_new_{agent.id}", icon="➕",
              on_click=new_conversation)
    if not convs:
        st.caption(_("No conversations yet."))
        return
    labels = {c.id: f"{c.title[:48]} ({c.messages})" for c in convs}
    current = st.session_state.get(conv_key)
    options = list(labels)
    # the radio shows the conversation the chat is in, whatever it was left at
    st.session_state[radio_key] = current if current in options else None
    st.radio(_("Conversations"), options, format_func=lambda i: labels[i], key=radio_key,
             on_change=picked)
