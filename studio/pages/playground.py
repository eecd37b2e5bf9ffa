"""Playground: design a prompt (system message, template with {{ variables }}, few-shot examples,
output format), run it against 1-4 models or two versions side by side with streaming and stats,
keep versions and every run, evaluate it over a data file, and see how a model reads it (tokens
and attention).

The draft (everything typed or chosen here) is kept in a plain session-state dict besides the
widgets: Streamlit forgets a widget's value once a run does not draw it, which every visit to
another page does, so the draft is put back into the widgets on return. ``?model=NAME`` picks that
model and keeps the rest of the draft."""

from __future__ import annotations

import html
import json
import re
import time
from dataclasses import replace
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from backend.accounts.actor import Role
from backend.services import prompt_drafts, prompt_eval
from backend.services import prompts as svc
from backend.services.jobs import get_job
from backend.services.models import list_models
from studio.components.errors import show_error
from studio.components.jobs_widgets import job_progress
from studio.components.session import current_actor, require_page_role
from studio.i18n import _

actor = current_actor()
require_page_role(actor, Role.builder)  # users chat with the bots
can_edit = actor.has_role(Role.builder)
lang = str(st.session_state.get("lang") or "en")

K = "play_"  # every key of this page starts with it
S_SYSTEM, S_TEMPLATE, S_EXAMPLES, S_FORMAT, S_SCHEMA = (f"{K}system", f"{K}template",
                                                        f"{K}examples", f"{K}format",
                                                        f"{K}schema")
S_COLS = f"{K}cols"  # list of {"spec": RunSpec, "live": LiveRun, "title": str}
S_DRAFT = f"{K}draft"  # widget key -> value: the draft, kept while other pages run
S_EVAL_FILE = f"{K}e_data"  # (file name, rows) of the uploaded data file
FORMATS = {"text": _("Free text"), "list": _("A list"), "json": _("JSON")}
MODES = {"models": _("Compare models"), "versions": _("Compare two versions")}
# the widgets whose values make the draft: exact keys and key prefixes (per column, variable...)
DRAFT_KEYS = {S_SYSTEM, S_TEMPLATE, S_FORMAT, S_SCHEMA, f"{K}ctx_kb", f"{K}ctx_var",
              f"{K}ctx_k", f"{K}mode", f"{K}n_cols", f"{K}cmp_prompt", f"{K}save_name",
              f"{K}save_message", f"{K}e_models", f"{K}e_scoring", f"{K}e_pattern",
              f"{K}e_judge", f"{K}e_rubric", f"{K}e_batch", f"{K}e_conc", f"{K}e_max",
              f"{K}t_model", f"{K}load_name", f"{K}v_prompt", f"{K}h_search"}
DRAFT_PATTERN = re.compile(rf"{K}((model|temp|top_p|max|stop|seed)_\d+|(var|cmp_a|cmp_b|"
                           r"load_version)_.+)")


# --- the draft -----------------------------------------------------------------------------------

def _is_draft_key(key: str) -> bool:
    return key in DRAFT_KEYS or DRAFT_PATTERN.fullmatch(key) is not None


def _examples_key() -> str:
    return f"{K}examples_widget_{st.session_state[f'{K}examples_rev']}"


def _sync_draft() -> None:
    """Before any widget: copy the widgets' values into the draft, and put the draft back into
    the widgets Streamlit forgot (this page was not drawn by the last run)."""
    ss = st.session_state
    draft: dict[str, Any] = ss.setdefault(S_DRAFT, {})
    for key in list(ss.keys()):
        if isinstance(key, str) and _is_draft_key(key):
            draft[key] = ss[key]
    for key, value in draft.items():
        if key not in ss:
            ss[key] = value
    # the few-shot table keeps its edits in the data editor's own state, which cannot be set
    if _examples_key() in ss:
        draft[S_EXAMPLES] = _examples()
    elif S_EXAMPLES in draft and draft[S_EXAMPLES] != ss[f"{K}examples_data"]:
        ss[f"{K}examples_data"] = [dict(e) for e in draft[S_EXAMPLES]]
        ss[f"{K}examples_rev"] += 1


def _set(key: str, value: Any) -> None:
    """Set a draft widget's value (before the widget is drawn) and the draft's copy."""
    st.session_state[key] = value
    st.session_state[S_DRAFT][key] = value


def _default(key: str, value: Any) -> None:
    """A widget's first value (widgets take it from here, so a restored draft wins)."""
    if key not in st.session_state:
        _set(key, value)


def _valid_choice(key: str, options: list[Any], fallback: Any) -> None:
    """A restored choice that is no longer offered (a removed model) falls back."""
    if key in st.session_state and st.session_state[key] is not None \
            and st.session_state[key] not in options:
        _set(key, fallback)


def _apply_model_param(model_names: list[str]) -> None:
    """``?model=NAME`` (from the Models page or a finished fine-tune): that model goes in the
    first column, the evaluation and the token view; the rest of the draft stays."""
    wanted = st.query_params.get("model")
    if not wanted:
        return
    del st.query_params["model"]  # applied once: later choices are the person's
    if wanted not in model_names:
        st.session_state[f"{K}flash"] = ("warning", _(
            "There is no chat model named {name} here; pick one below.").format(name=wanted))
        return
    _set(f"{K}model_0", wanted)
    picked = [m for m in st.session_state.get(f"{K}e_models") or [] if m in model_names]
    if wanted not in picked:
        _set(f"{K}e_models", [wanted, *picked][:svc.MAX_COLUMNS])
    _set(f"{K}t_model", wanted)
    st.session_state[f"{K}flash"] = ("info", _("{name} is selected; the rest of your draft is "
                                               "as you left it.").format(name=wanted))


