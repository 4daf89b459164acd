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
from twin.jobs import is_resumable, reap_dead_jobs, request_cancel
from twin.models import Job
from twin.runs import loss_points, run_dir_for
from twin.web.deps import DbDep, DbId, StateDep, WebState, render
from twin.web.jobview import FINISHED, RESTARTERS, job_redirect, job_view

router = APIRouter()

POLL_SECONDS = 0.5
REAP_EVERY_POLLS = 10


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
    return job_view(job, state.live_progress, state.settings)


def _curve(settings: Settings, job: Job) -> str:
    """The losses so far of the run a training (or pipeline) job trains, as JSON
    (`twin.runs.loss_points`)."""
    if job.kind not in ("train", "pipeline"):
        return "{}"
    progress = json.loads(job.progress_json or "{}")
    run_id = (
        json.loads(job.params_json or "{}").get("run_id")
        or (progress.get("train") or {}).get("run_id")
        or json.loads(job.result_json or "{}").get("run_id")
    )
    if not run_id:
        return "{}"
    return json.dumps(loss_points(run_dir_for(settings, run_id)))


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: DbId, db: DbDep, state: StateDep) -> Response:
    job = _load(db, job_id)
    context = {
        "job": job_view(job, state.live_progress, state.settings),
        "curve": _curve(state.settings, job),
    }
    return render(request, "job.html", context)


@router.get("/jobs/{job_id}/curve")
def job_curve(job_id: DbId, db: DbDep, state: StateDep) -> Response:
    """The loss curve as the page draws it: read from the same log as the finished run's, so
    the live chart and the final one are the same."""
    return Response(_curve(state.settings, _load(db, job_id)), media_type="application/json")


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: DbId, state: StateDep) -> Response:
    """Ask a running job to stop (training saves a checkpoint first and can be resumed)."""
    request_cancel(settings=state.settings, job_id=job_id)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.post("/jobs/{job_id}/resume")
def resume_job(job_id: DbId, db: DbDep, state: StateDep) -> Response:
    """Start a stopped or failed job's kind again; it carries on from what was kept."""
    job = _load(db, job_id)
    restart = RESTARTERS.get(job.kind)
    if restart is None or not is_resumable(job):
        raise HTTPException(status_code=409, detail=f"Job {job_id} cannot be resumed.")
    return job_redirect(lambda: restart(state, json.loads(job.params_json or "{}")))


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
