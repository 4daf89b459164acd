"""Jobs: one at a time per kind, progress, cancel requests, dead processes detected."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
from sqlmodel import Session

from twin.config import Settings
from twin.db import get_engine
from twin.jobs import (
    JobBusy,
    JobError,
    active_job,
    cancel_job,
    cancel_requested,
    claim_job,
    finish_job,
    get_job,
    request_cancel,
    start_job,
    update_progress,
)
from twin.models import Job, JobState


def test_second_start_is_refused_naming_the_running_job(db: Settings) -> None:
    first = start_job(settings=db, kind="harvest", params={"dialogs": 3})
    with pytest.raises(JobBusy) as refused:
        start_job(settings=db, kind="harvest")
    assert refused.value.job_id == first.id
    assert f"job {first.id}" in str(refused.value) and "--cancel" in str(refused.value)
    # Other kinds are not blocked, and a finished job frees its kind.
    start_job(settings=db, kind="prepare")
    finish_job(settings=db, job_id=first.id, result={"messages": 10})
    assert start_job(settings=db, kind="harvest").id != first.id


def test_racing_starts_admit_exactly_one(db: Settings) -> None:
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def attempt() -> None:
        barrier.wait()
        try:
            start_job(settings=db, kind="train")
            outcomes.append("started")
        except JobBusy:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused"] * 5 + ["started"]


def test_progress_and_heartbeat_are_stored(db: Settings) -> None:
    job = start_job(settings=db, kind="import")
    update_progress(settings=db, job_id=job.id, progress={"done": 5, "total": 10})
    stored = get_job(settings=db, job_id=job.id)
    assert json.loads(stored.progress_json) == {"done": 5, "total": 10}
    assert stored.heartbeat_unix is not None and stored.heartbeat_unix >= job.created_unix


def test_job_of_a_dead_process_is_marked_failed_and_resumable(db: Settings) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    job = start_job(settings=db, kind="train", pid=int(gone.stdout))
    assert active_job(settings=db, kind="train") is None
    reaped = get_job(settings=db, job_id=job.id)
    assert reaped.state == JobState.failed
    assert "stopped without finishing" in (reaped.error or "")
    assert json.loads(reaped.result_json or "{}")["resumable"] is True
    start_job(settings=db, kind="train")  # the dead job no longer blocks


def _age_job(settings: Settings, job_id: int | None, **fields: int) -> None:
    with Session(get_engine(settings)) as session:
        row = session.get(Job, job_id)
        assert row is not None
        for name, value in fields.items():
            setattr(row, name, value)
        session.add(row)
        session.commit()


def test_a_live_job_without_recent_heartbeat_stays_active(db: Settings) -> None:
    # A long import holds SQLite's write lock and cannot write heartbeats; its process is alive.
    job = start_job(settings=db, kind="import")  # this (live) process
    old = int(time.time()) - 3600
    _age_job(db, job.id, heartbeat_unix=old, updated_unix=old)
    assert active_job(settings=db, kind="import") is not None


def test_a_job_whose_pid_was_reused_is_dead(db: Settings) -> None:
    # The job predates this process: the pid now belongs to someone else (restart, container).
    job = start_job(settings=db, kind="train")
    _age_job(db, job.id, created_unix=int(time.time()) - 10 * 24 * 3600)
    assert active_job(settings=db, kind="train") is None


def test_a_queued_job_that_nobody_claims_goes_stale(db: Settings) -> None:
    job = start_job(settings=db, kind="train", queued=True)
    old = int(time.time()) - 3600
    _age_job(db, job.id, heartbeat_unix=old, updated_unix=old, created_unix=old)
    assert active_job(settings=db, kind="train") is None


def test_cancel_request_reaches_the_worker(db: Settings) -> None:
    job = start_job(settings=db, kind="train", queued=True)
    claimed = claim_job(settings=db, job_id=job.id)
    assert claimed.state == JobState.running
    assert not cancel_requested(db, job.id)
    request_cancel(settings=db, job_id=job.id)
    assert cancel_requested(db, job.id)
    cancel_job(settings=db, job_id=job.id, result={"resumable": True})
    assert not cancel_requested(db, job.id)
    assert get_job(settings=db, job_id=job.id).state == JobState.cancelled
    with pytest.raises(JobError, match="nothing to stop"):
        request_cancel(settings=db, job_id=job.id)


def test_unclaimed_queued_job_is_cancelled_at_once(db: Settings) -> None:
    job = start_job(settings=db, kind="prepare", queued=True)
    assert request_cancel(settings=db, job_id=job.id).state == JobState.cancelled
