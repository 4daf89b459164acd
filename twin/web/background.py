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

Report = Callable[[int, int], None]
"""Called by the stage with (done, total)."""
Work = Callable[[Report], BaseModel | dict[str, Any]]

PROGRESS_EVERY_SECONDS = 0.25


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
    """
    try:
        job = jobs.start_job(settings=settings, kind=kind, params=params)
    except BaseException:
        if cleanup is not None:
            cleanup()
        raise
    job_id = job.id or 0
    live[job_id] = {}
    last_write = 0.0

    def report(done: int, total: int) -> None:
        nonlocal last_write
        progress = {"done": done, "total": total, "unit": unit}
        live[job_id] = progress
        now = time.monotonic()
        if persist_progress and (now - last_write >= PROGRESS_EVERY_SECONDS or done >= total):
            last_write = now
            jobs.update_progress(settings=settings, job_id=job_id, progress=progress)

    def run() -> None:
        try:
            result = work(report)
            payload = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
            jobs.update_progress(settings=settings, job_id=job_id, progress=live[job_id])
            jobs.finish_job(settings=settings, job_id=job_id, result=payload)
        except TwinError as exc:
            jobs.fail_job(settings=settings, job_id=job_id, error=str(exc))
        except Exception as exc:
            log.exception("%s job %s failed", kind, job_id)
            jobs.fail_job(settings=settings, job_id=job_id, error=f"Unexpected error: {exc!r}")
        finally:
            live.pop(job_id, None)
            if cleanup is not None:
                cleanup()

    threading.Thread(target=run, name=f"twin-{kind}-{job_id}", daemon=True).start()
    return job
