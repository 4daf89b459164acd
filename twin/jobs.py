"""Long work as jobs: rows of the ``job`` table that the CLI and the web app start, watch and stop.

Life of a job: `start_job` (``queued`` for another process to `claim_job`, or ``running`` in
the caller) → `update_progress` as it goes (also the heartbeat) → `finish_job`, `fail_job` or
`cancel_job`. Only one job of a kind runs at a time: the check and the insert happen in one
``BEGIN IMMEDIATE`` transaction, so two starts racing each other cannot both win.

Stopping is cooperative: `request_cancel` drops a file that the worker polls with a cheap
``stat`` (`cancel_requested`) and answers by saving its state and calling `cancel_job`.

A job whose process died (SIGKILL, power cut, OOM) stays ``running`` in the table;
`reap_dead_jobs` finds those (pid gone or reused by a younger process; without a pid, no
heartbeat for ``stale_seconds``) and marks them failed with a note that they can be resumed.
`start_job` reaps before checking, so a dead job never blocks.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import text
from sqlmodel import Session, col, select

from twin.config import Settings
from twin.db import get_engine
from twin.errors import TwinError
from twin.models import Job, JobState

ACTIVE_STATES = (JobState.queued, JobState.running)
STALE_SECONDS = 300
"""A running job that has not reported for this long is considered dead."""


class JobError(TwinError):
    """A job cannot be started or changed."""


class JobCancelled(JobError):
    """Raised inside a job's work when its cancel was requested; the job ends ``cancelled``
    (resumable: every stage keeps what it finished)."""


class JobBusy(JobError):
    """Another job of the same kind is already active.

    Args:
        message: what is running.
        hint: what to do about it.
        job_id: the active job's id.
    """

    def __init__(self, message: str, *, hint: str | None = None, job_id: int) -> None:
        super().__init__(message, hint=hint)
        self.job_id = job_id


def _now() -> int:
    return int(time.time())


def pid_alive(pid: int | None, *, started_by_unix: int | None = None) -> bool:
    """True when a process with this id exists, is not a zombie and (if given) had started by
    ``started_by_unix`` — a process started later only reuses the id (after a restart, or as
    pid 1 of a new container).

    Args:
        pid: process id (None counts as dead).
        started_by_unix: the job's creation time; the process must be older.
    """
    if pid is None:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_by_unix is None or process.create_time() <= started_by_unix + 1
    except psutil.Error:
        return False


def is_dead(job: Job, *, now: int | None = None, stale_seconds: int = STALE_SECONDS) -> bool:
    """True when an active job has no live process behind it (pure apart from the pid check).

    Args:
        now: current unix time (default: the clock).
        stale_seconds: heartbeat age after which a job counts as dead.
    """
    if job.state not in ACTIVE_STATES:
        return False
    if job.pid is not None:
        # The process is the truth: a long import holds SQLite's write lock and cannot beat.
        return not pid_alive(job.pid, started_by_unix=job.created_unix)
    # A queued job without a pid is waiting for its worker; give it the stale window.
    now = _now() if now is None else now
    last_sign = job.heartbeat_unix or job.updated_unix or job.created_unix
    return now - last_sign > stale_seconds


NOT_RESUMABLE_KINDS = frozenset({"import"})
"""An import is all or nothing and its upload is gone with the server: it starts over."""


def _dead_note(job: Job) -> str:
    then = (
        "Upload the export again: nothing of it was kept."
        if job.kind in NOT_RESUMABLE_KINDS
        else "It can be resumed."
    )
    return (
        f"The {job.kind} job's process (pid {job.pid}) stopped without finishing "
        f"(killed, crashed or the machine restarted). {then}"
    )


def reap_dead_jobs(
    *, settings: Settings, kind: str | None = None, stale_seconds: int = STALE_SECONDS
) -> list[Job]:
    """Mark active jobs whose process is gone as failed (resumable); return them.

    Args:
        settings: whose database.
        kind: only jobs of this kind; default: all.
        stale_seconds: heartbeat age after which a job counts as dead.
    """
    with Session(get_engine(settings), expire_on_commit=False) as session:
        reaped = _reap(session, kind=kind, stale_seconds=stale_seconds)
        session.commit()
    return reaped


def _reap(session: Session, *, kind: str | None, stale_seconds: int) -> list[Job]:
    query = select(Job).where(col(Job.state).in_(ACTIVE_STATES))
    if kind is not None:
        query = query.where(Job.kind == kind)
    reaped = []
    for job in session.exec(query).all():
        if is_dead(job, stale_seconds=stale_seconds):
            job.state, job.error = JobState.failed, _dead_note(job)
            resumable = job.kind not in NOT_RESUMABLE_KINDS
            job.result_json = json.dumps({**_result(job), "resumable": resumable})
            job.updated_unix = _now()
            session.add(job)
            reaped.append(job)
    return reaped


def _result(job: Job) -> dict[str, Any]:
    return json.loads(job.result_json) if job.result_json else {}


def start_job(
    *,
    settings: Settings,
    kind: str,
    params: dict[str, Any] | None = None,
    pid: int | None = None,
    queued: bool = False,
    stale_seconds: int = STALE_SECONDS,
) -> Job:
    """Create a job of ``kind`` unless one is already active (then raise `JobBusy`).

    Args:
        settings: whose database.
        kind: ``train``, ``harvest``, ``import``, ``prepare``, …
        params: what the job works on (JSON-serializable).
        pid: the process doing the work; default: this one (unless ``queued``).
        queued: create it ``queued`` for a worker process to `claim_job`.
        stale_seconds: heartbeat age after which an active job counts as dead.
    """
    now = _now()
    with Session(get_engine(settings), expire_on_commit=False) as session:
        # Take the write lock before reading, so the check and the insert are one step.
        session.connection().execute(text("BEGIN IMMEDIATE"))
        _reap(session, kind=kind, stale_seconds=stale_seconds)
        active = session.exec(
            select(Job).where(Job.kind == kind, col(Job.state).in_(ACTIVE_STATES))
        ).first()
        if active is not None:
            session.commit()  # keep the reaping
            raise JobBusy(
                f"A {kind} job is already {active.state.value}: job {active.id} "
                f"(pid {active.pid}, started {time.ctime(active.created_unix)}).",
                hint=f"Wait for it, or stop it first (`twin {kind} --cancel`).",
                job_id=active.id or 0,
            )
        job = Job(
            kind=kind,
            state=JobState.queued if queued else JobState.running,
            params_json=json.dumps(params or {}),
            pid=None if queued else (pid or os.getpid()),
            created_unix=now,
            updated_unix=now,
            heartbeat_unix=now,
        )
        session.add(job)
        session.commit()
    return job


def get_job(*, settings: Settings, job_id: int) -> Job:
    """One job by id, or `JobError`.

    Args:
        settings: whose database.
    """
    with Session(get_engine(settings), expire_on_commit=False) as session:
        job = session.get(Job, job_id)
    if job is None:
        raise JobError(f"There is no job {job_id}.", hint="See the job list in the web app.")
    return job


def active_job(*, settings: Settings, kind: str) -> Job | None:
    """The queued or running job of ``kind``, if any (dead ones are reaped first).

    Args:
        settings: whose database.
        kind: the job kind.
    """
    reap_dead_jobs(settings=settings, kind=kind)
    with Session(get_engine(settings), expire_on_commit=False) as session:
        return session.exec(
            select(Job).where(Job.kind == kind, col(Job.state).in_(ACTIVE_STATES))
        ).first()


def list_jobs(*, settings: Settings, kind: str | None = None, limit: int = 50) -> list[Job]:
    """Newest jobs first.

    Args:
        settings: whose database.
        kind: only this kind; default: all.
        limit: at most this many.
    """
    with Session(get_engine(settings), expire_on_commit=False) as session:
        query = select(Job).order_by(col(Job.id).desc()).limit(limit)
        if kind is not None:
            query = query.where(Job.kind == kind)
        return list(session.exec(query).all())


def _change(settings: Settings, job_id: int, **values: Any) -> Job:
    with Session(get_engine(settings), expire_on_commit=False) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise JobError(f"There is no job {job_id}.")
        for name, value in values.items():
            setattr(job, name, value)
        job.updated_unix = job.heartbeat_unix = _now()
        session.add(job)
        session.commit()
    return job


def claim_job(*, settings: Settings, job_id: int, pid: int | None = None) -> Job:
    """A worker takes a queued job: it becomes ``running`` under the worker's pid.

    Args:
        settings: whose database.
        job_id: the queued job.
        pid: the worker's pid; default: this process.
    """
    job = get_job(settings=settings, job_id=job_id)
    if job.state != JobState.queued:
        raise JobError(f"Job {job_id} is {job.state.value}, not queued; nothing to claim.")
    return _change(settings, job_id, state=JobState.running, pid=pid or os.getpid())


def set_pid(*, settings: Settings, job_id: int, pid: int) -> Job:
    """Record the process that will do a queued job (right after spawning it).

    Args:
        settings: whose database.
        pid: the spawned process.
    """
    return _change(settings, job_id, pid=pid)


def update_progress(*, settings: Settings, job_id: int, progress: dict[str, Any]) -> None:
    """Replace the job's progress (JSON) and beat its heart.

    Args:
        settings: whose database.
        progress: JSON-serializable; ``done`` and ``total`` drive the web progress bar.
    """
    _change(settings, job_id, progress_json=json.dumps(progress))


def finish_job(*, settings: Settings, job_id: int, result: dict[str, Any] | None = None) -> Job:
    """Mark a job done.

    Args:
        settings: whose database.
        result: what it produced (JSON-serializable).
    """
    cancel_file(settings, job_id).unlink(missing_ok=True)
    return _change(
        settings, job_id, state=JobState.done, result_json=json.dumps(result or {}), error=None
    )


def fail_job(
    *, settings: Settings, job_id: int, error: str, result: dict[str, Any] | None = None
) -> Job:
    """Mark a job failed.

    Args:
        settings: whose database.
        error: the message a user sees.
        result: e.g. ``{"resumable": true}``.
    """
    cancel_file(settings, job_id).unlink(missing_ok=True)
    return _change(
        settings, job_id, state=JobState.failed, error=error, result_json=json.dumps(result or {})
    )


def cancel_job(*, settings: Settings, job_id: int, result: dict[str, Any] | None = None) -> Job:
    """Mark a job cancelled (its worker stopped on request).

    Args:
        settings: whose database.
        result: e.g. ``{"resumable": true}``.
    """
    cancel_file(settings, job_id).unlink(missing_ok=True)
    return _change(settings, job_id, state=JobState.cancelled, result_json=json.dumps(result or {}))


def cancel_file(settings: Settings, job_id: int) -> Path:
    """The file whose existence asks job ``job_id`` to stop.

    Args:
        settings: whose data dir.
    """
    return settings.data_dir / "jobs" / f"{job_id}.cancel"


def request_cancel(*, settings: Settings, job_id: int) -> Job:
    """Ask a running job to stop; a queued one that no worker has claimed is cancelled at once.

    Args:
        settings: whose database.
    """
    job = get_job(settings=settings, job_id=job_id)
    if job.state not in ACTIVE_STATES:
        raise JobError(f"Job {job_id} is {job.state.value}; there is nothing to stop.")
    if job.state == JobState.queued and job.pid is None:
        return cancel_job(settings=settings, job_id=job_id, result={"resumable": True})
    path = cancel_file(settings, job_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.touch()
    return job


def start_or_join(start: Callable[[], int]) -> int:
    """The id of the job ``start`` starts, or of the active one that made it raise `JobBusy`:
    a second click joins the running job instead of failing.

    Args:
        start: starts a job and returns its id.
    """
    try:
        return start()
    except JobBusy as exc:
        return exc.job_id


def is_resumable(job: Job) -> bool:
    """True when a stopped or failed job said it can be resumed (its result carries
    ``resumable``).
    """
    return job.state in (JobState.failed, JobState.cancelled) and bool(
        _result(job).get("resumable")
    )


def cancel_requested(settings: Settings, job_id: int) -> bool:
    """True once `request_cancel` was called for the job (a ``stat``: cheap to poll).

    Args:
        settings: whose data dir.
    """
    return cancel_file(settings, job_id).exists()
