"""Jobs: a page per job and its live progress as Server-Sent Events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlmodel import Session

from twin.config import Settings
from twin.db import get_engine
from twin.jobs import reap_dead_jobs, request_cancel
from twin.models import Job, JobState
from twin.web.deps import DbDep, DbId, StateDep, WebState, render

router = APIRouter()

POLL_SECONDS = 0.5
REAP_EVERY_POLLS = 10
FINISHED = {JobState.done, JobState.failed, JobState.cancelled}
# Where to go once a job of this kind is done.
DONE_URLS = {"import": "/contacts", "prepare": "/dataset", "train": "/chat", "demo-model": "/train"}
CANCELLABLE = {"train"}
"""Kinds whose worker polls for a cancel request."""


def job_view(job: Job, live: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """What the browser sees of a job (params may hold paths; they stay server-side).

    Args:
        job: the job's row.
        live: in-memory progress of jobs running in this process (fresher than the row).
    """
    progress = live.get(job.id or 0) or json.loads(job.progress_json or "{}")
    done, total = progress.get("done"), progress.get("total")
    fraction = done / total if isinstance(done, int | float) and total else None
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state.value,
        "finished": job.state in FINISHED,
        "progress": progress,
        "fraction": fraction,
        "result": json.loads(job.result_json) if job.result_json else None,
        "error": job.error,
        "done_url": DONE_URLS.get(job.kind, "/"),
        "cancellable": job.kind in CANCELLABLE and job.state not in FINISHED,
    }


def _load(db: Session, job_id: int) -> Job:
    job = db.get(Job, job_id)
    if job is None:
        raise HTTPException(status_code=404, detail=f"There is no job {job_id}.")
    return job


def _read_view(state: WebState, job_id: int, *, reap: bool = False) -> dict[str, Any] | None:
    with Session(get_engine(state.settings)) as db:
        job = db.get(Job, job_id)
    if job is None:
        return None
    # A job whose process died (a worker, or this server before a restart) is only found by
    # reaping; a reap writes only when it finds one, so a running import's lock is no bother.
    if reap and job.state not in FINISHED:
        reaped = reap_dead_jobs(settings=state.settings, kind=job.kind)
        job = next((j for j in reaped if j.id == job_id), job)
    return job_view(job, state.live_progress)


def _curve(settings: Settings, job: Job) -> str:
    """The loss curve so far of a training job's run, as JSON ``[[step, loss], …]``."""
    run_id = json.loads(job.params_json or "{}").get("run_id")
    if job.kind != "train" or not run_id:
        return "[]"
    from twin.train.trainer import runs_dir
    from twin.web.routers.train import loss_points

    return json.dumps(loss_points(runs_dir(settings) / run_id))


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: DbId, db: DbDep, state: StateDep) -> Response:
    job = _load(db, job_id)
    context = {"job": job_view(job, state.live_progress), "curve": _curve(state.settings, job)}
    return render(request, "job.html", context)


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: DbId, state: StateDep) -> Response:
    """Ask a running job to stop (training saves a checkpoint first and can be resumed)."""
    request_cancel(settings=state.settings, job_id=job_id)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.get("/jobs/{job_id}/events")
async def job_events(job_id: DbId, state: StateDep) -> StreamingResponse:
    if await asyncio.to_thread(_read_view, state, job_id) is None:
        raise HTTPException(status_code=404, detail=f"There is no job {job_id}.")

    async def stream() -> AsyncIterator[str]:
        last: str | None = None
        polls = 0
        while True:
            # The read runs in a thread so a busy database never stalls the event loop.
            reap = polls % REAP_EVERY_POLLS == 0
            view = await asyncio.to_thread(_read_view, state, job_id, reap=reap)
            polls += 1
            if view is None:
                return
            payload = json.dumps(view)
            if payload != last:
                yield f"data: {payload}\n\n"
                last = payload
            if view["finished"]:
                return
            await asyncio.sleep(POLL_SECONDS)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )
