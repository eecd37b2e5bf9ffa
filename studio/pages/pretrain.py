"""Pre-train: a corpus in, a model out. Add a corpus (cleaned, de-duplicated, split), compare
tokenizers on it, pick a preset or a custom shape and see what it costs before launching, then
watch the run (loss, held-out loss, perplexity, learning rate, tokens/s, samples)."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import streamlit as st

from backend.accounts.actor import Role
from backend.services.corpora import CorpusView, add_corpus, delete_corpus, list_corpora
from backend.services.jobs import job_log_tail, list_jobs
from backend.services.knowledge import list_knowledge_bases
from backend.services.models import list_models
from backend.services.pretrain import compare_tokenizers, launch_pretrain, plan_run, presets, run_result
from studio.components.errors import show_error
from studio.components.jobs_widgets import job_progress, job_title, status_with_icon
from studio.components.page_tabs import open_tab, page_tabs
from studio.components.session import current_actor, require_page_role
from studio.formatting import format_datetime, format_duration, format_number
from studio.i18n import N_, _

actor = current_actor()
require_page_role(actor, Role.builder)  # users chat with the bots
can_edit = actor.has_role(Role.builder)
FLASH = "pretrain_flash"
RUN = "pretrain_run_pick"

PRESET_LABELS = {
    "tiny": _("Tiny (about 2M parameters)"),
    "small": _("Small (about 20M parameters)"),
    "base": _("Base (about 125M parameters)"),
    "medium": _("Medium (about 350M parameters)"),
    "custom": _("Custom"),
}
OBJECTIVE_LABELS = {
    "causal": _("Causal (GPT/Llama-style): a chat model"),
    "masked": _("Masked (BERT-style): an embedding model"),
}

# the estimate's warnings, listed so they are translated (templates with {named} values)
WARNINGS = {
    "Needs about {need} GB per GPU but a {gpu} has {have} GB: lower the batch size (and raise "
    "gradient accumulation) or the context.": N_(
        "Needs about {need} GB per GPU but a {gpu} has {have} GB: lower the batch size (and "
        "raise gradient accumulation) or the context."),
    "Needs about {need} GB of memory; this machine has {have} GB.": N_(
        "Needs about {need} GB of memory; this machine has {have} GB."),
    "No worker has a GPU: a model this size trains very slowly on CPU.": N_(
        "No worker has a GPU: a model this size trains very slowly on CPU."),
    "No worker serves the gpu queue: start one (`studio worker --queues gpu`) before launching.":
        N_("No worker serves the gpu queue: start one (`studio worker --queues gpu`) before "
           "launching."),
}

st.title(_("Pre-train"))
st.caption(_("Train a language model from scratch on your own text. The result is registered "
             "as a model: a chat model for the playground and fine-tuning, or an embedding "
             "model for knowledge bases."))

flash = st.session_state.pop(FLASH, None)
if flash:
    getattr(st, flash[0])(flash[1])

# after a launch, or with ?tab=runs in the address, the page opens on the runs; otherwise the
# open tab stays open across the reruns its buttons cause
if st.session_state.pop("pretrain_show_runs", False) or st.query_params.get("tab") == "runs":
    open_tab("pretrain_tab", "runs")
_tabs = page_tabs("pretrain_tab", [("corpora", _("Corpora")), ("tokenizer", _("Tokenizer")),
                                   ("launch", _("Model and launch")), ("runs", _("Runs"))])
tab_corpora, tab_tokenizer, tab_launch, tab_runs = (
    _tabs["corpora"], _tabs["tokenizer"], _tabs["launch"], _tabs["runs"])


# --- corpora ---------------------------------------------------------------------------------

def _corpus_table(rows: list[CorpusView]) -> None:
    st.dataframe(
        [{
            _("Name"): c.name,
            _("Version"): c.latest.version if c.latest else 0,
            _("Documents"): c.latest.documents if c.latest else 0,
            _("Held out"): c.latest.heldout_documents if c.latest else 0,
            _("Characters"): c.latest.characters if c.latest else 0,
            _("Languages"): ", ".join(c.latest.stats.get("languages", {})) if c.latest else "",
            _("Created"): format_datetime(c.created_at),
        } for c in rows],
        hide_index=True, width="stretch",
    )


def _corpus_details(c: CorpusView) -> None:
    v = c.latest
    if v is None:
        return
    s = v.stats
    cols = st.columns(4)
    cols[0].metric(_("Documents"), format_number(v.documents))
    cols[1].metric(_("Characters"), format_number(v.characters))
    cols[2].metric(_("Held-out documents"), format_number(v.heldout_documents))
    cols[3].metric(_("Duplicates removed"),
                   format_number(s.get("exact_duplicates", 0) + s.get("near_duplicates", 0)))
    st.caption(_("Version {version}: {files} files read, {exact} exact and {near} near "
                 "duplicates removed, {short} documents too short.").format(
        version=v.version, files=s.get("files_read", 0), exact=s.get("exact_duplicates", 0),
        near=s.get("near_duplicates", 0), short=s.get("too_short", 0)))
    languages = s.get("languages", {})
    if languages:
        fig = go.Figure(go.Bar(x=list(languages), y=list(languages.values())))
        fig.update_layout(height=220, margin=dict(l=10, r=10, t=30, b=10),
                          title=_("Documents per language"), yaxis_title=_("Documents"))
        st.plotly_chart(fig, key=f"pretrain_langs_{c.id}", config={"displaylogo": False})
    for tok_key, info in v.token_files.items():
        st.caption(_("Token files ({key}): {train} training and {val} held-out tokens").format(
            key=tok_key, train=format_number(info.get("train_tokens", 0)),
            val=format_number(info.get("val_tokens", 0))))
    skipped = s.get("files_skipped", [])
    if skipped:
        with st.expander(_("Skipped files ({n})").format(n=len(skipped))):
            st.dataframe([{_("File"): x["source"], _("Reason"): x["reason"]} for x in skipped],
                         hide_index=True)


with tab_corpora:
    search = st.text_input(_("Search corpora"), key="pretrain_corpus_search")
    try:
        corpora = list_corpora(actor=actor, search=search)
    except Exception as exc:  # noqa: BLE001 - shown in words
        show_error(exc, doing=_("Listing corpora"))
        corpora = []
    if corpora:
        _corpus_table(corpora)
        pick = st.selectbox(_("Corpus"), [c.id for c in corpora], key="pretrain_corpus_pick",
                            format_func=lambda i: next(c.name for c in corpora if c.id == i))
        chosen = next(c for c in corpora if c.id == pick)
        _corpus_details(chosen)
        if can_edit and st.button(_("Remove this corpus"), key=f"pretrain_remove_{chosen.id}"):
            try:
                delete_corpus(actor=actor, corpus=chosen.id)
                st.session_state[FLASH] = ("success", _("Removed {name}.").format(name=chosen.name))
                st.rerun()
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Removing the corpus"))
    else:
        st.info(_("No corpora yet. Add text files below."))
    if can_edit:
        with st.form("pretrain_add_corpus"):
            st.subheader(_("Add a corpus (or a new version of one)"))
            name = st.text_input(_("Name"), key="pretrain_corpus_name")
            files = st.file_uploader(
                _("Text, Markdown, HTML, PDF, JSON Lines (a `text` field) or a zip of them"),
                accept_multiple_files=True, key="pretrain_corpus_files",
                type=["txt", "md", "markdown", "rst", "html", "htm", "pdf", "jsonl", "zip"])
            kb_names = [""] + [k.name for k in list_knowledge_bases(actor=actor)]
            no_kb = _("(none)")
            kb_pick = st.selectbox(_("Also take the documents of a knowledge base"), kb_names,
                                   key="pretrain_corpus_kb", format_func=lambda n: n or no_kb)
            heldout = st.slider(_("Held-out share of documents"), 0.01, 0.3, 0.05, 0.01,
                                key="pretrain_heldout")
            submitted = st.form_submit_button(_("Build the corpus"))
        if submitted:
            bar = st.progress(0.0, text=_("Reading files"))
            stage_text = {"Reading files": _("Reading files"), "Cleaning": _("Cleaning"),
                          "Removing duplicates": _("Removing duplicates"),
                          "Splitting off the held-out set": _("Splitting off the held-out set"),
                          "Done": _("Done")}
            try:
                made = add_corpus(
                    actor=actor, name=name, heldout_fraction=heldout,
                    uploads=[(f.name, f.getvalue()) for f in (files or [])],
                    knowledge_base=kb_pick or None,
                    progress=lambda f, s: bar.progress(f, text=stage_text.get(s, s)))
                st.session_state[FLASH] = ("success", _(
                    "{name} version {version}: {documents} documents.").format(
                    name=made.name, version=made.latest.version if made.latest else 0,
                    documents=made.latest.documents if made.latest else 0))
                st.rerun()
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Building the corpus"))


def _corpus_picker(key: str) -> CorpusView | None:
    if not corpora:
        st.info(_("Add a corpus first."))
        return None
    pick = st.selectbox(_("Corpus"), [c.id for c in corpora], key=key,
                        format_func=lambda i: next(c.name for c in corpora if c.id == i))
    return next(c for c in corpora if c.id == pick)


def _tokenizer_models() -> list[str]:
    try:
        return [m.name for m in list_models(actor=actor) if m.kind != "openai"]
    except Exception:  # noqa: BLE001
        return []


# --- tokenizer -------------------------------------------------------------------------------

with tab_tokenizer:
    st.caption(_("Train a byte-level BPE tokenizer on the corpus, or reuse a registered model's "
                 "tokenizer. See how a sample splits and how many characters each token "
                 "carries: more characters per token means shorter sequences."))
    corpus_t = _corpus_picker("pretrain_tok_corpus")
    vocab = st.number_input(_("Vocabulary size"), 300, 200_000, 8000, 500, key="pretrain_tok_vocab")
    none_label = _("(none)")  # translated now: format_func may run outside the script
    other = st.selectbox(_("Compare with a registered model's tokenizer"),
                         [""] + _tokenizer_models(), key="pretrain_tok_model",
                         format_func=lambda n: n or none_label)
    if corpus_t is not None and can_edit and st.button(_("Compare tokenizers"),
                                                       key="pretrain_tok_go"):
        with st.spinner(_("Training the tokenizer")):
            try:
                st.session_state["pretrain_tok_result"] = compare_tokenizers(
                    actor=actor, corpus=corpus_t.id, vocab_size=int(vocab),
                    tokenizer_model=other or None)
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Comparing tokenizers"))
    result: list[dict[str, Any]] = st.session_state.get("pretrain_tok_result") or []
    if result:
        st.dataframe([{_("Tokenizer"): r["name"], _("Vocabulary"): r["vocab_size"],
                       _("Characters per token"): r["chars_per_token"],
                       _("Tokens in the sample"): len(r["pieces"])} for r in result],
                     hide_index=True)
        for r in result:
            st.markdown(f"**{r['name']}**")
            st.code(" | ".join(p.replace("\n", "\\n") for p in r["pieces"][:120]),
                    language="text", wrap_lines=True)


# --- model and launch --------------------------------------------------------------------------

with tab_launch:
    corpus_l = _corpus_picker("pretrain_launch_corpus")
    c1, c2 = st.columns(2)
    objective = c1.radio(_("Objective"), list(OBJECTIVE_LABELS), key="pretrain_objective",
                         format_func=lambda o: OBJECTIVE_LABELS[o])
    preset_names = [*presets(actor=actor), "custom"]
    preset = c2.selectbox(_("Size"), preset_names, key="pretrain_preset",
                          format_func=lambda p: PRESET_LABELS.get(p, p))
    overrides: dict[str, Any] = {}
    if preset == "custom":
        cc = st.columns(5)
        overrides["n_layer"] = cc[0].number_input(_("Layers"), 1, 96, 4, key="pretrain_layers")
        overrides["n_embd"] = cc[1].number_input(_("Width"), 32, 8192, 256, 32, key="pretrain_width")
        overrides["n_head"] = cc[2].number_input(_("Heads"), 1, 128, 4, key="pretrain_heads")
        overrides["block_size"] = cc[3].number_input(_("Context length"), 16, 32768, 256, 16,
                                                     key="pretrain_context")
        overrides["vocab_size"] = cc[4].number_input(_("Vocabulary size"), 300, 200_000, 8000,
                                                     500, key="pretrain_vocab")
    t1, t2, t3, t4 = st.columns(4)
    overrides["max_steps"] = t1.number_input(_("Steps"), 10, 10_000_000, 500, 10,
                                             key="pretrain_steps")
    overrides["warmup_steps"] = min(int(overrides["max_steps"]) // 10, 2000)
    batch = t2.number_input(_("Batch size"), 0, 4096, 0, key="pretrain_batch",
                            help=_("0 keeps the preset's batch size."))
    if batch:
        overrides["batch_size"] = batch
    lr = t3.number_input(_("Learning rate"), 0.0, 0.5, 0.0, format="%.5f", key="pretrain_lr",
                         help=_("0 keeps the preset's learning rate."))
    if lr:
        overrides["learning_rate"] = lr
        overrides["min_lr"] = lr / 10
    bpe_label = _("Train a BPE tokenizer")
    tok_model = t4.selectbox(_("Tokenizer"), [""] + _tokenizer_models(), key="pretrain_tokenizer",
                             format_func=lambda n: n or bpe_label)
    plan = None
    try:
        plan = plan_run(actor=actor, preset=preset, objective=objective,
                        tokenizer_model=tok_model or None, overrides=overrides)
    except Exception as exc:  # noqa: BLE001
        show_error(exc, doing=_("Checking the settings"))
    if plan is not None:
        e = plan.estimate
        m = st.columns(4)
        m[0].metric(_("Parameters"), format_number(e.parameters))
        m[1].metric(_("FLOPs per token"), format_number(e.flops_per_token))
        m[2].metric(_("Memory"), f"{e.total_gb:.2f} GB")
        m[3].metric(_("Estimated time"), format_duration(e.seconds) if e.seconds else "-")
        st.caption(_("{tokens} tokens ({steps} steps of {per_step}) on {hardware}.").format(
            tokens=format_number(e.tokens), steps=format_number(plan.config.max_steps),
            per_step=format_number(plan.config.tokens_per_step),
            hardware=e.hardware if e.hardware != "none" else _("no worker yet")))
        parts = {_("Weights"): e.weights_gb, _("Gradients"): e.gradients_gb,
                 _("Optimizer"): e.optimizer_gb, _("Activations"): e.activations_gb}
        fig = go.Figure(go.Bar(x=list(parts.values()), y=list(parts), orientation="h"))
        fig.update_layout(height=200, margin=dict(l=10, r=10, t=30, b=10),
                          title=_("Memory (GB)"))
        st.plotly_chart(fig, key="pretrain_memory", config={"displaylogo": False})
        for w in e.warnings:
            st.warning(_(WARNINGS.get(w["template"], w["template"])).format(**w["args"]))
    out_name = st.text_input(_("Name of the model"), key="pretrain_name",
                             placeholder=_("Left empty: corpus, objective and time"))
    if corpus_l is not None and plan is not None and can_edit:
        if st.button(_("Launch pre-training"), type="primary", key="pretrain_launch"):
            try:
                job = launch_pretrain(actor=actor, corpus=corpus_l.id, preset=preset,
                                      objective=objective, name=out_name or None,
                                      tokenizer_model=tok_model or None, overrides=overrides)
                st.session_state[RUN] = job.id
                st.session_state["pretrain_show_runs"] = True
                st.session_state[FLASH] = ("success", _(
                    "Launched job #{id}. Follow it under Runs.").format(id=job.id))
                st.rerun()
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Launching pre-training"))
    elif not can_edit:
        st.info(_("Launching needs the builder role."))


# --- runs ------------------------------------------------------------------------------------

with tab_runs:
    run_search = st.text_input(_("Search runs"), key="pretrain_run_search")
    runs = list_jobs(actor=actor, kinds=["pretrain"], search=run_search, limit=100)
    if not runs:
        st.info(_("No pre-training runs yet."))
    else:
        ids = [j.id for j in runs]
        if st.session_state.get(RUN) not in ids:
            st.session_state[RUN] = ids[0]
        run_labels = {j.id: f"#{j.id} {job_title(j)} · {status_with_icon(j.status)}" for j in runs}
        pick_run = st.selectbox(_("Run"), ids, key=RUN, format_func=lambda i: run_labels[i])
        job_progress(pick_run, actor=actor, key="pretrain_job")
        outcome = run_result(actor=actor, job_id=pick_run)
        if outcome["registered_model"]:
            st.success(_("Registered the model {name}: held-out loss {first} → {last}.").format(
                name=outcome["registered_model"], first=format_number(outcome["initial_eval_loss"]),
                last=format_number(outcome["final_eval_loss"])))
        samples = [r.message for r in job_log_tail(actor=actor, job_id=pick_run, lines=200)
                   if r.message.startswith("sample at step")]
        if samples:
            with st.expander(_("Samples ({n})").format(n=len(samples)), expanded=True):
                st.code("\n\n".join(samples[-5:]), language="text", wrap_lines=True)
