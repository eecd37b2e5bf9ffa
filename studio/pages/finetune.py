"""Fine-tune: a five-step wizard. Choose a base model, prepare the data (upload, validate,
preview with the loss tokens marked), train (preset or own settings, with an estimate for the
workers' hardware), evaluate (loss, perplexity, base and tuned answers side by side) and deploy
(the registered model, a zip download, the playground)."""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from backend.accounts.actor import Role
from backend.services import datasets as datasets_service
from backend.services import finetune as finetune_service
from backend.services import knowledge as knowledge_service
from backend.services import models as models_service
from backend.services.jobs import JobView, get_job
from studio.components.errors import show_error
from studio.components.jobs_widgets import job_progress, job_title, log_tail, status_with_icon
from studio.components.lineage import lineage_caption
from studio.components.page_links import page_link
from studio.components.session import current_actor, require_page_role
from studio.formatting import format_duration, format_number, format_relative
from studio.i18n import _

actor = current_actor()
require_page_role(actor, Role.builder)  # users chat with the bots
can_edit = actor.has_role(Role.builder)

STEP = "ft_step"
MODEL = "ft_model"
DATASET = "ft_dataset"
JOB = "ft_job"
STEPS = ["model", "data", "train", "evaluate", "deploy"]
STEP_LABELS = {
    "model": _("1 · Choose a model"),
    "data": _("2 · Prepare data"),
    "train": _("3 · Train"),
    "evaluate": _("4 · Evaluate"),
    "deploy": _("5 · Deploy"),
}
METHOD_LABELS = {
    "lora": _("LoRA (small adapter, the usual choice)"),
    "qlora": _("QLoRA (4-bit base, needs a CUDA GPU)"),
    "full": _("Full fine-tuning (every weight, small models)"),
    "dpo": _("DPO (preference pairs)"),
}
PRESET_LABELS = {
    "quick": _("Quick: one pass, small adapter"),
    "balanced": _("Balanced: three passes (recommended)"),
    "thorough": _("Thorough: five passes, larger adapter"),
}
SCHEDULE_LABELS = {
    "cosine": _("Cosine decay"),
    "linear": _("Linear decay"),
    "constant": _("Constant"),
}
FORMAT_LABELS = {
    "auto": _("Detect"),
    "alpaca": _("Instruction and answer (instruction/input/output)"),
    "chat": _("Chat (messages: role/content)"),
    "preference": _("Preference pairs (prompt/chosen/rejected)"),
}

st.title(_("Fine-tune"))
st.caption(_("Teach a model your team's answers: pick a base model, bring examples, train, "
             "compare the answers before and after, then use the result everywhere."))



# The wizard's choices (step, model, dataset, run) live in plain session-state keys that no
# widget owns: Streamlit forgets a widget's key when the widget is not drawn on a rerun (the
# model picker is only drawn in step 1), so each picker has a key of its own, is set from the
# choice before it is drawn, and copies a new pick back into the choice.

def _keep(widget_key: str, state_key: str) -> None:
    st.session_state[state_key] = st.session_state[widget_key]


def _bind(widget_key: str, state_key: str, options: list[Any]) -> dict[str, Any]:
    """Set the picker ``widget_key`` to the choice ``state_key`` (the first option when the
    choice is not among them) before it is drawn; returns the picker's keyword arguments."""
    value = st.session_state.get(state_key)
    if value not in options:
        value = options[0]
        st.session_state[state_key] = value
    if st.session_state.get(widget_key) != value:
        st.session_state[widget_key] = value
    return {"key": widget_key, "on_change": _keep, "args": (widget_key, state_key)}


def _go(step: str) -> None:
    st.session_state[STEP] = step


def _next_button(step: str, label: str) -> None:
    st.button(label, key=f"ft_next_{step}", on_click=_go, args=(step,),
              icon=":material/arrow_forward:")


# the training settings and the names typed in a step, kept while another step is shown (a
# widget's own value is dropped on a rerun that does not draw it; one written back through
# the Session State API is kept); a widget whose key holds a value is drawn without a default
PRESET_KEYS = ["ft_ep", "ft_bs", "ft_ga", "ft_len", "ft_r", "ft_drop", "ft_val", "ft_seed"]
KEPT = ["ft_preset", "ft_method", "ft_lr", "ft_sched", "ft_pack", "ft_ans", "ft_targets",
        "ft_out_name", "ft_ds_name", "ft_format", "ft_ds_search", *PRESET_KEYS]
