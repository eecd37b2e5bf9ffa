"""Home: what is happening in the studio (counts, recent jobs) and where to start."""

from __future__ import annotations

import streamlit as st

from backend.accounts.actor import Role
from backend.services.jobs import job_counts, list_jobs, list_workers
from studio.components.errors import show_error
from studio.components.jobs_widgets import job_title, kind_label, stage_label, status_badge
from studio.components.page_links import page_link
from studio.components.session import current_actor
from studio.formatting import format_number, format_percent_value, format_relative
from studio.i18n import _

RECENT = 6

actor = current_actor()

st.title(_("Welcome to LLM Studio"))
st.caption(_("Work with large language models by point and click: write prompts, build bots "
             "that answer from your documents, and train models on your own data."))


# counts -----------------------------------------------------------------------------------------
def _registered_models() -> int | None:
    """How many models are registered, once the model registry exists (None before)."""
    try:
        from backend.services import models as model_service
    except ImportError:
        return None
    count = getattr(model_service, "count_models", None)
    if count is not None:
        return int(count(actor=actor))
    lister = getattr(model_service, "list_models", None)
    return len(lister(actor=actor)) if lister is not None else None


try:
    counts = job_counts(actor=actor)
    workers = list_workers(actor=actor)
    models = _registered_models() if actor.has_role(Role.builder) else None
except Exception as exc:  # noqa: BLE001
    show_error(exc, doing=_("Reading the studio's counts"))
    st.stop()

tiles = [
    (_("Running"), counts.get("running", 0), _("Jobs a worker is running now.")),
    (_("Queued"), counts.get("queued", 0), _("Jobs waiting for a free worker.")),
    (_("Succeeded"), counts.get("succeeded", 0), _("Jobs that finished well.")),
    (_("Failed"), counts.get("failed", 0) + counts.get("interrupted", 0),
     _("Jobs that failed or were interrupted; the Jobs page says why.")),
    (_("Workers"), len(workers), _("Worker processes that reported in the last seconds.")),
]
if models is not None:
    tiles.append((_("Models"), models, _("Models registered on the Models page.")))
st.subheader(_("At a glance"))
for col, (label, value, help_text) in zip(st.columns(len(tiles)), tiles, strict=True):
    col.metric(label, format_number(value), help=help_text, border=True)

if not workers:
    st.warning(_("No worker is running, so jobs wait in their queue. `studio up` starts one; "
                 "`studio worker` starts more."), icon=":material/warning:")

# recent jobs ------------------------------------------------------------------------------------
st.subheader(_("Recent jobs"))
recent = list_jobs(actor=actor, limit=RECENT)
if not recent:
    st.info(_("No jobs yet. Training and indexing run as jobs; the Jobs page has a demo job to "
              "show how they work."))
for job in recent:
    with st.container(border=True):
        c1, c2, c3, c4 = st.columns([1.2, 4, 2, 2], vertical_alignment="center")
        with c1:
            status_badge(job.status)
        with c2:
            page_link("jobs", label=_("#{id} {title} · {kind}").format(
                id=job.id, title=job_title(job), kind=kind_label(job.kind)),
                query_params={"job": str(job.id)})
        c3.progress(max(0.0, min(1.0, job.progress)),
                    text=stage_label(job) or format_percent_value(job.progress))
        c4.caption(_("Created {when}").format(when=format_relative(job.created_at)))
page_link("jobs", label=_("All jobs"), icon=":material/arrow_forward:")

# the four stages --------------------------------------------------------------------------------
if not actor.has_role(Role.builder):  # a user chats with the workspace's bots; builders build
    st.subheader(_("Chat with your team's bots"))
    st.write(_("The bots your team published answer questions from your documents, with "
               "sources. Your conversations and jobs are yours to see."))
    page_link("chat", label=_("Open the chat"), icon=":material/chat:")
    st.stop()
st.subheader(_("Four stages of working with language models"))
st.caption(_("Start at the first and go only as far as you need: most teams are well served by "
             "the first two."))
stages = [
    ("1", _("Prompt engineering"),
     _("Try prompts against any model, compare answers side by side and keep the versions that "
       "work."), [("playground", _("Playground"), ":material/chat:")]),
    ("2", _("Knowledge and agents"),
     _("Upload documents into a knowledge base and build a bot that answers from them, with "
       "sources, and can use tools."),
     [("knowledge", _("Knowledge"), ":material/library_books:"),
      ("agents", _("Agents"), ":material/smart_toy:")]),
    ("3", _("Fine-tuning"),
     _("Teach an existing model your style or your answers with LoRA, on a few hundred "
       "examples."), [("finetune", _("Fine-tune"), ":material/tune:")]),
    ("4", _("Pre-training"),
     _("Train a small model from scratch on your own text, when no existing model fits."),
     [("pretrain", _("Pre-train"), ":material/construction:")]),
]
for col, (number, title, text, links) in zip(st.columns(4), stages, strict=True):
    with col, st.container(border=True, height="stretch"):
        st.markdown(_("**Stage {number}: {title}**").format(number=number, title=title))
        st.write(text)
        for page, label, icon in links:
            page_link(page, label=label, icon=icon)
