"""Models: every model the studio can talk to. Search the registry, add a local Hugging Face
model, an OpenAI-compatible endpoint or a tiny demo model, test a connection, try a prompt, and
remove what is no longer needed. API keys are only ever shown masked."""

from __future__ import annotations

from typing import Any

import streamlit as st

from backend.accounts.actor import Role
from backend.services.chat import stream_chat
from backend.services.models import (
    CAPABILITIES,
    ModelView,
    add_local_model,
    add_openai_model,
    add_tiny_model,
    list_models,
    remove_model,
    test_model,
)
from studio.components.errors import show_error
from studio.components.lineage import model_lineage
from studio.components.page_links import page_link
from studio.components.session import current_actor, require_page_role
from studio.formatting import format_number, format_relative
from studio.i18n import _

FLASH = "models_flash"
CONFIRM = "models_confirm_remove"
PICK = "models_pick"
NEXT_PICK = "models_pick_next"  # applied at the top of the next run, before the widgets exist

actor = current_actor()
require_page_role(actor, Role.builder)  # users chat with the bots
can_edit = actor.has_role(Role.builder)

KIND_LABELS = {
    "local": _("Local model"),
    "openai": _("Endpoint"),
    "produced": _("Made in the studio"),
}
CAPABILITY_LABELS = {
    "chat": _("Chat"),
    "embeddings": _("Embeddings"),
    "tools": _("Tool calling"),
}
# Base URLs of well-known OpenAI-compatible services; "" means: type your own.
ENDPOINT_PRESETS = {
    _("Custom"): "",
    "OpenAI": "https://api.openai.com/v1",
    "DeepSeek": "https://api.deepseek.com/v1",
    _("Qwen (DashScope)"): "https://dashscope.aliyuncs.com/compatible-mode/v1",
    "Ollama": "http://localhost:11434/v1",
    "vLLM": "http://localhost:8000/v1",
}


def _flash(kind: str, message: str) -> None:
    st.session_state[FLASH] = (kind, message)


def _show_flash() -> None:
    flash = st.session_state.pop(FLASH, None)
    if flash:
        getattr(st, flash[0])(flash[1])


def _caps(caps: list[str]) -> str:
    return ", ".join(CAPABILITY_LABELS.get(c, c) for c in caps)


def _status(m: ModelView) -> str:
    return {True: _("Works"), False: _("Failed"), None: _("Not tested")}[m.last_test_ok]


# --- the table and one model ---------------------------------------------------------------------

def _table(models: list[ModelView]) -> None:
    rows = [{
        _("Name"): m.name,
        _("Kind"): KIND_LABELS.get(m.kind, m.kind),
        _("Capabilities"): _caps(m.capabilities),
        _("Where"): m.target,
        _("API key"): m.api_key_masked or "",
        _("Last test"): _status(m),
        _("Tested"): format_relative(m.last_tested_at) if m.last_tested_at else "",
    } for m in models]
    st.dataframe(rows, hide_index=True, width="stretch")


def _lineage_rows(m: ModelView) -> list[tuple[str, str]]:
    """Where the model came from, as a chain, and what its training measured."""
    lin = m.lineage or {}
    rows: list[tuple[str, str]] = []
    chain = model_lineage(m.id, actor=actor)
    if chain:
        rows.append((_("Made from"), chain))
    figures = (
        ("parameters", _("Parameters")),
        ("steps", _("Training steps")),
        ("tokens_seen", _("Tokens seen in training")),
        ("initial_eval_loss", _("Held-out loss before training")),
        ("final_eval_loss", _("Held-out loss after training")),
    )
    for key, label in figures:
        if isinstance(lin.get(key), int | float):
            rows.append((label, format_number(lin[key])))
    return rows