for _key in KEPT:
    if _key in st.session_state:
        st.session_state[_key] = st.session_state[_key]


def _kept(key: str, **default: Any) -> dict[str, Any]:
    return {"key": key} if key in st.session_state else {"key": key, **default}


def _preset_changed() -> None:
    """Another preset: its own epochs, batch size, rank... replace the ones shown."""
    for key in PRESET_KEYS:
        st.session_state.pop(key, None)


if st.session_state.get(STEP) not in STEPS:
    st.session_state[STEP] = "model"
step = st.segmented_control(_("Step"), STEPS, format_func=lambda s: STEP_LABELS[s],
                            required=True, label_visibility="collapsed",
                            **_bind("ft_step_pick", STEP, STEPS)) or st.session_state[STEP]


def _local_models() -> list[models_service.ModelView]:
    return [m for m in models_service.list_models(actor=actor, capability="chat")
            if m.kind in ("local", "produced")]


def _marked(runs: list[dict[str, Any]]) -> str:
    """An example as HTML: answer tokens (they count for the loss) highlighted."""
    parts = []
    for r in runs:
        text = html.escape(r["text"])
        if r["loss"]:
            parts.append(f'<span style="background:#c8f7d4;color:#0b3d1b">{text}</span>')
        else:
            parts.append(f'<span style="color:#6b7280">{text}</span>')
    return ('<pre style="white-space:pre-wrap;font-size:0.85rem;margin:0">'
            + "".join(parts) + "</pre>")


# --- 1. model ------------------------------------------------------------------------------

def _model_step() -> None:
    st.subheader(_("Choose the base model"))
    models = _local_models()
    if not models:
        st.info(_("No local model is registered yet. Add one on the Models page (a folder, or "
                  "a tiny demo model), or pre-train one."))
        page_link("models", label=_("Open Models"), icon="🧠")
        return
    names = [m.name for m in models]
    name = st.selectbox(_("Base model"), names, **_bind("ft_model_pick", MODEL, names),
                        help=_("Any local model, including the ones the studio pre-trained."))
    try:
        info = finetune_service.base_model_info(actor=actor, model=name)
    except (ValueError, LookupError, OSError) as exc:
        show_error(exc, doing=_("Reading the model"))
        return
    cols = st.columns(4)
    cols[0].metric(_("Parameters"), format_number(info.parameters / 1e6, digits=3) + " M")
    cols[1].metric(_("Architecture"), info.architecture)
    cols[2].metric(_("Context length"), format_number(info.context_length)
                   if info.context_length else "—")
    cols[3].metric(_("Size on disk"), format_number(info.size_bytes / 2**20, digits=3) + " MiB")
    if info.chat_template:
        with st.expander(_("Chat template")):
            st.code(info.chat_template, language="jinja2")
    else:
        st.warning(_("This model has no chat template: examples are laid out as plain "
                     "'role: text' lines."))
    _next_button("data", _("Next: prepare the data"))


# --- 2. data -------------------------------------------------------------------------------

def _issues_table(issues: list[datasets_service.Issue]) -> None:
    st.dataframe({_("Line"): [i.line for i in issues], _("Problem"): [i.message for i in issues]},
                 hide_index=True, key="ft_issues")


def _name_from_file() -> None:
    """A file was chosen: its name (without the extension) becomes the dataset name, unless
    the person typed a name of their own."""
    upload = st.session_state.get("ft_file")
    if upload is None:
        return
    stem = upload.name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    suggested = "-".join(stem.split()) or stem
    typed = st.session_state.get("ft_ds_name", "")
    if not typed.strip() or typed == st.session_state.get("ft_ds_name_suggested"):
        st.session_state["ft_ds_name"] = suggested
    st.session_state["ft_ds_name_suggested"] = suggested


