"""Jobs as the pages, the CLI and other services see them: submit, list, show, cancel, retry."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from backend.accounts.actor import Actor, Role
from backend.accounts.audit import record
from backend.config import get_settings
from backend.db import session_scope
from backend.jobs.kinds import get_kind
from backend.jobs.reaper import reap_stale_jobs
from backend.jobs.titles import TITLE_MAX
from backend.jobs.titles import fill as fill_title
from backend.models.jobs import FINISHED_STATUSES, Job, JobLog, JobMetric, JobStatus, Worker

log = logging.getLogger(__name__)


# Every status a job can have, in the order a job lives through them (pages list them so).
STATUSES: tuple[str, ...] = tuple(s.value for s in JobStatus)
ACTIVE_STATUSES: frozenset[str] = frozenset({JobStatus.queued.value, JobStatus.running.value})


class JobNotFound(LookupError):
    pass


class JobStateError(ValueError):
    """The job is in a state where the action makes no sense (cancel a finished job)."""


@dataclass
class JobView:
    id: int
    kind: str
    title: str
    queue: str
    status: str
    progress: float
    stage: str
    stage_template: str | None
    stage_args: dict[str, Any] | None
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    worker_host: str | None
    workspace_id: int
    created_by: int | None
    retry_of_id: int | None
    attempt: int
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    error_detail: str | None = field(default=None, repr=False)
    # a system-written title as a template and its values (pages show it translated)
    title_template: str | None = None
    title_args: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return JobStatus(self.status) in FINISHED_STATUSES

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or datetime.now(UTC)
        return (end - self.started_at).total_seconds()

    def to_dict(self, *, include_detail: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not include_detail:
            d.pop("error_detail", None)
        for k, v in d.items():
            if isinstance(v, datetime):
                d[k] = v.isoformat()
        d["duration_s"] = self.duration_s
        return d


def _view(job: Job, actor: Actor) -> JobView:
    return JobView(
        id=job.id, kind=job.kind, title=job.title, queue=job.queue, status=job.status,
        progress=job.progress, stage=job.stage, stage_template=job.stage_template,
        stage_args=job.stage_args, params=dict(job.params or {}), result=job.result,
        error=job.error, worker_host=job.worker_host, workspace_id=job.workspace_id,
        created_by=job.created_by, retry_of_id=job.retry_of_id, attempt=job.attempt,
        cancel_requested=job.cancel_requested, created_at=job.created_at,
        started_at=job.started_at, finished_at=job.finished_at, heartbeat_at=job.heartbeat_at,
        # tracebacks are for admins only
        error_detail=job.error_detail if actor.is_admin else None,
        title_template=job.title_template, title_args=job.title_args,
    )


def _visible(stmt: Any, actor: Actor) -> Any:
    if actor.is_admin:
        return stmt
    stmt = stmt.where(Job.workspace_id == actor.workspace_id)
    if actor.role == Role.user:
        stmt = stmt.where(Job.created_by == actor.user_id)
    return stmt


def _load(session: Session, actor: Actor, job_id: int, *, lock: bool = False) -> Job:
    job = session.get(Job, job_id, with_for_update=lock)
    if job is None:
        raise JobNotFound(f"No job #{job_id}.")
    if not actor.is_admin and (job.workspace_id != actor.workspace_id or (
        actor.role == Role.user and job.created_by != actor.user_id
    )):
        raise JobNotFound(f"No job #{job_id}.")
    return job


def _enqueue(job_id: int, queue: str) -> None:
    """Send the job to Celery after its row is committed. On failure the row says why."""
    import uuid

    from backend.worker.celery_app import get_celery

    task_id = str(uuid.uuid4())
    with session_scope() as session:
        # written first: if the message is lost on the way, reconciliation sends it again
        session.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.queued.value)
                        .values(celery_task_id=task_id, enqueued_at=func.now()))
    try:
        get_celery().send_task("studio.run_job", args=[job_id], queue=queue, task_id=task_id)
    except Exception as exc:  # noqa: BLE001 - the broker is down: say so on the job
        log.exception("could not enqueue job %s", job_id)
        with session_scope() as session:
            session.execute(
                update(Job).where(Job.id == job_id, Job.status == JobStatus.queued.value)
                .values(status=JobStatus.failed.value, finished_at=datetime.now(UTC),
                        error=f"Could not reach the job queue (Redis): {exc}. Is Redis running?"))


# Kombu's Redis transport keeps a queue's waiting messages in a list named after the queue, plus
# one list per priority step (``<queue>\x06\x16<n>``).
_PRIORITY_SEP = "\x06\x16"


def _waiting_task_ids(queues: set[str]) -> set[str]:
    """Task ids of the messages waiting in Redis on ``queues``."""
    import json

    import redis

    from backend.embedded import ensure_services, redis_py_url

    client = redis.Redis.from_url(redis_py_url(ensure_services(get_settings()).redis_url),
                                  socket_timeout=5)
    ids: set[str] = set()
    for queue in queues:
        keys = [queue, *(f"{queue}{_PRIORITY_SEP}{step}" for step in range(1, 10))]
        for key in keys:
            for raw in client.lrange(key, 0, -1):
                try:
                    ids.add(str(json.loads(raw)["headers"]["id"]))
                except (ValueError, KeyError, TypeError):
                    continue
    return ids


def reconcile_queued_jobs(*, older_than_s: float | None = None, limit: int = 500) -> list[int]:
    """Postgres is the truth: a queued job whose message is no longer waiting in Redis (Redis
    lost it, or a worker took it and could not claim it) and that was last sent more than
    ``older_than_s`` ago (default ``reconcile_after_s``) is sent again. A duplicate is harmless:
    the runner claims queued jobs only. Workers call this every ``reconcile_interval_s``, so a
    lost message is sent again within ``reconcile_after_s + reconcile_interval_s`` while any
    worker runs. Returns the ids sent again. (System task: no actor.)"""
    settings = get_settings()
    age = settings.reconcile_after_s if older_than_s is None else older_than_s
    cutoff = datetime.now(UTC) - timedelta(seconds=age)
    with session_scope() as session:
        candidates = session.execute(
            select(Job.id, Job.queue, Job.celery_task_id)
            .where(Job.status == JobStatus.queued.value,
                   func.coalesce(Job.enqueued_at, Job.created_at) < cutoff)
            .order_by(Job.id).limit(limit)
        ).all()
    if not candidates:
        return []
    waiting = _waiting_task_ids({queue for _id, queue, _task in candidates})
    lost = [(job_id, queue) for job_id, queue, task in candidates if task not in waiting]
    resent: list[int] = []
    for job_id, queue in lost:
        with session_scope() as session:
            # one reconciler wins each job: the row moves on (enqueued_at) before the send
            claimed = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.queued.value,
                       func.coalesce(Job.enqueued_at, Job.created_at) < cutoff)
                .values(enqueued_at=func.now())
                .returning(Job.id)
            ).first() is not None
            if claimed:
                session.add(JobLog(job_id=job_id, level="WARNING",
                                   message="Its message was not in the queue any more: sent again."))
        if claimed:
            _enqueue(job_id, queue)
            resent.append(job_id)
    if resent:
        log.warning("re-sent %d queued job(s) whose message was lost: %s", len(resent), resent)
    return resent


def submit_job(
    *,
    actor: Actor,
    kind: str,
    params: dict[str, Any] | None = None,
    title: str = "",
    title_template: str | None = None,
    title_args: dict[str, Any] | None = None,
    retry_of_id: int | None = None,
    enqueue: bool = True,
) -> JobView:
    """Create a queued job and send it to its queue. ``enqueue=False`` leaves it for ``run_inline``.

    A title the system writes is given as ``title_template`` (one of ``backend.jobs.titles``)
    and its ``title_args``: the row keeps the English text as ``title`` and the template, so a
    page can show it in the reader's language (``title`` is then ignored). A ``title`` alone (a
    person's words) is shown as written."""
    actor.require_role(Role.builder, f"launch {kind} jobs")
    spec = get_kind(kind)
    if title_template is not None:
        title_args = dict(title_args or {})
        title = fill_title(title_template, title_args)
    else:
        title_args = None
    with session_scope() as session:
        job = Job(
            kind=kind, title=title[:TITLE_MAX], title_template=title_template,
            title_args=title_args, queue=spec.queue, params=params or {},
            workspace_id=actor.workspace_id, created_by=actor.user_id, retry_of_id=retry_of_id,
        )
        session.add(job)
        session.flush()
        session.refresh(job)
        view = _view(job, actor)
        record(actor, "launch", "job", job.id, {"kind": kind, "title": job.title,
                                                "retry_of": retry_of_id}, session=session)
    if enqueue:
        _enqueue(view.id, view.queue)
    return view


