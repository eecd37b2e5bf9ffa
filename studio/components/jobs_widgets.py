"""Job widgets any page can reuse: status badge, progress, metric charts, log tail, error.

They read through ``backend.services.jobs`` only. A page that launched a job (fine-tune,
pre-train, ingest) shows it with ``job_progress(job_id, actor=actor)``: the widget refreshes
itself every couple of seconds while the job runs and stops once it has ended.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
import streamlit as st

from backend.accounts.actor import Actor
from backend.services.jobs import (
    ACTIVE_STATUSES,
    JobNotFound,
    JobView,
    WorkerView,
    get_job,
    job_log_tail,
    job_metrics,
)
from studio.components.errors import show_error
from studio.formatting import (
    format_datetime,
    format_duration,
    format_number,
    format_percent_value,
    format_relative,
    format_time,
)
from studio.i18n import N_, _

REFRESH_S = 2.0

# status -> (label, badge colour, material icon, emoji for tables)
_STATUS_STYLE: dict[str, tuple[str, str, str, str]] = {
    "queued": (N_("Queued"), "gray", ":material/schedule:", "⏳"),
    "running": (N_("Running"), "blue", ":material/autorenew:", "🔄"),
    "succeeded": (N_("Succeeded"), "green", ":material/check_circle:", "✅"),
    "failed": (N_("Failed"), "red", ":material/error:", "❌"),
    "cancelled": (N_("Cancelled"), "orange", ":material/block:", "🚫"),
    "interrupted": (N_("Interrupted"), "violet", ":material/pause_circle:", "⏸️"),
}

# job kind -> what people call it; kinds not listed show their name
_KIND_LABELS: dict[str, str] = {
    "demo": N_("Demo job"),
    "prompt_eval": N_("Prompt evaluation"),
    "finetune": N_("Fine-tuning"),
    "dataset_from_kb": N_("Q&A pairs from a knowledge base"),
    "pretrain": N_("Pre-training"),
    "ingest": N_("Knowledge base ingestion"),
    "kb_ingest": N_("Knowledge base ingestion"),
    "kb_reindex": N_("Knowledge base re-index"),
    "tokenizer": N_("Tokenizer training"),
    "eval": N_("Evaluation"),
    "export": N_("Model export"),
}

# Stage templates that jobs report (ctx.progress(f, "step {step}/{total}", step=..., total=...)),
# listed so the translator sees them; add a job kind's templates here.
_STAGE_TEMPLATES: tuple[str, ...] = (
    N_("step {step}/{total}"),
    N_("row {done}/{total}"),
    N_("judging {n} answers"),
    N_("Training the tokenizer"),
    N_("Tokenising the corpus"),
    N_("Registering the model"),
    N_("file {current}/{total}: {name}"),
    N_("done: {ingested} indexed, {failed} failed"),
    # fine-tuning
    N_("loading the base model"),
    N_("answering sample prompts with the base model"),
    N_("training: step {step}/{total}"),
    N_("passage {done}/{total}"),
    N_("evaluating"),
    N_("saving the model"),
    N_("done"),
)

# Titles the system gives jobs (backend/jobs/titles.py), listed so the translator sees them.
_TITLE_TEMPLATES: tuple[str, ...] = (
    N_("Pre-train {name}"),
    N_("{method} fine-tune of {base} on {dataset} v{version} → {output}"),
    N_("Full fine-tune of {base} on {dataset} v{version} → {output}"),
    N_("Evaluate prompt {prompt} v{version}: {rows} row(s) × {models} model(s)"),
    N_("Evaluate the draft prompt: {rows} row(s) × {models} model(s)"),
    N_("Add {files} to {kb}"),
    N_("Re-index {kb}"),
    N_("Index the copies of {source} in {kb}"),
    N_("Q&A pairs from {kb} by {model}"),
)

# Fixed sentences the job system writes as a job's error; other errors show as written.
_SYSTEM_MESSAGES: frozenset[str] = frozenset({
    N_("Cancelled on request."),
    N_("Cancelled before it started."),
    N_("The worker was stopped while this job ran. Retry it to resume."),
    N_("The worker running this job stopped without finishing it. "
       "Retry the job to resume it from its last checkpoint."),
    N_("The database was unreachable for too long while this job ran. "
       "Retry the job to resume it from its last checkpoint."),
})

# metric name -> axis title; unknown names show as written
_METRIC_LABELS: dict[str, str] = {
    "chunks": N_("Chunks"),
    "loss": N_("Loss"),
    "train_loss": N_("Training loss"),
    "eval_loss": N_("Validation loss"),
    "val_loss": N_("Validation loss"),
    "lr": N_("Learning rate"),
    "learning_rate": N_("Learning rate"),
    "grad_norm": N_("Gradient norm"),
    "perplexity": N_("Perplexity"),
    "ppl": N_("Perplexity"),
    "eval_perplexity": N_("Validation perplexity"),
    "val_perplexity": N_("Validation perplexity"),
    "tokens_per_s": N_("Tokens per second"),
    "rows_per_s": N_("Rows per second"),
    "mfu": N_("Model FLOPs utilisation"),
    "tokens_per_sec": N_("Tokens per second"),
    "accuracy": N_("Accuracy"),
    "eval_accuracy": N_("Validation accuracy"),
    "epoch": N_("Epoch"),
    "eta_s": N_("Time left (seconds)"),
    "reward_margin": N_("Reward margin (chosen − rejected)"),
}


def status_label(status: str) -> str:
    style = _STATUS_STYLE.get(status)
    return _(style[0]) if style else status


def status_with_icon(status: str) -> str:
    """``✅ Succeeded``: for tables and select boxes, where a badge cannot go."""
    style = _STATUS_STYLE.get(status)
    return f"{style[3]} {_(style[0])}" if style else status


def status_badge(status: str) -> None:
    style = _STATUS_STYLE.get(status)
    if style is None:
        st.badge(status, color="gray")
        return
    label, color, icon, _emoji = style
    st.badge(_(label), icon=icon, color=color)  # type: ignore[arg-type]


def kind_label(kind: str) -> str:
    label = _KIND_LABELS.get(kind)
    return _(label) if label else kind


def job_title(job: JobView) -> str:
    """The title in the reader's language: a system-written title is its template translated
    and filled; a title a person gave shows as written; else the kind's name."""
    if job.title_template:
        try:
            return _(job.title_template).format(**(job.title_args or {}))
        except (KeyError, IndexError, ValueError):
            pass
    return job.title or kind_label(job.kind)


def stage_label(job: JobView) -> str:
    """The job's stage in the reader's language (its template translated, then filled)."""
    if not job.stage_template:
        return job.stage
    try:
        return _(job.stage_template).format(**(job.stage_args or {}))
    except (KeyError, IndexError, ValueError):
        return job.stage


def error_text(job: JobView) -> str | None:
    """The job's error: the job system's own sentences translated, others as written."""
    if job.error and job.error in _SYSTEM_MESSAGES:
        return _(job.error)
    return job.error


def metric_label(name: str) -> str:
    label = _METRIC_LABELS.get(name)
    return _(label) if label else name


def metric_figure(name: str, points: Sequence[tuple[int, float]]) -> go.Figure:
    """A line chart of one metric: x is the step, y the value, both axes titled."""
    label = metric_label(name)
    steps = [p[0] for p in points]
    values = [p[1] for p in points]
    fig = go.Figure(
        go.Scatter(x=steps, y=values, mode="lines+markers" if len(points) < 30 else "lines",
                   name=label, hovertemplate=_("Step") + " %{x}<br>" + label + " %{y:.4g}"
                   + "<extra></extra>")
    )
    fig.update_layout(
        title={"text": label, "font": {"size": 14}},
        xaxis_title=_("Step"),
        yaxis_title=label,
        height=280,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        showlegend=False,
    )
    return fig


def metric_charts(job_id: int, *, actor: Actor, key: str = "job") -> int:
    """One chart per metric of the job, two per row (one alone takes the row). Returns how many
    charts it drew."""
    series = job_metrics(actor=actor, job_id=job_id)
    if not series:
        st.caption(_("This job has reported no metrics yet."))
        return 0
    names = sorted(series)
    per_row = 1 if len(names) == 1 else 2
    for start in range(0, len(names), per_row):
        cols = st.columns(per_row)
        for col, name in zip(cols, names[start:start + per_row], strict=False):
            points = series[name]
            with col:
                st.plotly_chart(metric_figure(name, points), key=f"{key}_metric_{job_id}_{name}",
                                config={"displaylogo": False})
                last_step, last_value = points[-1]
                st.caption(_("Latest {metric}: {value} at step {step}").format(
                    metric=metric_label(name), value=format_number(last_value),
                    step=format_number(last_step)))
    return len(names)


def log_tail(job_id: int, *, actor: Actor, lines: int = 100) -> None:
    """The job's last log lines, oldest first."""
    rows = job_log_tail(actor=actor, job_id=job_id, lines=lines)
    if not rows:
        st.caption(_("This job has written no log lines yet."))
        return
    text = "\n".join(f"{format_time(r.at)}  {r.level:<7} {r.message}" for r in rows)
    st.code(text, language="text", height=min(400, 26 + 22 * len(rows)))


