"""Run a stage's entry function as a job in a thread of the server, off the event loop.

The job's row (`twin.jobs`) records its life for every front door; its live progress is also
kept in memory, because some stages hold SQLite's write lock for their whole run (the import
is one transaction, all or nothing) and a progress write would wait behind it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from twin import jobs
from twin.config import Settings
from twin.errors import TwinError
from twin.models import Job

log = logging.getLogger(__name__)

PROGRESS_EVERY_SECONDS = 0.25


class Reporter:
    """Handed to a job's work: call it with ``(done, total, **details)`` (details are JSON and
    join the progress); `cancelled` says whether the user asked the job to stop."""

    def __init__(
        self, settings: Settings, job_id: int, live: dict[int, dict[str, Any]], *,
        unit: str, persist: bool,
    ) -> None:  # fmt: skip
        self.settings, self.job_id, self.live = settings, job_id, live
        self.unit, self.persist = unit, persist
        self.last_write = 0.0
        self.started = time.monotonic()

    def __call__(self, done: int, total: int, **details: Any) -> None:
        if "eta_seconds" not in details:
            details["eta_seconds"] = self.eta_seconds(done, total)
        progress = {"done": done, "total": total, "unit": self.unit, **details}
        self.live[self.job_id] = progress
        now = time.monotonic()
        if self.persist and (now - self.last_write >= PROGRESS_EVERY_SECONDS or done >= total):
            self.last_write = now
            jobs.update_progress(settings=self.settings, job_id=self.job_id, progress=progress)

    def eta_seconds(self, done: int, total: int) -> float | None:
        """The time left at the pace so far (None until there is a pace to go by)."""
        elapsed = time.monotonic() - self.started
        if not total or not 0 < done < total or elapsed < 1:
            return None
        return round(elapsed / done * (total - done), 1)

    def cancelled(self) -> bool:
        return jobs.cancel_requested(self.settings, self.job_id)


Report = Reporter
Work = Callable[[Reporter], BaseModel | dict[str, Any]]


def start_in_thread(
    *,
    settings: Settings,
    kind: str,
    work: Work,
    live: dict[int, dict[str, Any]],
    params: dict[str, Any] | None = None,
    unit: str = "",
    persist_progress: bool = True,
    cleanup: Callable[[], None] | None = None,
    resumable: bool = False,
) -> Job:
    """Start a job of ``kind`` (or raise `twin.jobs.JobBusy`) and run ``work`` in a thread.

    Args:
        settings: whose database and data dir.
        kind: the job kind (one active job per kind).
        work: calls the stage's entry function, passing the report callback as its progress.
        live: where the latest progress of running jobs is kept, by job id.
        params: what the job works on, recorded in its row (nothing secret).
        unit: what ``done``/``total`` count (``bytes``, ``chats``), shown with the numbers.
        persist_progress: also write progress to the job row (off while the stage holds the
            database's write lock).
        cleanup: called when the job ends, however it ends (e.g. to delete an upload).
        resumable: the work keeps what it finished, so a failed job says it can be resumed
            (a job whose work raises `twin.jobs.JobCancelled` always can).
    """
    try:
        job = jobs.start_job(settings=settings, kind=kind, params=params)
    except BaseException:
        if cleanup is not None:
            cleanup()
        raise
    job_id = job.id or 0
    live[job_id] = {}
    again = {"resumable": True} if resumable else None
    report = Reporter(settings, job_id, live, unit=unit, persist=persist_progress)

    def keep_progress() -> None:
        if persist_progress:
            jobs.update_progress(settings=settings, job_id=job_id, progress=live[job_id])

    def run() -> None:
        try:
            result = work(report)
            payload = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
            jobs.update_progress(settings=settings, job_id=job_id, progress=live[job_id])
            jobs.finish_job(settings=settings, job_id=job_id, result=payload)
        except jobs.JobCancelled:
            keep_progress()
            jobs.cancel_job(settings=settings, job_id=job_id, result={"resumable": True})
        except TwinError as exc:
            keep_progress()
            jobs.fail_job(settings=settings, job_id=job_id, error=str(exc), result=again)
        except Exception as exc:
            log.exception("%s job %s failed", kind, job_id)
            jobs.fail_job(
                settings=settings, job_id=job_id, error=f"Unexpected error: {exc!r}", result=again
            )
        finally:
            live.pop(job_id, None)
            if cleanup is not None:
                cleanup()

    threading.Thread(target=run, name=f"twin-{kind}-{job_id}", daemon=True).start()
    return job