def run_inline(*, actor: Actor, job_id: int) -> JobView:
    """Run a queued job in this process (the CLI does this when no worker is alive)."""
    from backend.jobs.runner import run_job

    get_job(actor=actor, job_id=job_id)
    run_job(job_id)
    return get_job(actor=actor, job_id=job_id)


def get_job(*, actor: Actor, job_id: int) -> JobView:
    with session_scope() as session:
        reap_stale_jobs(session, timeout_s=get_settings().heartbeat_timeout_s)
        return _view(_load(session, actor, job_id), actor)


def list_jobs(
    *,
    actor: Actor,
    kinds: list[str] | None = None,
    statuses: list[str] | None = None,
    search: str = "",
    limit: int = 200,
) -> list[JobView]:
    unknown = sorted(set(statuses or ()) - set(STATUSES))
    if unknown:
        raise ValueError(f"Unknown status {', '.join(map(repr, unknown))}; "
                         f"choose from {', '.join(STATUSES)}.")
    if limit < 1:
        raise ValueError("The limit must be at least 1.")
    settings = get_settings()
    with session_scope() as session:
        reap_stale_jobs(session, timeout_s=settings.heartbeat_timeout_s)
        stmt = _visible(select(Job), actor)
        if kinds:
            stmt = stmt.where(Job.kind.in_(kinds))
        if statuses:
            stmt = stmt.where(Job.status.in_(statuses))
        if search:
            like = f"%{search}%"
            stmt = stmt.where(Job.title.ilike(like) | Job.kind.ilike(like) | Job.stage.ilike(like))
        stmt = stmt.order_by(Job.id.desc()).limit(limit)
        return [_view(j, actor) for j in session.execute(stmt).scalars()]


