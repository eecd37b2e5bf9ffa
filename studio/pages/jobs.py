"""Jobs: every long task in one place. Filter, watch progress and metrics, read the log, cancel
or retry, and see which workers are serving which queues."""

from __future__ import annotations

from typing import Any

import streamlit as st

from backend.accounts.actor import Role
from backend.services.jobs import (
    ACTIVE_STATUSES,
    STATUSES,
    JobView,
    cancel_job,
    job_kinds_in_use,
    list_jobs,
    list_workers,
    queue_backlog,
    retry_job,
    submit_job,
    workers_alive,
)
from studio.components.errors import show_error
from studio.components.jobs_widgets import (
    REFRESH_S,
    job_error,
    job_title,
    kind_label,
    log_tail,
    metric_charts,
    progress_bar,
    stage_label,
    status_badge,
    status_label,
    status_with_icon,
    workers_table,
)
from studio.components.session import current_actor
from studio.formatting import format_datetime, format_duration
from studio.i18n import N_, _, ngettext

DEMO_PARAMS = {"steps": 40, "step_seconds": 0.25}
PICK = "jobs_pick"
FLASH = "jobs_flash"

actor = current_actor()
can_launch = actor.has_role(Role.builder)


# actions run as callbacks, before the page is drawn, so they may pick the job to show ----------
def _flash(kind: str, message: str, **args: Any) -> None:
    """A notice kept as its English template and values: it is shown in the reader's language
    when the page is drawn (whatever language the callback ran in)."""
    st.session_state[FLASH] = (kind, message, args)


def _run_demo() -> None:
    try:
        job = submit_job(actor=actor, kind="demo", params=dict(DEMO_PARAMS))
    except Exception as exc:  # noqa: BLE001 - shown on the page, logged by show_error
        st.session_state[FLASH] = ("error", exc, _("Starting a demo job"))
        return
    st.session_state[PICK] = job.id
    if workers_alive(queue=job.queue):
        _flash("success", N_("Demo job #{id} is queued; a worker picks it up in a moment."),
               id=job.id)
    else:
        _flash("warning", N_("Demo job #{id} is queued, but no worker serves the {queue} queue, "
                             "so it waits. Start one with `studio worker` or `studio up`."),
               id=job.id, queue=job.queue)


def _cancel(job_id: int) -> None:
    try:
        job = cancel_job(actor=actor, job_id=job_id)
    except Exception as exc:  # noqa: BLE001
        st.session_state[FLASH] = ("error", exc, _("Cancelling the job"))
        return
    if job.status == "cancelled":
        _flash("success", N_("Job #{id} is cancelled."), id=job_id)
    else:
        _flash("info", N_("Job #{id} was asked to stop; it stops at its next checkpoint."),
               id=job_id)


def _retry(job_id: int) -> None:
    try:
        job = retry_job(actor=actor, job_id=job_id)
    except Exception as exc:  # noqa: BLE001
        st.session_state[FLASH] = ("error", exc, _("Retrying the job"))
        return
    st.session_state[PICK] = job.id
    _flash("success", N_("Job #{old} is retried as job #{new}."), old=job_id, new=job.id)


def _pick_from_table(ids: list[int]) -> None:
    state: Any = st.session_state.get("jobs_table")
    rows = list(state.selection.rows) if state is not None else []
    if rows and rows[0] < len(ids):
        st.session_state[PICK] = ids[rows[0]]


def _show_flash() -> None:
    flash = st.session_state.pop(FLASH, None)
    if not flash:
        return
    if flash[0] == "error":
        show_error(flash[1], doing=flash[2])
    else:
        kind, template, args = flash
        getattr(st, kind)(_(template).format(**args))


# header -----------------------------------------------------------------------------------------
head, button_col = st.columns([4, 1], vertical_alignment="bottom")
with head:
    st.title(_("Jobs"))
    st.caption(_("Long tasks (indexing documents, fine-tuning, pre-training) run as jobs on "
                 "workers in the background. Watch them here, stop them, or run them again."))
with button_col:
    if can_launch:
        st.button(_("Run a demo job"), key="jobs_demo", icon=":material/play_arrow:",
                  on_click=_run_demo, width="stretch",
                  help=_("Starts a short job that counts to 40 and reports a falling loss, "
                         "so you can see the job system at work."))
_show_flash()

# a link such as /jobs?job=12 (the Home page's recent jobs) opens that job once
wanted = st.query_params.get("job", "")
if wanted.isdigit() and st.session_state.get("jobs_link_seen") != wanted:
    st.session_state["jobs_link_seen"] = wanted
    st.session_state[PICK] = int(wanted)

kinds_in_use = job_kinds_in_use(actor=actor)
f1, f2, f3 = st.columns([2, 2, 3])
kinds = f1.multiselect(_("Kind"), kinds_in_use, format_func=kind_label, key="jobs_kinds",
                       placeholder=_("All kinds"))
statuses = f2.multiselect(_("Status"), list(STATUSES), format_func=status_label,
                          key="jobs_statuses", placeholder=_("All statuses"))
search = f3.text_input(_("Search"), key="jobs_search",
                       placeholder=_("Title, kind or stage contains…"))
filtered = bool(kinds or statuses or search.strip())


def _load() -> list[JobView]:
    return list_jobs(actor=actor, kinds=kinds or None, statuses=statuses or None,
                     search=search.strip())


try:
    first_jobs = _load()
except Exception as exc:  # noqa: BLE001
    show_error(exc, doing=_("Loading the jobs"))
    st.stop()
live = any(j.status in ACTIVE_STATUSES for j in first_jobs)


# the job list and the chosen job, redrawn every few seconds while something is active ---------
def _empty_state() -> None:
    if filtered:
        st.info(_("No job matches these filters. Clear them to see every job."))
        return
    st.info(
        _("No jobs yet. A job is a long task, such as adding documents to a knowledge base, "
          "fine-tuning or pre-training a model, that a worker runs in the background: you can "
          "close the browser and come back. Jobs start from the Knowledge, Fine-tune and "
          "Pre-train pages.")
        + ("\n\n" + _("To see one now, press **Run a demo job** above.") if can_launch else ""),
        icon=":material/work_history:",
    )


def _job_table(jobs: list[JobView]) -> None:
    ids = [j.id for j in jobs]
    data = {
        "id": ids,
        "status": [status_with_icon(j.status) for j in jobs],
        "kind": [kind_label(j.kind) for j in jobs],
        "title": [job_title(j) for j in jobs],
        "progress": [j.progress for j in jobs],
        "stage": [stage_label(j) for j in jobs],
        "created": [format_datetime(j.created_at) for j in jobs],
        "duration": [format_duration(j.duration_s) if j.started_at else "" for j in jobs],
    }
    st.dataframe(
        data,
        key="jobs_table",
        hide_index=True,
        on_select=lambda: _pick_from_table(ids),
        selection_mode="single-row",
        height=min(400, 38 + 35 * len(jobs)),
        column_config={
            "id": st.column_config.NumberColumn("#", format="%d", width="small"),
            "status": st.column_config.TextColumn(_("Status"), width=130),
            "kind": st.column_config.TextColumn(_("Kind")),
            "title": st.column_config.TextColumn(_("Title"), width="medium"),
            "progress": st.column_config.ProgressColumn(
                _("Progress"), min_value=0.0, max_value=1.0, format="percent", width="small"),
            "stage": st.column_config.TextColumn(_("Stage")),
            "created": st.column_config.TextColumn(_("Created")),
            "duration": st.column_config.TextColumn(_("Duration"), width="small"),
        },
    )