def _upload_form() -> datasets_service.DatasetView | None:
    """The file, its name and format, and "Check and add". Returns the dataset it saved."""
    upload = st.file_uploader(_("Examples file (JSONL, JSON or CSV)"),
                              type=["jsonl", "json", "csv"], key="ft_file",
                              on_change=_name_from_file)
    cols = st.columns(2)
    name = cols[0].text_input(_("Dataset name"), key="ft_ds_name",
                              help=_("Filled in from the file's name. An existing name gets a "
                                     "new version."))
    fmt = cols[1].selectbox(_("Format"), list(FORMAT_LABELS),
                            format_func=lambda f: FORMAT_LABELS[f], key="ft_format")
    if not st.button(_("Check and add"), type="primary", key="ft_add", disabled=not can_edit):
        return None
    if upload is None or not name.strip():
        st.error(_("Choose a file and give the dataset a name."))
        return None
    try:
        with st.spinner(_("Checking every record…")):
            view = datasets_service.add_dataset(
                actor=actor, name=name.strip(), filename=upload.name, data=upload.getvalue(),
                format=None if fmt == "auto" else fmt,
                base_model=st.session_state.get(MODEL), max_length=None)
    except datasets_service.DatasetInvalid as exc:
        st.error(_("{count} record(s) need fixing; nothing was saved.").format(
            count=len(exc.issues)))
        _issues_table(exc.issues)
        return None
    except Exception as exc:  # noqa: BLE001 - shown in words
        show_error(exc, doing=_("Adding the dataset"))
        return None
    st.session_state[DATASET] = view.name
    return view