def _properties(m: ModelView) -> None:
    rows: list[tuple[str, str]] = [
        (_("Kind"), KIND_LABELS.get(m.kind, m.kind)),
        (_("Capabilities"), _caps(m.capabilities)),
    ]
    if m.kind == "openai":
        rows += [(_("Base URL"), m.base_url or ""), (_("Model name at the endpoint"),
                                                      m.remote_model or ""),
                 (_("API key"), m.api_key_masked or _("None"))]
    else:
        rows.append((_("Folder or hub id"), m.source))
    if m.lineage:
        rows += _lineage_rows(m)
    # a model made here has a description the system wrote in English: its lineage says it
    if m.description and not (m.kind == "produced" and m.lineage):
        rows.append((_("Description"), m.description))
    rows.append((_("Last test"), _status(m)))
    if m.last_tested_at:
        rows.append((_("Tested"), format_relative(m.last_tested_at)))
    if m.last_test_message:
        rows.append((_("Test result"), m.last_test_message))
    # a table of text (not a grid): long values such as the lineage chain wrap, whole
    st.table([{_("Property"): k, _("Value"): v} for k, v in rows], hide_index=True)


def _test(m: ModelView) -> None:
    with st.spinner(_("Testing the model…")):
        try:
            result = test_model(actor=actor, model=m.id)
        except Exception as exc:  # noqa: BLE001 - shown in words, logged by show_error
            show_error(exc, doing=_("Testing the model"))
            return
    if result.ok:
        st.success(_("It works."))
    else:
        st.error(_("The test failed."))
    st.code(result.message, language=None, wrap_lines=True)


def _answer_caption(u: Any) -> str:
    return _("{n_in} tokens in, {n_out} out; first token after {ttft} ms; "
             "{tps} tokens per second.").format(
        n_in=u.prompt_tokens if u.prompt_tokens is not None else "?",
        n_out=u.completion_tokens,
        ttft=f"{u.ttft_ms:.0f}" if u.ttft_ms is not None else "?",
        tps=f"{u.tokens_per_s:.1f}" if u.tokens_per_s else "?")


def _try_it(m: ModelView) -> None:
    """A prompt and its streamed answer. The box and Send are one form, so a single click on
    Send (or Ctrl+Enter in the box) sends what was typed; the last answer stays shown."""
    answer_key = f"models_answer_{m.id}"
    with st.form(f"models_try_form_{m.id}", border=False):
        prompt = st.text_area(_("Prompt"), key=f"models_prompt_{m.id}", height=80,
                              placeholder=_("Ask the model something."))
        send = st.form_submit_button(_("Send"), type="primary")
    # Pressing Stop reruns the page, which closes the stream and so stops generation.
    st.button(_("Stop"), key=f"models_stop_{m.id}")
    if send and not prompt.strip():
        st.warning(_("Type a prompt first."))
        send = False
    if not send:
        last = st.session_state.get(answer_key)
        if last:
            st.caption(_("You: {prompt}").format(prompt=last["prompt"]))
            st.markdown(last["text"] or _("(no text)"))
            if last.get("caption"):
                st.caption(last["caption"])
                st.code(last["where"], language=None)
        return
    st.session_state.pop(answer_key, None)
    st.caption(_("You: {prompt}").format(prompt=prompt))
    try:
        stream = stream_chat(m.id, [{"role": "user", "content": prompt}],
                             {"max_new_tokens": 256}, actor=actor, placement="auto")
        try:
            text = st.write_stream(stream.text())
        finally:
            if stream.usage is None:
                stream.stop()
    except Exception as exc:  # noqa: BLE001
        show_error(exc, doing=_("Asking the model"))
        return
    u = stream.usage
    shown = {"prompt": prompt, "text": text if isinstance(text, str) else "".join(map(str, text)),
             "caption": _answer_caption(u) if u is not None else "",
             "where": u.where if u is not None else ""}
    st.session_state[answer_key] = shown
    if u is not None:
        st.caption(shown["caption"])
        st.code(u.where, language=None)