# --- loading content into the editor (callbacks run before the widgets exist) --------------------

def _load_content(system: str, template: str, examples: list[dict[str, str]],
                  output_format: dict[str, Any], variables: dict[str, Any] | None = None,
                  context: dict[str, Any] | None = None) -> None:
    _set(S_SYSTEM, system)
    _set(f"{K}ctx_kb", (context or {}).get("kb"))
    if context:
        _set(f"{K}ctx_var", context.get("query_variable"))
        _set(f"{K}ctx_k", int(context.get("k") or 3))
    _set(S_TEMPLATE, template)
    st.session_state[f"{K}examples_data"] = [dict(e) for e in examples]
    st.session_state[S_DRAFT][S_EXAMPLES] = [dict(e) for e in examples]
    st.session_state[f"{K}examples_rev"] += 1  # a fresh data editor shows the loaded rows
    _set(S_FORMAT, output_format.get("type", "text"))
    schema = output_format.get("schema")
    _set(S_SCHEMA, json.dumps(schema, ensure_ascii=False, indent=2) if schema else "")
    for name, value in (variables or {}).items():
        _set(f"{K}var_{name}", str(value))
    st.session_state.pop(S_COLS, None)


def _load_saved() -> None:
    name = st.session_state.get(f"{K}load_name")
    if not name:
        return
    try:
        v = svc.get_prompt(actor=actor, name=name,
                           version=st.session_state.get(f"{K}load_version_{name}")).current
    except LookupError as exc:
        st.session_state[f"{K}flash"] = ("error", str(exc))
        return
    _load_content(v.system, v.template, v.examples, v.output_format, context=v.context)
    _set(f"{K}save_name", v.name)
    st.session_state[f"{K}flash"] = ("success", _("Loaded {name} version {version}.").format(
        name=v.name, version=v.version))


def _load_gallery(item: Any) -> None:
    _load_content(item.system, item.template, item.examples, item.output_format, item.sample)
    st.session_state[f"{K}flash"] = ("success", _("Loaded the template {title}.").format(
        title=item.title))


def _load_run(run_id: int) -> None:
    r = svc.get_run(actor=actor, run_id=run_id)
    _load_content(r.system, r.template, [], r.output_format, r.variables)
    if r.prompt_name:
        _set(f"{K}save_name", r.prompt_name)
    st.session_state[f"{K}flash"] = ("success", _("Run #{id} is open in the editor.").format(
        id=r.id))


# --- helpers -------------------------------------------------------------------------------------

def _examples() -> list[dict[str, str]]:
    state = st.session_state.get(_examples_key())
    rows = list(st.session_state[f"{K}examples_data"])
    if isinstance(state, dict):  # the data editor's edits over the loaded rows
        for i, change in state.get("edited_rows", {}).items():
            if int(i) < len(rows):
                rows[int(i)] = {**rows[int(i)], **change}
        rows += [dict(r) for r in state.get("added_rows", [])]
        rows = [r for i, r in enumerate(rows) if i not in set(state.get("deleted_rows", []))]
    return [{"user": str(r.get("user") or ""), "assistant": str(r.get("assistant") or "")}
            for r in rows]


def _output_format() -> dict[str, Any]:
    kind = st.session_state[S_FORMAT]
    if kind != "json":
        return {"type": kind}
    schema = st.session_state[S_SCHEMA].strip()
    return {"type": "json", "schema": schema} if schema else {"type": "json"}


def _context() -> dict[str, Any] | None:
    kb = st.session_state.get(f"{K}ctx_kb")
    var = st.session_state.get(f"{K}ctx_var")
    if not kb or not var:
        return None
    return {"kb": kb, "query_variable": var, "k": int(st.session_state.get(f"{K}ctx_k", 3))}


def _parts() -> svc.PromptParts:
    return svc.PromptParts(template=st.session_state[S_TEMPLATE],
                           system=st.session_state[S_SYSTEM], examples=_examples())


def _variables(names: list[str]) -> dict[str, str]:
    return {n: st.session_state.get(f"{K}var_{n}", "") for n in names
            if st.session_state.get(f"{K}var_{n}", "") != ""}


def _params(i: int) -> dict[str, Any]:
    stop = [s for s in str(st.session_state.get(f"{K}stop_{i}") or "").split("|") if s]
    seed = st.session_state.get(f"{K}seed_{i}")
    return {"temperature": st.session_state.get(f"{K}temp_{i}", 0.7),
            "top_p": st.session_state.get(f"{K}top_p_{i}", 1.0),
            "max_new_tokens": int(st.session_state.get(f"{K}max_{i}", 256)),
            "stop": stop or None, "seed": int(seed) if seed not in (None, "") else None}


def _stats(col: svc.ColumnState) -> str:
    u = col.usage
    if u is None:
        return ""
    parts = [_("{n} tokens in").format(n=u.prompt_tokens if u.prompt_tokens is not None else "?"),
             _("{n} tokens out").format(n=u.completion_tokens)]
    if u.ttft_ms is not None:
        parts.append(_("first token {ms} ms").format(ms=f"{u.ttft_ms:.0f}"))
    if u.tokens_per_s:
        parts.append(_("{rate} tokens/s").format(rate=f"{u.tokens_per_s:.1f}"))
    if col.cost is not None:
        parts.append(_("cost {cost}").format(cost=f"{col.cost:.6f}"))
    return " · ".join(parts)