def job_counts(*, actor: Actor) -> dict[str, int]:
    with session_scope() as session:
        stmt = _visible(select(Job.status, func.count()).group_by(Job.status), actor)
        return {status: n for status, n in session.execute(stmt).all()}


def job_kinds_in_use(*, actor: Actor) -> list[str]:
    with session_scope() as session:
        stmt = _visible(select(Job.kind).distinct(), actor)
        return sorted(session.execute(stmt).scalars())


def job_metrics(*, actor: Actor, job_id: int) -> dict[str, list[tuple[int, float]]]:
    """Metric name -> [(step, value)], in step order."""
    with session_scope() as session:
        _load(session, actor, job_id)
        rows = session.execute(
            select(JobMetric.name, JobMetric.step, JobMetric.value)
            .where(JobMetric.job_id == job_id)
            .order_by(JobMetric.name, JobMetric.step, JobMetric.id)
        ).all()
    series: dict[str, list[tuple[int, float]]] = {}
    for name, step, value in rows:
        series.setdefault(name, []).append((int(step), float(value)))
    return series


@dataclass(frozen=True)
class LogLine:
    at: datetime
    level: str
    message: str


def job_log_tail(*, actor: Actor, job_id: int, lines: int = 200) -> list[LogLine]:
    with session_scope() as session:
        _load(session, actor, job_id)
        rows = session.execute(
            select(JobLog).where(JobLog.job_id == job_id).order_by(JobLog.id.desc()).limit(lines)
        ).scalars().all()
        return [LogLine(at=r.created_at, level=r.level, message=r.message) for r in reversed(rows)]