def _remove(m: ModelView) -> None:
    try:
        remove_model(actor=actor, model=m.id)
    except Exception as exc:  # noqa: BLE001
        show_error(exc, doing=_("Removing the model"))
        return
    st.session_state.pop(CONFIRM, None)
    st.session_state[NEXT_PICK] = None
    _flash("success", _("Removed `{name}`.").format(name=m.name))
    st.rerun()


def _details(m: ModelView) -> None:
    with st.container(border=True):
        st.markdown(f"#### `{m.name}`")
        if m.lineage and m.lineage.get("recipe") == "tiny":
            st.caption(_("A tiny demo model with random weights: its answers are nonsense, but it "
                         "streams, chats and trains like a real one."))
        _properties(m)
        b1, b2, b3, _b = st.columns([1.3, 1, 1, 3])
        if b1.button(_("Test connection"), key=f"models_test_{m.id}"):
            _test(m)
        try_open = b2.toggle(_("Try it"), key=f"models_try_{m.id}",
                             disabled="chat" not in m.capabilities)
        if "chat" in m.capabilities:
            page_link("playground", label=_("Try it in the playground"), icon="💬",
                      query_params={"model": m.name})
        if can_edit and b3.button(_("Remove"), key=f"models_remove_{m.id}"):
            st.session_state[CONFIRM] = m.id
        if st.session_state.get(CONFIRM) == m.id:
            st.warning(_("Remove `{name}` from the registry? Pages and agents that use it will "
                         "stop working.").format(name=m.name))
            c1, c2, _c = st.columns([1, 1, 4])
            if c1.button(_("Yes, remove it"), key=f"models_confirm_{m.id}", type="primary"):
                _remove(m)
            if c2.button(_("Cancel"), key=f"models_cancel_{m.id}"):
                st.session_state.pop(CONFIRM, None)
                st.rerun()
        if try_open:
            _try_it(m)


# --- adding ----------------------------------------------------------------------------------

def _added(view: ModelView) -> None:
    _flash("success", _("Added `{name}`. Test its connection below.").format(name=view.name))
    st.session_state[NEXT_PICK] = view.id
    st.rerun()


def _capability_picker(key: str, default: list[str]) -> list[str]:
    return st.multiselect(_("Capabilities"), list(CAPABILITIES), default=default, key=key,
                          format_func=lambda c: CAPABILITY_LABELS.get(c, c))


def _add_local_form() -> None:
    with st.form("models_add_local", clear_on_submit=False):
        name = st.text_input(_("Name"), key="models_local_name")
        kind = st.radio(_("Where is it?"), ["folder", "hub"], horizontal=True,
                        key="models_local_kind",
                        format_func=lambda k: {"folder": _("A folder on the server"),
                                               "hub": _("A Hugging Face hub id")}[k])
        source = st.text_input(_("Folder or hub id"), key="models_local_source",
                               placeholder="/models/Qwen2.5-0.5B-Instruct")
        caps = _capability_picker("models_local_caps", ["chat"])
        description = st.text_input(_("Description"), key="models_local_description")
        st.caption(_("A hub id is downloaded where the model first runs, which needs network "
                     "there. A folder is checked now."))
        if st.form_submit_button(_("Add model")):
            try:
                view = add_local_model(actor=actor, name=name, source=source, source_type=kind,
                                       capabilities=caps, description=description)
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Adding the model"))
                return
            _added(view)