def _local_models(models: list[Any]) -> list[str]:
    return [m.name for m in models if m.kind != "openai"]


def _draft_variables() -> tuple[list[str], list[str], str | None]:
    """(every variable the template names, those the form asks for, the template's error)."""
    try:
        raw = svc.prompt_variables(actor=actor, template=st.session_state[S_TEMPLATE],
                                   system=st.session_state[S_SYSTEM])
    except svc.TemplateError as exc:
        return [], [], str(exc)
    return raw, svc.prompt_variables(actor=actor, template=st.session_state[S_TEMPLATE],
                                     system=st.session_state[S_SYSTEM], context=_context()), None


# --- prompt and run ------------------------------------------------------------------------------

def _starter() -> None:
    """Load a saved prompt (any version) or a gallery template into the editor."""
    with st.expander(_("Start from a saved prompt or a template"),
                     expanded=not st.session_state[S_TEMPLATE]):
        left, right = st.columns(2)
        with left:
            saved = svc.list_prompts(actor=actor)
            names = [p.name for p in saved]
            _valid_choice(f"{K}load_name", names, None)
            st.selectbox(_("Saved prompt"), names, key=f"{K}load_name", index=None,
                         placeholder=_("Pick a saved prompt"))
            chosen = next((p for p in saved if p.name == st.session_state.get(f"{K}load_name")),
                          None)
            if chosen is not None:
                numbers = list(range(chosen.latest_version, 0, -1))
                _valid_choice(f"{K}load_version_{chosen.name}", numbers, numbers[0])
                st.selectbox(_("Version"), numbers, key=f"{K}load_version_{chosen.name}")
            st.button(_("Open in the editor"), key=f"{K}load", on_click=_load_saved,
                      disabled=chosen is None)
        with right:
            items = svc.gallery(actor=actor, language=lang)
            pick = st.selectbox(_("Template gallery"), items, key=f"{K}gallery",
                                format_func=lambda g: g.title)
            if pick is not None:
                st.caption(pick.description)
                st.button(_("Use this template"), key=f"{K}use_gallery", on_click=_load_gallery,
                          args=(pick,))


def _editor() -> None:
    """System message, template, few-shot examples, output format."""
    st.text_area(_("System message"), key=S_SYSTEM, height=90,
                 placeholder=_("Who the model is and how it answers."))
    st.text_area(_("User message template"), key=S_TEMPLATE, height=120,
                 placeholder=_("Write the message; put `{{ name }}` where a value goes."),
                 help=_("Jinja2 in a sandbox: `{{ variable }}`, filters such as "
                        "`{{ name|upper }}`, `{% if %}` and `{% for %}`."))
    with st.expander(_("Few-shot examples ({n})").format(n=len(_examples()))):
        st.data_editor(pd.DataFrame(st.session_state[f"{K}examples_data"] or [],
                                    columns=["user", "assistant"]),
                       num_rows="dynamic", width="stretch", key=_examples_key(),
                       column_config={"user": _("User"), "assistant": _("Assistant")})
    with st.expander(_("Output format: {format}").format(
            format=FORMATS[st.session_state[S_FORMAT]])):
        st.radio(_("Output format"), list(FORMATS), key=S_FORMAT, horizontal=True,
                 format_func=lambda f: FORMATS[f])
        if st.session_state[S_FORMAT] == "json":
            st.text_area(_("JSON schema (optional)"), key=S_SCHEMA, height=140,
                         placeholder='{"type": "object", "properties": {...}}')
            with st.popover(_("Build a schema from fields")):
                fields = st.data_editor(
                    pd.DataFrame([{"name": "", "type": "string", "required": True}]),
                    num_rows="dynamic", key=f"{K}schema_fields",
                    column_config={"type": st.column_config.SelectboxColumn(
                        _("Type"), options=["string", "number", "integer", "boolean", "array",
                                            "object"])})
                if st.button(_("Use these fields"), key=f"{K}schema_build"):
                    try:
                        schema = svc.schema_from_fields(fields.to_dict("records"))
                        st.session_state[f"{K}schema_next"] = json.dumps(schema, indent=2)
                        st.rerun()
                    except ValueError as exc:
                        show_error(exc, doing=_("Building the schema"))


def _kb_context(raw_names: list[str]) -> None:
    """The knowledge base that fills {{ context }} (when the workspace has one)."""
    kb_names = svc.knowledge_bases(actor=actor)
    if not kb_names:
        return
    with st.expander(_("Knowledge-base context: {kb}").format(
            kb=st.session_state.get(f"{K}ctx_kb") or _("none"))):
        st.caption(_("The best chunks for the query variable are put where the template "
                     "says `{{ context }}`."))
        _valid_choice(f"{K}ctx_kb", kb_names, None)
        st.selectbox(_("Knowledge base"), kb_names, key=f"{K}ctx_kb", index=None,
                     placeholder=_("No knowledge base"))
        query_options = [n for n in raw_names if n != "context"]
        _valid_choice(f"{K}ctx_var", query_options, None)
        st.selectbox(_("Search with the variable"), query_options, key=f"{K}ctx_var",
                     index=None)
        _default(f"{K}ctx_k", 3)
        st.number_input(_("Chunks"), 1, 20, key=f"{K}ctx_k")
        if st.session_state.get(f"{K}ctx_kb") and "context" not in raw_names:
            st.warning(_("Add `{{ context }}` to the template to use the chunks."))


def _variable_inputs(var_names: list[str]) -> None:
    if not var_names:
        return
    st.subheader(_("Variables"))
    vcols = st.columns(min(3, len(var_names)))
    for i, name in enumerate(var_names):
        with vcols[i % len(vcols)]:
            st.text_area(name, key=f"{K}var_{name}", height=68)