def job_error(job: JobView, *, actor: Actor) -> None:
    """Why the job did not succeed, in words; the traceback only for admins, folded away."""
    error = error_text(job)
    if job.status == "failed":
        st.error(error or _("The job failed without saying why. Its log may tell more."),
                 icon=":material/error:")
    elif job.status == "interrupted":
        st.warning(
            error or _("The worker running it stopped before it finished. Retry to continue from "
                       "its last checkpoint."),
            icon=":material/pause_circle:",
        )
    elif job.status == "cancelled":
        st.info(error or _("Somebody cancelled this job."), icon=":material/block:")
    elif job.cancel_requested and job.status == "running":
        st.info(_("Cancel requested: the job stops at its next checkpoint."),
                icon=":material/hourglass_top:")
    if job.error_detail and actor.is_admin:
        with st.expander(_("Technical details (for admins)")):
            st.code(job.error_detail, language="text")


def progress_bar(job: JobView) -> None:
    """Progress bar with the stage written on it."""
    stage = stage_label(job) or status_label(job.status)
    st.progress(
        max(0.0, min(1.0, job.progress)),
        text=_("{percent} · {stage}").format(percent=format_percent_value(job.progress),
                                             stage=stage),
    )


def job_progress(job_id: int, *, actor: Actor, key: str = "job_progress",
                 refresh_s: float = REFRESH_S, show_metrics: bool = True) -> JobView | None:
    """A job's status, progress, duration and (optionally) metric charts, kept live while the
    job is queued or running. Returns the job as first read, or None if it cannot be seen."""
    try:
        first = get_job(actor=actor, job_id=job_id)
    except JobNotFound as exc:
        show_error(exc, doing=_("Showing the job"))
        return None
    live = first.status in ACTIVE_STATUSES

    @st.fragment(run_every=refresh_s if live else None)
    def _panel() -> None:
        job = get_job(actor=actor, job_id=job_id)
        cols = st.columns([1, 3])
        with cols[0]:
            status_badge(job.status)
        with cols[1]:
            if job.duration_s is not None:
                st.caption(_("Running for {duration}").format(duration=format_duration(
                    job.duration_s)) if not job.finished else _("Took {duration}").format(
                    duration=format_duration(job.duration_s)))
        progress_bar(job)
        job_error(job, actor=actor)
        if show_metrics:
            metric_charts(job_id, actor=actor, key=key)
        if live and job.status not in ACTIVE_STATUSES:
            st.rerun()  # the job ended: redraw the page once, which stops the refresh

    _panel()
    return first


def _gpu_text(w: WorkerView) -> str:
    parts = []
    for g in w.gpus:
        used, total = g.get("memory_used_mb") or 0, g.get("memory_total_mb") or 0
        util = g.get("utilization")
        text = _("GPU {index}: {used} / {total} GiB").format(
            index=g.get("index", 0), used=format_number(used / 1024, digits=1),
            total=format_number(total / 1024, digits=1))
        if util is not None:
            text += " · " + _("{percent}% busy").format(percent=format_number(util, digits=0))
        parts.append(text)
    return "; ".join(parts) or "—"


def workers_table(workers: list[WorkerView], *, key: str, show_gpus: bool = False) -> None:
    """The live workers: name, queues, device, jobs at once, when started and last seen
    (and, for admins, each GPU's memory in use and utilisation)."""
    data = {
        "name": [w.hostname for w in workers],
        "queues": [", ".join(w.queues) for w in workers],
        "device": [w.device for w in workers],
        "concurrency": [w.concurrency for w in workers],
        "started": [format_datetime(w.started_at) for w in workers],
        "seen": [format_relative(w.last_seen) for w in workers],
    }
    if show_gpus:
        data["gpus"] = [_gpu_text(w) for w in workers]
    st.dataframe(
        data,
        key=key,
        hide_index=True,
        column_config={
            "name": st.column_config.TextColumn(_("Worker")),
            "queues": st.column_config.TextColumn(_("Queues")),
            "device": st.column_config.TextColumn(_("Device")),
            "concurrency": st.column_config.NumberColumn(_("Jobs at once"), format="%d"),
            "started": st.column_config.TextColumn(_("Started")),
            "seen": st.column_config.TextColumn(_("Last seen")),
            "gpus": st.column_config.TextColumn(_("GPU memory and utilisation")),
        },
    )