def _add_endpoint_form() -> None:
    preset = st.selectbox(_("Service"), list(ENDPOINT_PRESETS), key="models_endpoint_preset")
    with st.form("models_add_endpoint", clear_on_submit=False):
        name = st.text_input(_("Name"), key="models_endpoint_name")
        base_url = st.text_input(_("Base URL"), value=ENDPOINT_PRESETS[preset],
                                 key=f"models_endpoint_url_{preset}",
                                 placeholder="http://localhost:8000/v1")
        remote = st.text_input(_("Model name at the endpoint"), key="models_endpoint_model",
                               placeholder="deepseek-chat, qwen2.5:7b, gpt-4o-mini")
        api_key = st.text_input(_("API key"), type="password", key="models_endpoint_key",
                                help=_("Stored encrypted. It is never shown again, only masked."))
        caps = _capability_picker("models_endpoint_caps", ["chat"])
        description = st.text_input(_("Description"), key="models_endpoint_description")
        if st.form_submit_button(_("Add endpoint")):
            try:
                view = add_openai_model(actor=actor, name=name, base_url=base_url,
                                        remote_model=remote, api_key=api_key or None,
                                        capabilities=caps, description=description)
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Adding the endpoint"))
                return
            st.session_state.pop("models_endpoint_key", None)
            _added(view)


def _add_tiny_form() -> None:
    st.write(_("A tiny model is built here in a few seconds, with no download. Its answers are "
               "nonsense, but it streams, chats and trains like a real model, so you can try "
               "every page before connecting one."))
    with st.form("models_add_tiny"):
        name = st.text_input(_("Name"), value="tiny-demo", key="models_tiny_name")
        seed = st.number_input(_("Seed"), min_value=0, max_value=2**31 - 1, value=0, step=1,
                               key="models_tiny_seed")
        if st.form_submit_button(_("Build and add")):
            bar = st.progress(0.0, text=_("Building the tiny model…"))

            def progress(fraction: float, _stage: str) -> None:
                bar.progress(min(1.0, fraction), text=_("Building the tiny model…"))

            try:
                view = add_tiny_model(actor=actor, name=name, seed=int(seed), progress=progress)
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Building the tiny model"))
                return
            _added(view)


# --- page -----------------------------------------------------------------------------------------

st.title(_("Models"))
st.caption(_("Local Hugging Face models run on the studio's GPU workers; endpoints are called "
             "directly. Every page that talks to a model picks one from here."))
_show_flash()
if NEXT_PICK in st.session_state:  # a model was just added or removed: show it, clear filters
    next_pick = st.session_state.pop(NEXT_PICK)
    st.session_state.pop(PICK, None)
    if next_pick is not None:
        st.session_state[PICK] = next_pick
        for key in ("models_search", "models_capability", "models_kind"):
            st.session_state.pop(key, None)

f1, f2, f3 = st.columns([3, 1, 1])
search = f1.text_input(_("Search"), key="models_search", placeholder=_("Name, folder or URL"))
capability: Any = f2.selectbox(_("Capability"), [None, *CAPABILITIES], key="models_capability",
                               format_func=lambda c: _("All") if c is None
                               else CAPABILITY_LABELS.get(c, c))
kind: Any = f3.selectbox(_("Kind"), [None, *KIND_LABELS], key="models_kind",
                         format_func=lambda k: _("All") if k is None else KIND_LABELS[k])

try:
    models = list_models(actor=actor, search=search, capability=capability, kind=kind)
except Exception as exc:  # noqa: BLE001
    show_error(exc, doing=_("Listing the models"))
    models = []

if not models:
    if search or capability or kind:
        st.info(_("No model matches these filters."))
    else:
        st.info(_("No models yet. Add a tiny demo model below to try the studio offline, then "
                  "connect a real one."))
else:
    _table(models)
    by_id = {m.id: m for m in models}
    if st.session_state.get(PICK) not in by_id:
        st.session_state[PICK] = models[0].id
    picked = st.selectbox(_("Model"), list(by_id), key=PICK,
                          format_func=lambda i: by_id[i].name)
    _details(by_id[picked])

st.subheader(_("Add a model"))
if not can_edit:
    st.info(_("Adding and removing models needs the builder role. Ask an admin."))
else:
    local_tab, endpoint_tab, tiny_tab = st.tabs(
        [_("Local model"), _("OpenAI-compatible endpoint"), _("Tiny demo model")])
    with local_tab:
        _add_local_form()
    with endpoint_tab:
        _add_endpoint_form()
    with tiny_tab:
        _add_tiny_form()