def _column_settings(i: int, model_names: list[str], preferred: str | None,
                     same_model: bool) -> None:
    """One column's model and generation settings."""
    if same_model:
        st.caption(_("Same model as the first column."))
    elif model_names:
        pool = [m for m in model_names if m != preferred] or model_names
        first = preferred if i == 0 or not preferred else pool[min(i - 1, len(pool) - 1)]
        _valid_choice(f"{K}model_{i}", model_names, first)
        _default(f"{K}model_{i}", first)
        st.selectbox(_("Model"), model_names, key=f"{K}model_{i}")
    else:
        st.selectbox(_("Model"), model_names, key=f"{K}model_{i}", index=None)
    with st.expander(_("Settings")):
        _default(f"{K}temp_{i}", 0.7)
        _default(f"{K}top_p_{i}", 1.0)
        _default(f"{K}max_{i}", 256)
        st.number_input(_("Temperature"), 0.0, 2.0, step=0.1, key=f"{K}temp_{i}")
        st.number_input(_("Top-p"), 0.01, 1.0, step=0.05, key=f"{K}top_p_{i}")
        st.number_input(_("Max new tokens"), 1, 8192, key=f"{K}max_{i}")
        st.text_input(_("Stop strings (separate with |)"), key=f"{K}stop_{i}")
        st.text_input(_("Seed (empty: random)"), key=f"{K}seed_{i}")


def _version_pair(var_names: list[str]) -> list[Any]:
    """Compare two versions: the saved prompt and its two versions (and the inputs for the
    variables they use that the editor does not)."""
    saved = svc.list_prompts(actor=actor)
    names = [p.name for p in saved]
    _valid_choice(f"{K}cmp_prompt", names, None)
    saved_name = st.selectbox(_("Saved prompt"), names, key=f"{K}cmp_prompt", index=None)
    if not saved_name:
        return []
    latest = next(p for p in saved if p.name == saved_name)
    numbers = list(range(latest.latest_version, 0, -1))
    a, b = st.columns(2)
    key_a, key_b = f"{K}cmp_a_{saved_name}_{numbers[0]}", f"{K}cmp_b_{saved_name}_{numbers[0]}"
    _default(key_a, numbers[min(1, len(numbers) - 1)])
    _default(key_b, numbers[0])
    va = a.selectbox(_("Version A"), numbers, key=key_a)
    vb = b.selectbox(_("Version B"), numbers, key=key_b)
    pair = [svc.get_prompt(actor=actor, name=saved_name, version=v).current for v in (va, vb)]
    extra = [n for n in dict.fromkeys(n for v in pair for n in v.variables) if n not in var_names]
    for name in extra:  # variables the versions use that the editor does not
        st.text_area(name, key=f"{K}var_{name}", height=68)
    return pair


def _specs(mode: str, n_cols: int, pair: list[Any]) -> list[svc.RunSpec]:
    if mode == "versions":
        if len(pair) != 2:
            raise ValueError(_("Pick a saved prompt and two of its versions."))
        model = st.session_state.get(f"{K}model_0")
        return [svc.RunSpec(model=model, parts=v.parts, params={**v.params, **_params(i)},
                            output_format=v.output_format, prompt_id=v.prompt_id,
                            version=v.version, context=v.context)
                for i, v in enumerate(pair)]
    return [svc.RunSpec(model=st.session_state.get(f"{K}model_{i}"), parts=_parts(),
                        params=_params(i), output_format=_output_format(), context=_context())
            for i in range(n_cols)]


def _start(mode: str, n_cols: int, pair: list[Any], var_names: list[str]) -> None:
    try:
        specs = _specs(mode, n_cols, pair)
        values = _variables(var_names if mode == "models" else list(
            dict.fromkeys(n for v in pair for n in v.variables)))
        for spec in specs:  # everything is checked before any model starts
            svc.render_parts(actor=actor, parts=spec.parts, variables=values,
                             context=spec.context)
        st.session_state[S_COLS] = [
            {"spec": spec, "values": values,
             "title": spec.model + (f" · v{spec.version}" if mode == "versions" else ""),
             "live": svc.start_runs(actor=actor, specs=[spec], variables=values)}
            for spec in specs]
    except svc.MissingVariables as exc:
        st.error(_("Fill in the variable(s) {names} before running.").format(
            names=", ".join(exc.names)))
    except Exception as exc:  # noqa: BLE001 - shown in words
        show_error(exc, doing=_("Starting the run"))


def _stop(i: int) -> None:
    st.session_state[S_COLS][i]["live"].stop(0)


def _follow_up(i: int) -> None:
    entry = st.session_state[S_COLS][i]
    text = str(st.session_state.get(f"{K}follow_{i}") or "").strip()
    if not text:
        return
    prev = entry["live"].columns[0]
    spec = replace(entry["spec"], history=list(entry["spec"].history) + [
        {"role": "assistant", "content": prev.text}, {"role": "user", "content": text}])
    entry["spec"] = spec
    entry["live"] = svc.start_runs(actor=actor, specs=[spec], variables=entry["values"])
    st.session_state[f"{K}follow_{i}"] = ""