def cancel_job(*, actor: Actor, job_id: int) -> JobView:
    """A queued job is cancelled at once; a running one is asked to stop at its next check."""
    actor.require_role(Role.builder, "cancel jobs")
    task_id: str | None = None
    with session_scope() as session:
        job = _load(session, actor, job_id, lock=True)
        status = JobStatus(job.status)
        if status in FINISHED_STATUSES:
            raise JobStateError(f"Job #{job_id} has already ended ({status.value}).")
        if status == JobStatus.queued:
            job.status = JobStatus.cancelled.value
            job.finished_at = datetime.now(UTC)
            job.error = "Cancelled before it started."
            task_id = job.celery_task_id
        job.cancel_requested = True
        session.flush()
        view = _view(job, actor)
        record(actor, "cancel", "job", job.id, {"kind": job.kind, "was": status.value},
               workspace_id=job.workspace_id, session=session)
    if task_id:
        try:
            from backend.worker.celery_app import get_celery

            get_celery().control.revoke(task_id)
        except Exception:  # noqa: BLE001 - the row already says cancelled; the runner skips it
            log.warning("could not revoke task %s", task_id)
    return view


def retry_job(*, actor: Actor, job_id: int) -> JobView:
    """A new job with the same kind and params, linked to the old one (which it may resume)."""
    actor.require_role(Role.builder, "retry jobs")
    old = get_job(actor=actor, job_id=job_id)
    if not old.finished:
        raise JobStateError(f"Job #{job_id} is still {old.status}; cancel it before retrying.")
    new = submit_job(actor=actor, kind=old.kind, params=old.params, title=old.title,
                     title_template=old.title_template, title_args=old.title_args,
                     retry_of_id=old.id)
    record(actor, "retry", "job", old.id, {"kind": old.kind, "new_job": new.id},
           workspace_id=old.workspace_id)
    return new


def wait_for_job(*, actor: Actor, job_id: int, timeout_s: float | None = None,
                 poll_s: float = 0.5) -> JobView:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        view = get_job(actor=actor, job_id=job_id)
        if view.finished:
            return view
        if deadline is not None and time.monotonic() > deadline:
            return view
        time.sleep(poll_s)


@dataclass(frozen=True)
class WorkerView:
    hostname: str
    queues: list[str]
    pid: int
    concurrency: int
    device: str
    started_at: datetime
    last_seen: datetime
    alive: bool
    # per CUDA device: index, name, memory_total_mb, memory_used_mb, utilization (percent)
    gpus: list[dict[str, Any]] = field(default_factory=list)


def list_workers(*, actor: Actor, include_dead: bool = False) -> list[WorkerView]:
    settings = get_settings()
    cutoff = datetime.now(UTC) - timedelta(seconds=settings.heartbeat_timeout_s)
    with session_scope() as session:
        rows = session.execute(select(Worker).order_by(Worker.hostname)).scalars().all()
        views = [
            WorkerView(hostname=w.hostname, queues=list(w.queues), pid=w.pid,
                       concurrency=w.concurrency, device=w.device, started_at=w.started_at,
                       last_seen=w.last_seen, alive=w.last_seen >= cutoff,
                       gpus=list(w.gpus or []))
            for w in rows
        ]
    # a worker that has claimed its name but not announced its queues yet is still starting
    return [v for v in views if (include_dead or v.alive) and v.queues]


def workers_alive(*, queue: str | None = None, hostname: str | None = None) -> bool:
    """Is a worker alive (serving ``queue``; named ``hostname``, when given)?"""
    return any(
        (queue is None or queue in w.queues) and (hostname is None or w.hostname == hostname)
        for w in list_workers(actor=Actor.system())
    )


def queue_backlog(*, actor: Actor) -> dict[str, int]:
    """Queue name -> jobs waiting on it (status queued), among the jobs ``actor`` may see."""
    with session_scope() as session:
        stmt = _visible(
            select(Job.queue, func.count())
            .where(Job.status == JobStatus.queued.value)
            .group_by(Job.queue),
            actor,
        )
        return {queue: n for queue, n in session.execute(stmt).all()}