def _histogram(hist: list[dict[str, int]]) -> go.Figure:
    fig = go.Figure(go.Bar(x=[f"{h['start']}–{h['end']}" for h in hist],
                           y=[h["count"] for h in hist]))
    fig.update_layout(title={"text": _("Example length in tokens"), "font": {"size": 14}},
                      xaxis_title=_("Tokens"), yaxis_title=_("Examples"), height=260,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def _preview(dataset: str) -> None:
    model = st.session_state.get(MODEL)
    if not model:
        st.info(_("Choose a base model in step 1 to preview the examples through its chat "
                  "template."))
        return
    try:
        prev = datasets_service.preview(actor=actor, dataset=dataset, base_model=model)
    except Exception as exc:  # noqa: BLE001
        show_error(exc, doing=_("Previewing the dataset"))
        return
    cols = st.columns(4)
    cols[0].metric(_("Records"), format_number(prev["records"]))
    cols[1].metric(_("Training"), format_number(prev["train"]))
    cols[2].metric(_("Validation"), format_number(prev["validation"]))
    cols[3].metric(_("Longest (tokens)"), format_number(prev["max_tokens"]))
    if prev["duplicates"]:
        st.warning(_("{count} duplicate record(s): {lines}").format(
            count=len(prev["duplicates"]),
            lines=", ".join(_("line {line} repeats line {first}").format(
                line=d["line"], first=d["duplicate_of"]) for d in prev["duplicates"][:10])))
    st.plotly_chart(_histogram(prev["histogram"]), key="ft_hist",
                    config={"displaylogo": False})
    st.markdown(_("**How the model sees the examples.** Highlighted text is "
                  "what it learns to write (it counts for the loss); grey text is the prompt."))
    for i, runs in enumerate(prev["examples"], 1):
        with st.container(border=True):
            st.caption(_("Example {n}").format(n=i))
            st.html(_marked(runs))


def _kb_builder() -> None:
    """A model writes question/answer pairs from a knowledge base's passages (a job); people
    review, edit and delete them, then save."""
    st.caption(_("A model writes one question and answer per passage. Review the pairs, edit "
                 "or delete rows, then save them as a dataset."))
    bases = knowledge_service.list_knowledge_bases(actor=actor)
    chat_models = [m.name for m in models_service.list_models(actor=actor, capability="chat")]
    if not bases or not chat_models:
        st.info(_("This needs a knowledge base with documents and a chat model."))
        return
    c = st.columns(3)
    kb = c[0].selectbox(_("Knowledge base"), [b.name for b in bases], key="ft_kb")
    writer = c[1].selectbox(_("Model that writes the pairs"), chat_models, key="ft_kb_model")
    limit = c[2].number_input(_("Passages, at most"), 1, 5000, 20, key="ft_kb_max")
    if st.button(_("Write pairs"), key="ft_kb_start", disabled=not can_edit):
        try:
            st.session_state["ft_kb_job"] = datasets_service.start_qa_generation(
                actor=actor, kb=kb, model=writer, max_chunks=int(limit)).id
        except Exception as exc:  # noqa: BLE001
            show_error(exc, doing=_("Writing pairs"))
    job_id = st.session_state.get("ft_kb_job")
    if not job_id:
        return
    job = job_progress(job_id, actor=actor, key="ft_kb_job_view", show_metrics=False)
    if job is None or job.status != "succeeded":
        return
    pairs = (job.result or {}).get("pairs", [])
    edited = st.data_editor(
        {"question": [p["question"] for p in pairs], "answer": [p["answer"] for p in pairs]},
        num_rows="dynamic", key="ft_kb_pairs", use_container_width=True,
        column_config={"question": st.column_config.TextColumn(_("Question")),
                       "answer": st.column_config.TextColumn(_("Answer"))})
    name = st.text_input(_("Dataset name"), key="ft_kb_name")
    if st.button(_("Save the reviewed pairs"), key="ft_kb_save",
                 disabled=not can_edit or not name.strip()):
        rows = [{"question": q, "answer": a} for q, a in
                zip(edited["question"], edited["answer"], strict=True) if q and a]
        try:
            view = datasets_service.save_qa_pairs(actor=actor, name=name, pairs=rows)
        except datasets_service.DatasetInvalid as exc:
            _issues_table(exc.issues)
        except Exception as exc:  # noqa: BLE001
            show_error(exc, doing=_("Saving the pairs"))
        else:
            st.session_state[DATASET] = view.name
            _saved(view)


def _saved(view: datasets_service.DatasetView) -> None:
    st.success(_("Saved {name} version {version} with {count} records.").format(
        name=view.name, version=view.latest_version, count=view.records))


def _data_step() -> None:
    st.subheader(_("Prepare the data"))
    # the list is drawn after the forms below ran, so a dataset saved by them is in it
    listing = st.container()
    existing = bool(datasets_service.list_datasets(actor=actor))
    with st.expander(_("Upload a new dataset (or a new version)"), expanded=not existing):
        st.caption(_("Instruction form: `instruction`, `input`, `output`. Chat form: `messages` "
                     "with roles (`system`, `user`, `assistant`). Preference form: `prompt`, "
                     "`chosen`, `rejected`. Every record is checked; a bad line is reported by "
                     "number and nothing is saved."))
        saved = _upload_form()
    with st.expander(_("Build a dataset from a knowledge base")):
        _kb_builder()
    with st.expander(_("Build a dataset from agent feedback")):
        st.caption(_("Thumbs-up answers become chat examples; thumbs-down answers whose comment "
                     "gives the corrected answer become preference pairs (for DPO)."))
        fb_name = st.text_input(_("Dataset name"), key="ft_fb_name")
        if st.button(_("Build from feedback"), key="ft_fb_build",
                     disabled=not can_edit or not fb_name.strip()):
            try:
                out = datasets_service.build_from_feedback(actor=actor, name=fb_name)
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Building the dataset from feedback"))
            else:
                st.success(_("{chat} chat example(s) and {pairs} preference pair(s) saved.")
                           .format(chat=len(out["chat"]), pairs=len(out["preference"])))
    with listing:
        if saved is not None:
            _saved(saved)
        search = st.text_input(_("Search datasets"), key="ft_ds_search")
        views = datasets_service.list_datasets(actor=actor, search=search)
        if views:
            st.dataframe({
                _("Name"): [v.name for v in views],
                _("Format"): [FORMAT_LABELS.get(v.format, v.format) for v in views],
                _("Version"): [v.latest_version for v in views],
                _("Records"): [v.records for v in views],
                _("Added"): [format_relative(v.created_at) for v in views],
            }, hide_index=True, key="ft_ds_table")
            names = [v.name for v in views]
            chosen = st.session_state.get(DATASET)
            if chosen is None or chosen in names or not search:
                st.selectbox(_("Dataset to train on"), names,
                             **_bind("ft_dataset_pick", DATASET, names))
            else:
                    st.caption(_("The chosen dataset, {name}, is not among the ones found.")
                           .format(name=chosen))
        elif search:
            st.info(_("No dataset matches the search."))
        else:
            st.info(_("No dataset yet: upload one below."))
    if st.session_state.get(DATASET):
        st.divider()
        _preview(st.session_state[DATASET])
        _next_button("train", _("Next: train"))


# --- 3. train ------------------------------------------------------------------------------

def _settings_form() -> dict[str, Any]:
    preset = st.radio(_("Preset"), list(PRESET_LABELS), format_func=lambda p: PRESET_LABELS[p],
                      horizontal=True, on_change=_preset_changed,
                      **_kept("ft_preset", index=1))
    base = finetune_service.PRESETS[preset]
    available = finetune_service.methods_available()
    method = st.selectbox(_("Method"), list(METHOD_LABELS),
                          format_func=lambda m: METHOD_LABELS[m], **_kept("ft_method"))
    if available.get(method):
        st.warning(str(available[method]))
    s: dict[str, Any] = {"method": method}
    with st.expander(_("Settings"), expanded=False):
        c = st.columns(3)
        s["epochs"] = c[0].number_input(_("Epochs"), 0.1, 1000.0,
                                        **_kept("ft_ep", value=float(base.epochs)))
        lr = c[1].number_input(_("Learning rate (0: automatic)"), 0.0, 0.5, format="%.5f",
                               **_kept("ft_lr", value=0.0))
        s["learning_rate"] = lr or None
        s["lr_schedule"] = c[2].selectbox(_("Schedule"), list(SCHEDULE_LABELS),
                                          format_func=lambda k: SCHEDULE_LABELS[k],
                                          **_kept("ft_sched"))
        c = st.columns(3)
        s["batch_size"] = c[0].number_input(_("Batch size"), 1, 256,
                                            **_kept("ft_bs", value=base.batch_size))
        s["grad_accum"] = c[1].number_input(_("Gradient accumulation"), 1, 128,
                                            **_kept("ft_ga", value=base.grad_accum))
        s["max_length"] = c[2].number_input(_("Maximum length (tokens)"), 16, 131072,
                                            **_kept("ft_len", value=base.max_length))
        c = st.columns(3)
        s["lora_rank"] = c[0].number_input(_("LoRA rank"), 1, 1024,
                                           **_kept("ft_r", value=base.lora_rank))
        s["lora_dropout"] = c[1].number_input(_("LoRA dropout"), 0.0, 0.9,
                                              **_kept("ft_drop", value=base.lora_dropout))
        s["val_fraction"] = c[2].number_input(_("Validation share"), 0.0, 0.5,
                                              **_kept("ft_val", value=base.val_fraction))
        c = st.columns(3)
        s["packing"] = c[0].toggle(_("Packing"), **_kept("ft_pack", value=False),
                                   help=_("Put several short examples in one row: faster on "
                                          "data of varied length."))
        s["answers_only"] = c[1].toggle(_("Loss on answers only"),
                                        **_kept("ft_ans", value=True))
        s["seed"] = c[2].number_input(_("Seed"), 0, 2**31 - 1,
                                      **_kept("ft_seed", value=base.seed))
        targets = st.text_input(_("LoRA target modules (comma-separated; empty: the "
                                  "architecture's default)"), key="ft_targets")
        if targets.strip():
            s["target_modules"] = [t.strip() for t in targets.split(",") if t.strip()]
    s["preset"] = preset
    return s


def _train_step() -> None:
    st.subheader(_("Train"))
    model, dataset = st.session_state.get(MODEL), st.session_state.get(DATASET)
    if not model or not dataset:
        st.info(_("Choose a base model (step 1) and a dataset (step 2) first."))
        return
    st.markdown(_("Base model **{model}**, dataset **{dataset}**.").format(
        model=model, dataset=dataset))
    settings = _settings_form()
    preset = settings.pop("preset")
    try:
        config = finetune_service.make_config(preset=preset, settings=settings)
        est = finetune_service.estimate_run(actor=actor, base_model=model, dataset=dataset,
                                            config=config)
    except Exception as exc:  # noqa: BLE001
        show_error(exc, doing=_("Checking the settings"))
        return
    cols = st.columns(3)
    cols[0].metric(_("Memory needed"), format_number(est.memory_gb, digits=2) + " GiB")
    cols[1].metric(_("Estimated time"), format_duration(est.seconds))
    cols[2].metric(_("Runs on"), est.device)
    if est.warning:
        st.warning(est.warning, icon=":material/warning:")
    name = st.text_input(_("Name of the fine-tuned model"), key="ft_out_name",
                         placeholder=f"{model}-{dataset}-{config.method}")
    if st.button(_("Start training"), type="primary", key="ft_start", disabled=not can_edit):
        try:
            job = finetune_service.start_finetune(actor=actor, base_model=model,
                                                  dataset=dataset, config=config,
                                                  name=name.strip() or None)
        except Exception as exc:  # noqa: BLE001
            show_error(exc, doing=_("Starting the fine-tune"))
            return
        st.session_state[JOB] = job.id
        st.success(_("Training started as job #{id}. Follow it here or in step 4.").format(
            id=job.id))
    if st.session_state.get(JOB):
        job_progress(st.session_state[JOB], actor=actor, key="ft_train_job")
        _next_button("evaluate", _("Next: evaluate"))


# --- 4. evaluate ---------------------------------------------------------------------------

def _pick_run() -> JobView | None:
    runs = finetune_service.list_runs(actor=actor)
    if not runs:
        st.info(_("No fine-tune has run yet. Start one in step 3."))
        return None
    by_id = {r.id: r for r in runs}
    picked = st.selectbox(_("Fine-tune run"), list(by_id),
                          format_func=lambda i: f"#{i} {status_with_icon(by_id[i].status)} "
                                                f"{job_title(by_id[i])}",
                          **_bind("ft_run_pick", JOB, list(by_id)))
    return get_job(actor=actor, job_id=picked)


def _evaluate_step() -> None:
    st.subheader(_("Evaluate"))
    job = _pick_run()
    if job is None:
        return
    job_progress(job.id, actor=actor, key="ft_eval_job")
    result = job.result or {}
    if job.status != "succeeded":
        with st.expander(_("Log")):
            log_tail(job.id, actor=actor)
        return
    cols = st.columns(4)
    cols[0].metric(_("Training loss"), format_number(result.get("train_loss")))
    cols[1].metric(_("Validation loss"), format_number(result.get("val_loss")))
    cols[2].metric(_("Perplexity"), format_number(result.get("perplexity")))
    cols[3].metric(_("Training time"), format_duration(result.get("train_seconds")))
    if result.get("margin_after") is not None:
        st.metric(_("Preference margin (chosen − rejected log-probability)"),
                  format_number(result["margin_after"]),
                  delta=format_number(result["margin_after"] - result["margin_before"]))
    samples = result.get("samples") or []
    if samples:
        st.markdown(_("**Answers before and after**, on validation prompts:"))
        st.dataframe({
            _("Prompt"): [s["prompt"] for s in samples],
            _("Expected"): [s["expected"] for s in samples],
            _("Base model"): [s["base"] for s in samples],
            _("Fine-tuned"): [s["tuned"] for s in samples],
        }, hide_index=True, key="ft_samples")
    scores = result.get("eval")
    if scores:
        st.markdown(_("**Evaluation file**"))
        st.dataframe({
            _("Model"): [_("Base model"), _("Fine-tuned")],
            _("Exact match"): [scores["base"]["exact_match"], scores["tuned"]["exact_match"]],
            _("Contains"): [scores["base"]["contains"], scores["tuned"]["contains"]],
        }, hide_index=True, key="ft_scores")
    _next_button("deploy", _("Next: deploy"))


# --- 5. deploy -----------------------------------------------------------------------------

def _deploy_step() -> None:
    st.subheader(_("Deploy"))
    job = _pick_run()
    if job is None:
        return
    if job.status != "succeeded" or not (job.result or {}).get("model"):
        st.info(_("This run has not produced a model (yet)."))
        return
    name = job.result["model"]  # type: ignore[index]
    try:
        model = models_service.get_model(actor=actor, model=name)
    except LookupError as exc:
        show_error(exc, doing=_("Finding the model"))
        return
    st.success(_("**{name}** is registered and ready to use in chats, agents and the API.")
               .format(name=model.name))
    lineage_caption(model.id, actor=actor)
    page_link("playground", label=_("Try it in the playground"), icon="💬",
              query_params={"model": model.name})
    if st.button(_("Prepare a zip download"), key="ft_zip"):
        try:
            with st.spinner(_("Packing the model folder…")):
                st.session_state["ft_zip"] = (model.id, str(finetune_service.export_zip(
                    actor=actor, model=model.id)))
        except Exception as exc:  # noqa: BLE001
            show_error(exc, doing=_("Packing the model"))
    ready = st.session_state.get("ft_zip")
    if ready and ready[0] == model.id:
        path = ready[1]
        with open(path, "rb") as fh:
            st.download_button(_("Download the model (safetensors, zip)"), fh,
                               file_name=path.rsplit("/", 1)[-1], mime="application/zip",
                               key="ft_download")


{"model": _model_step, "data": _data_step, "train": _train_step, "evaluate": _evaluate_step,
 "deploy": _deploy_step}[step]()