def _results() -> None:
    """The columns of the last run: streaming text, stats, format check, follow-up chat."""
    entries = st.session_state.get(S_COLS) or []
    if not entries:
        return
    out_cols = st.columns(len(entries))
    text_slots = []
    for i, entry in enumerate(entries):
        col = entry["live"].columns[0]
        with out_cols[i]:
            st.markdown(f"**{html.escape(entry['title'])}**")
            for turn in entry["spec"].history:
                who = _("You") if turn["role"] == "user" else _("Model")
                st.caption(f"{who}: {turn['content']}")
            text_slots.append(st.empty())
            if not col.done:
                st.button(_("Stop"), key=f"{K}stop_btn_{i}", on_click=_stop, args=(i,))
                continue
            if col.error:
                st.error(col.error)
            st.caption(_stats(col), help=_("Tokens in and out, time to first token, "
                                           "tokens per second, cost where a price is set."))
            if col.parsed is not None and entry["spec"].output_format.get("type") != "text":
                if col.parsed.valid:
                    st.success(_("The answer fits the output format."))
                    st.dataframe(pd.DataFrame(svc.as_rows(col.parsed.value)), hide_index=True)
                else:
                    st.error(_("The answer does not fit the output format: {reason}").format(
                        reason=col.parsed.reason))
            st.text_input(_("Continue the chat"), key=f"{K}follow_{i}")
            st.button(_("Send"), key=f"{K}send_{i}", on_click=_follow_up, args=(i,))

    def _draw() -> None:
        for slot, entry in zip(text_slots, entries, strict=True):
            c = entry["live"].columns[0]
            slot.markdown(c.text + ("" if c.done else " ▌") if c.text else
                          (_("(no text)") if c.done else _("Waiting for the first token...")))

    _draw()
    if not all(e["live"].done for e in entries):
        while not all(e["live"].done for e in entries):
            time.sleep(0.1)
            _draw()
        st.rerun()

    with st.expander(_("Copy as code")):
        first = entries[0]
        try:
            snippets = svc.code_snippets(actor=actor, model=first["spec"].model,
                                         messages=first["live"].columns[0].messages,
                                         params=first["spec"].params)
            st.code(snippets["python"], language="python")
            st.code(snippets["curl"], language="bash")
        except Exception as exc:  # noqa: BLE001 - shown in words
            show_error(exc, doing=_("Writing the code"))


def _save_form() -> None:
    with st.form(f"{K}save_form"):
        st.markdown(_("**Save as a new version**"))
        c1, c2 = st.columns(2)
        c1.text_input(_("Prompt name"), key=f"{K}save_name")
        c2.text_input(_("What changed"), key=f"{K}save_message")
        if st.form_submit_button(_("Save")):
            try:
                p = svc.save_prompt(actor=actor, name=st.session_state[f"{K}save_name"],
                                    template=st.session_state[S_TEMPLATE],
                                    system=st.session_state[S_SYSTEM],
                                    examples=_examples(), output_format=_output_format(),
                                    context=_context(),
                                    message=st.session_state[f"{K}save_message"])
                st.success(_("Saved {name} version {version}.").format(name=p.name,
                                                                        version=p.version))
            except Exception as exc:  # noqa: BLE001 - shown in words
                show_error(exc, doing=_("Saving the prompt"))


def _run_tab(model_names: list[str], preferred: str | None, raw_names: list[str],
             var_names: list[str], template_error: str | None) -> None:
    _starter()
    _editor()
    if template_error:
        st.error(template_error)
    _kb_context(raw_names)
    _variable_inputs(var_names)

    st.subheader(_("Run side by side"))
    mode = st.radio(_("Compare"), list(MODES), key=f"{K}mode", horizontal=True,
                    format_func=lambda m: MODES[m])
    pair: list[Any] = []
    if mode == "versions":
        pair = _version_pair(var_names)
        n_cols = 2
    else:
        _default(f"{K}n_cols", 1)
        n_cols = int(st.number_input(_("Models side by side"), 1, 4, key=f"{K}n_cols"))
    cols = st.columns(n_cols)
    for i in range(n_cols):
        with cols[i]:
            _column_settings(i, model_names, preferred, same_model=mode == "versions" and i > 0)
    if st.button(_("Run the prompt"), key=f"{K}run", type="primary",
                 disabled=not (template_error is None and model_names)):
        _start(mode, n_cols, pair, var_names)
    _results()
    if can_edit:
        _save_form()


# --- versions ------------------------------------------------------------------------------------

def _restore(name: str, version: int) -> None:
    p = svc.restore_version(actor=actor, name=name, version=version)
    st.session_state[f"{K}flash"] = ("success", _(
        "Version {old} is current again, saved as version {new}.").format(old=version,
                                                                          new=p.version))


def _versions_tab() -> None:
    prompts_list = svc.list_prompts(actor=actor)
    if not prompts_list:
        st.info(_("No saved prompts yet. Save one from the editor."))
        return
    names = [p.name for p in prompts_list]
    _valid_choice(f"{K}v_prompt", names, names[0])
    vname = st.selectbox(_("Prompt"), names, key=f"{K}v_prompt")
    versions = svc.list_versions(actor=actor, name=vname)
    st.dataframe(pd.DataFrame([{_("Version"): v.version, _("Message"): v.message,
                                _("Saved"): v.created_at.strftime("%Y-%m-%d %H:%M"),
                                _("Variables"): ", ".join(v.variables)}
                               for v in versions]), hide_index=True, width="stretch")
    numbers = [v.version for v in versions]
    c1, c2 = st.columns(2)
    a = c1.selectbox(_("From version"), numbers, index=min(1, len(numbers) - 1),
                     key=f"{K}v_a_{vname}_{numbers[0]}")
    b = c2.selectbox(_("To version"), numbers, key=f"{K}v_b_{vname}_{numbers[0]}")
    diffs = svc.compare_versions(actor=actor, name=vname, a=a, b=b)
    if not diffs:
        st.info(_("The two versions are the same."))
    for d in diffs:
        st.code(d.diff, language="diff")
    if can_edit:
        st.button(_("Restore version {n}").format(n=a), key=f"{K}v_restore",
                  on_click=_restore, args=(vname, a))