def _details(job: JobView) -> None:
    st.subheader(_("Job #{id}: {title}").format(id=job.id, title=job_title(job)))
    top = st.columns([1, 1, 1, 2], vertical_alignment="center")
    with top[0]:
        status_badge(job.status)
    top[1].caption(_("Kind: {kind}").format(kind=kind_label(job.kind)))
    top[2].caption(_("Queue: {queue}").format(queue=job.queue))
    with top[3]:
        b1, b2 = st.columns(2)
        if can_launch and not job.finished:
            b1.button(_("Cancel"), key="jobs_cancel", icon=":material/stop_circle:",
                      on_click=_cancel, args=(job.id,), width="stretch",
                      disabled=job.cancel_requested,
                      help=_("A queued job is cancelled at once; a running one stops at its "
                             "next checkpoint."))
        if can_launch and job.finished:
            b2.button(_("Retry"), key="jobs_retry", icon=":material/replay:",
                      on_click=_retry, args=(job.id,), width="stretch",
                      help=_("Runs the job again with the same settings, continuing from its "
                             "last checkpoint where it has one."))
    progress_bar(job)
    facts = [_("Created {when}").format(when=format_datetime(job.created_at))]
    if job.started_at:
        facts.append(_("started {when}").format(when=format_datetime(job.started_at)))
    if job.finished_at:
        facts.append(_("ended {when}").format(when=format_datetime(job.finished_at)))
    if job.duration_s is not None:
        facts.append(_("duration {duration}").format(duration=format_duration(job.duration_s)))
    if job.worker_host:
        facts.append(_("worker {name}").format(name=job.worker_host))
    if job.retry_of_id:
        facts.append(_("retry of job #{id}").format(id=job.retry_of_id))
    st.caption(" · ".join(facts))
    job_error(job, actor=actor)

    charts_tab, log_tab, params_tab = st.tabs([_("Metrics"), _("Log"), _("Settings and result")])
    with charts_tab:
        metric_charts(job.id, actor=actor, key="jobs")
    with log_tab:
        log_tail(job.id, actor=actor, lines=200)
    with params_tab:
        st.caption(_("Settings the job was started with"))
        st.json(job.params, expanded=True)
        if job.result is not None:
            st.caption(_("What the job returned"))
            st.json(job.result, expanded=True)


@st.fragment(run_every=REFRESH_S if live else None)
def _jobs_panel() -> None:
    jobs = _load()
    if not jobs:
        _empty_state()
        return
    if live:
        st.caption(_("Updating every {seconds} seconds while jobs are queued or running.").format(
            seconds=int(REFRESH_S)))
    _job_table(jobs)
    ids = [j.id for j in jobs]
    if st.session_state.get(PICK) not in ids:
        st.session_state.pop(PICK, None)
    by_id = {j.id: j for j in jobs}
    picked = st.selectbox(
        _("Show job"), ids, key=PICK,
        format_func=lambda i: _("#{id} {title} ({status})").format(
            id=i, title=job_title(by_id[i]), status=status_label(by_id[i].status)),
        help=_("Or click a row of the table."),
    )
    if picked is not None:
        st.divider()
        _details(by_id[picked])
    if live and not any(j.status in ACTIVE_STATUSES for j in jobs):
        st.rerun()  # everything has ended: redraw once, which stops the refresh


_jobs_panel()


# workers ----------------------------------------------------------------------------------------
@st.fragment(run_every=REFRESH_S * 2 if live else None)
def _workers_panel() -> None:
    st.subheader(_("Workers"))
    st.caption(_("Workers run the jobs. Each serves one or more queues: cpu for parsing, "
                 "embedding and evaluation, gpu for training and local inference."))
    workers = list_workers(actor=actor)
    backlog = queue_backlog(actor=actor)
    if not workers:
        st.warning(_("No worker is running, so new jobs wait in their queue. Start one with "
                     "`studio worker` (or `studio up`, which starts one for you)."),
                   icon=":material/warning:")
    else:
        workers_table(workers, key="jobs_workers", show_gpus=actor.is_admin)
    served = {q for w in workers for q in w.queues}
    for queue, waiting in sorted(backlog.items()):
        if queue not in served:
            st.warning(ngettext(
                "{n} job waits on the {queue} queue and no worker serves it. Start one with "
                "`studio worker --queues {queue}`.",
                "{n} jobs wait on the {queue} queue and no worker serves it. Start one with "
                "`studio worker --queues {queue}`.",
                waiting,
            ).format(n=waiting, queue=queue))


_workers_panel()