# --- history -------------------------------------------------------------------------------------

def _history_tab() -> None:
    q = st.text_input(_("Search prompt runs"), key=f"{K}h_search",
                      placeholder=_("Text in the prompt, the variables, the answer or the model"))
    history = svc.list_runs(actor=actor, search=q, limit=200)
    if not history:
        st.info(_("No runs yet."))
        return
    st.dataframe(pd.DataFrame([{
        "#": r.id, _("When"): r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        _("Model"): r.model, _("Prompt"): f"{r.prompt_name} v{r.version}"
        if r.prompt_name else "-", _("Answer"): r.text[:120],
        _("Tokens in"): r.tokens_in, _("Tokens out"): r.tokens_out,
        _("Tokens/s"): round(r.tokens_per_s, 1) if r.tokens_per_s else None,
    } for r in history]), hide_index=True, width="stretch")
    rid = st.selectbox(_("Run"), [r.id for r in history], key=f"{K}h_pick",
                       format_func=lambda i: f"#{i}")
    run = next(r for r in history if r.id == rid)
    st.json({"variables": run.variables, "params": run.params}, expanded=False)
    st.code(run.text or _("(no text)"), language=None, wrap_lines=True)
    st.button(_("Open in the editor"), key=f"{K}h_open", on_click=_load_run, args=(rid,))


# --- batch evaluation ----------------------------------------------------------------------------

def _data_file_changed() -> None:
    st.session_state.pop(S_EVAL_FILE, None)  # a new file, or the file was removed


def _data_rows() -> list[dict[str, Any]]:
    """The uploaded file's rows; kept when another page was visited (the uploader forgets)."""
    upload = st.file_uploader(_("Data file"), type=["csv", "jsonl"], key=f"{K}e_file",
                              on_change=_data_file_changed)
    if upload is not None:
        try:
            rows = prompt_eval.parse_data_file(actor=actor, data=upload.getvalue(),
                                               filename=upload.name)
        except ValueError as exc:
            show_error(exc, doing=_("Reading the file"))
            return []
        st.session_state[S_EVAL_FILE] = (upload.name, rows)
    elif S_EVAL_FILE in st.session_state:
        name, rows = st.session_state[S_EVAL_FILE]
        st.caption(_("Using {name}, uploaded earlier.").format(name=name))
    else:
        return []
    st.dataframe(pd.DataFrame(rows).head(20), hide_index=True)
    st.caption(_("{n} rows").format(n=len(rows)))
    return list(rows)


def _eval_source() -> int | None:
    """Say which prompt the evaluation runs; the saved version when the editor holds one."""
    name = str(st.session_state.get(f"{K}save_name") or "").strip()
    version = None
    if name and st.session_state[S_TEMPLATE].strip():
        version = prompt_drafts.saved_version(actor=actor, name=name, parts=_parts(),
                                              output_format=_output_format(),
                                              context=_context())
    if version is not None:
        st.markdown(_("Runs version {version} of **{name}**, as it is in the editor.").format(
            version=version, name=name))
    elif name:
        st.markdown(_("Runs the prompt in the editor, which is not a saved version of "
                      "**{name}** (save it to evaluate it as a version).").format(name=name))
    else:
        st.markdown(_("Runs the prompt in the editor, which is not saved yet."))
    return version


def _eval_tab(model_names: list[str], preferred: str | None, var_names: list[str]) -> None:
    st.caption(_("Upload a CSV or JSONL file: one row per example, a column per variable, and "
                 "optionally a column `expected` with the right answer."))
    version = _eval_source()
    rows = _data_rows()
    if rows:
        fill = prompt_drafts.fill_missing_columns(actor=actor, rows=rows, names=var_names,
                                                  values=_variables(var_names))
        for name, value in fill.filled.items():
            st.info(_("The file has no column {name}: its rows use the editor's value "
                      "“{value}”.").format(name=name, value=value))
        for name in fill.missing:
            st.warning(_("The file has no column {name} and the editor has no value for it: "
                         "add the column, or fill the variable on the first tab.").format(
                name=name))
        rows = fill.rows
    picked = [m for m in st.session_state.get(f"{K}e_models") or [] if m in model_names]
    if picked != st.session_state.get(f"{K}e_models", picked):  # a model was removed
        _set(f"{K}e_models", picked)
    _default(f"{K}e_models", [preferred] if preferred else [])
    e_models = st.multiselect(_("Models (1-4)"), model_names, key=f"{K}e_models",
                              max_selections=4)
    scorings = {"exact": _("Exact match"), "contains": _("Contains the expected text"),
                "regex": _("Regular expression"), "json": _("Valid JSON (fits the format)"),
                "judge": _("Judge model with a rubric")}
    scoring = st.selectbox(_("Scoring"), list(scorings), key=f"{K}e_scoring",
                           format_func=lambda s: scorings[s])
    if scoring == "regex":
        st.text_input(_("Pattern (empty: each row's expected value)"), key=f"{K}e_pattern")
    if scoring == "judge":
        _valid_choice(f"{K}e_judge", model_names, preferred)
        st.selectbox(_("Judge model"), model_names, key=f"{K}e_judge")
        st.text_area(_("Rubric"), key=f"{K}e_rubric",
                     placeholder=_("What a good answer does, e.g. correct, polite, under 50 "
                                   "words."))
    c1, c2, c3 = st.columns(3)
    _default(f"{K}e_batch", 32)
    _default(f"{K}e_conc", 4)
    _default(f"{K}e_max", 128)
    c1.number_input(_("Rows per batch (local models)"), 1, 256, key=f"{K}e_batch")
    c2.number_input(_("Requests at once (endpoints)"), 1, 64, key=f"{K}e_conc")
    c3.number_input(_("Max new tokens"), 1, 8192, key=f"{K}e_max")
    if st.button(_("Start the evaluation"), key=f"{K}e_start", disabled=not can_edit):
        try:
            saved = {"prompt": st.session_state[f"{K}save_name"].strip(), "version": version} \
                if version is not None else {"parts": _parts(), "output_format": _output_format(),
                                             "context": _context()}
            st.session_state[f"{K}e_job"] = prompt_eval.submit_eval(
                actor=actor, rows=rows, models=e_models, **saved,
                params={"max_new_tokens": int(st.session_state[f"{K}e_max"]),
                        "temperature": 0},
                scoring=scoring, pattern=st.session_state.get(f"{K}e_pattern") or None,
                rubric=st.session_state.get(f"{K}e_rubric") or "",
                judge_model=st.session_state.get(f"{K}e_judge"),
                batch_size=int(st.session_state[f"{K}e_batch"]),
                concurrency=int(st.session_state[f"{K}e_conc"]))
        except Exception as exc:  # noqa: BLE001 - shown in words
            show_error(exc, doing=_("Starting the evaluation"))
    job_id = st.session_state.get(f"{K}e_job")
    if job_id:
        _eval_results(int(job_id))


def _eval_results(job_id: int) -> None:
    job_progress(job_id, actor=actor, key=f"{K}e_progress", show_metrics=False)
    job = get_job(actor=actor, job_id=job_id)
    if job.status != "succeeded":
        return
    res = prompt_eval.eval_results(actor=actor, job_id=job_id)
    summary = pd.DataFrame([{
        _("Model"): s["model"], _("Score"): s["score"], _("Rows"): s["rows"],
        _("Scored"): s["scored"], _("Errors"): s["errors"],
        _("Rows/s"): round(s["rows_per_s"] or 0, 2)} for s in res.summary])
    st.dataframe(summary, hide_index=True)
    fig = go.Figure(go.Bar(x=[s["model"] for s in res.summary],
                           y=[s["score"] or 0 for s in res.summary]))
    fig.update_layout(yaxis_title=_("Score"), yaxis_range=[0, 1], height=260,
                      margin={"l": 10, "r": 10, "t": 10, "b": 10})
    st.plotly_chart(fig)
    shown = st.text_input(_("Search the results"), key=f"{K}e_search")
    table = pd.DataFrame([{
        _("Row"): r["row"], _("Model"): r["model"],
        _("Variables"): json.dumps(r["variables"], ensure_ascii=False),
        _("Expected"): r["expected"], _("Answer"): r["output"], _("Score"): r["score"],
        _("Note"): r["note"] or (r["error"] or "")} for r in res.rows])
    if shown:
        mask = table.astype(str).apply(lambda c: c.str.contains(shown, case=False,
                                                                regex=False)).any(axis=1)
        table = table[mask]
    st.dataframe(table, hide_index=True, width="stretch")
    st.download_button(_("Download the results (CSV)"),
                       prompt_eval.eval_csv(actor=actor, job_id=job_id),
                       file_name=f"evaluation-{job_id}.csv", mime="text/csv",
                       key=f"{K}e_download")


# --- tokens and attention ------------------------------------------------------------------------

def _tokens_tab(chat_models: list[Any], model_names: list[str], var_names: list[str]) -> None:
    local = _local_models(chat_models)
    if not local:
        st.info(_("Token and attention views need a local model (endpoints keep their "
                  "tokenizer to themselves)."))
    else:
        first = st.session_state.get(f"{K}model_0")
        _valid_choice(f"{K}t_model", local, first if first in local else local[0])
        _default(f"{K}t_model", first if first in local else local[0])
        t_model = st.selectbox(_("Model"), local, key=f"{K}t_model")
        _token_view(t_model, var_names)
    if can_edit and model_names:
        _prices(model_names)


def _token_view(t_model: str, var_names: list[str]) -> None:
    messages: list[dict[str, str]] = []
    if not st.session_state[S_TEMPLATE].strip():
        st.info(_("Write a user message template to see how the model reads it."))
        return
    try:
        messages = svc.render_parts(actor=actor, parts=_parts(),
                                    variables=_variables(var_names), context=_context())
    except svc.MissingVariables as exc:
        st.warning(_("Fill in the variable(s) {names} to see the tokens.").format(
            names=", ".join(exc.names)))
        return
    except Exception as exc:  # noqa: BLE001 - shown in words
        show_error(exc, doing=_("Rendering the prompt"))
        return
    try:
        tv = svc.token_view(actor=actor, model=t_model, messages=messages)
        if tv.context_window:
            st.progress(min(1.0, tv.count / tv.context_window),
                        text=_("{count} tokens of a {window}-token context window "
                               "({share})").format(count=tv.count, window=tv.context_window,
                                                   share=f"{tv.share:.1%}"))
        else:
            st.metric(_("Tokens"), tv.count)
        palette = ["#fde68a", "#bfdbfe", "#bbf7d0", "#fecaca", "#ddd6fe", "#fed7aa"]
        spans = []
        for j, t in enumerate(tv.tokens):
            colour = "#e5e7eb" if t.special else palette[j % len(palette)]
            text = html.escape(t.text).replace("\n", "↵<br>")
            spans.append(f'<span title="{t.id}" style="background:{colour};'
                         f'padding:1px 2px;margin:1px;border-radius:3px;'
                         f'white-space:pre-wrap">{text}</span>')
        st.markdown(f'<div style="line-height:2">{"".join(spans)}</div>',
                    unsafe_allow_html=True)
        with st.expander(_("Token ids")):
            st.dataframe(pd.DataFrame([{"#": j, _("Token"): t.text, "id": t.id}
                                       for j, t in enumerate(tv.tokens)]), hide_index=True)
        _attention(t_model, messages)
    except Exception as exc:  # noqa: BLE001 - shown in words
        show_error(exc, doing=_("Reading the tokens"))


def _attention(t_model: str, messages: list[dict[str, str]]) -> None:
    st.subheader(_("Attention"))
    st.caption(_("Each row is a token; the colours show how much it attends to "
                 "each earlier token in the chosen layer and head."))
    c1, c2 = st.columns(2)
    layer = int(c1.number_input(_("Layer"), 1, 256, 1, key=f"{K}t_layer"))
    head = int(c2.number_input(_("Head"), 1, 256, 1, key=f"{K}t_head"))
    if not (st.button(_("Show attention"), key=f"{K}t_show")
            or st.session_state.get(f"{K}t_shown")):
        return
    st.session_state[f"{K}t_shown"] = True
    with st.spinner(_("Computing attention...")):
        av = svc.attention_view(actor=actor, model=t_model, messages=messages,
                                layer=layer - 1, head=head - 1)
    labels = [f"{j}: {t}" for j, t in enumerate(av.tokens)]
    fig = go.Figure(go.Heatmap(z=av.weights, x=labels, y=labels, colorscale="Blues", zmin=0,
                               hovertemplate=_("token %{y} attends to %{x}: %{z:.3f}")
                               + "<extra></extra>"))
    fig.update_layout(height=max(400, 14 * len(labels)), yaxis={"autorange": "reversed"},
                      xaxis_title=_("Attended token (key)"), yaxis_title=_("Token (query)"),
                      margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      title=_("Layer {layer} of {layers}, head {head} of {heads}").format(
                          layer=layer, layers=av.layers, head=head, heads=av.heads))
    st.plotly_chart(fig)
    if av.truncated:
        st.caption(_("Only the first {n} tokens are shown.").format(n=len(av.tokens)))


def _prices(model_names: list[str]) -> None:
    with st.expander(_("Model prices (for the cost of a run)")):
        pm = st.selectbox(_("Model"), model_names, key=f"{K}price_model")
        pin, pout = svc.model_prices(actor=actor, model=pm)
        c1, c2 = st.columns(2)
        new_in = c1.number_input(_("Price per million tokens in"), 0.0, 1e5, float(pin or 0),
                                 key=f"{K}price_in_{pm}")
        new_out = c2.number_input(_("Price per million tokens out"), 0.0, 1e5,
                                  float(pout or 0), key=f"{K}price_out_{pm}")
        if st.button(_("Save prices"), key=f"{K}price_save"):
            svc.set_model_price(actor=actor, model=pm, input_per_mtok=new_in,
                                output_per_mtok=new_out)
            st.success(_("Prices saved."))


# --- page ----------------------------------------------------------------------------------------

def main() -> None:
    st.session_state.setdefault(f"{K}examples_data", [])
    st.session_state.setdefault(f"{K}examples_rev", 0)
    _sync_draft()
    for key, value in ((S_SYSTEM, ""), (S_TEMPLATE, ""), (S_SCHEMA, ""), (S_FORMAT, "text")):
        _default(key, value)
    if f"{K}schema_next" in st.session_state:  # built from fields in the previous run
        _set(S_SCHEMA, st.session_state.pop(f"{K}schema_next"))

    st.title(_("Playground"))
    st.caption(_("Design a prompt, run it against models side by side, keep its versions, "
                 "evaluate it over a data file, and see how a model reads it."))
    try:
        chat_models = list_models(actor=actor, capability="chat")
    except Exception as exc:  # noqa: BLE001 - shown in words
        show_error(exc, doing=_("Listing the models"))
        st.stop()
    model_names = [m.name for m in chat_models]
    _apply_model_param(model_names)
    flash_slot = st.empty()  # always here, so the tabs below keep their place and open tab
    flash = st.session_state.pop(f"{K}flash", None)
    if flash:
        with flash_slot:
            getattr(st, flash[0])(flash[1])
    if not model_names:
        st.info(_("No chat model is registered yet. Add one on the Models page (a tiny demo "
                  "model takes a second)."))
    preferred = st.session_state.get(f"{K}model_0")
    if preferred not in model_names:
        preferred = prompt_drafts.default_model(actor=actor, models=model_names)
    raw_names, var_names, template_error = _draft_variables()

    tab_run, tab_versions, tab_history, tab_eval, tab_tokens = st.tabs([
        _("Prompt and run"), _("Versions"), _("History"), _("Batch evaluation"),
        _("Tokens and attention")])
    with tab_run:
        _run_tab(model_names, preferred, raw_names, var_names, template_error)
    with tab_versions:
        _versions_tab()
    with tab_history:
        _history_tab()
    with tab_eval:
        _eval_tab(model_names, st.session_state.get(f"{K}model_0") or preferred, var_names)
    with tab_tokens:
        _tokens_tab(chat_models, model_names, var_names)


main()
