"""Jobs: a page per job and its live progress as Server-Sent Events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlmodel import Session

from twin.config import Settings
from twin.db import get_engine
from twin.jobs import cancel_requested, is_resumable, reap_dead_jobs, request_cancel, start_or_join
from twin.models import Job, JobState
from twin.runs import loss_points, run_dir_for
from twin.telegram.client import format_wait
from twin.web.deps import DbDep, DbId, StateDep, WebState, render

router = APIRouter()

POLL_SECONDS = 0.5
REAP_EVERY_POLLS = 10
FINISHED = {JobState.done, JobState.failed, JobState.cancelled}
# Where to go once a job of this kind is done.
DONE_URLS = {
    "import": "/contacts",
    "prepare": "/dataset",
    "train": "/chat",
    "demo-model": "/train",
    "harvest": "/contacts",
    "pipeline": "/chat",
}
TITLES = {
    "import": "Import",
    "prepare": "Build the dataset",
    "train": "Training",
    "demo-model": "Build the demo model",
    "harvest": "Fetch my chats",
    "pipeline": "Train my twin",
}
CANCELLABLE = {"train", "harvest", "pipeline", "demo-model"}
"""Kinds whose worker polls for a cancel request."""
Starter = Callable[[WebState, dict[str, Any]], int]
"""Starts a job of a kind again with the stopped job's params; returns the new job's id."""
RESTARTERS: dict[str, Starter] = {}
"""How each resumable kind starts again (registered by its router with `resumes`)."""


def resumes(kind: str) -> Callable[[Starter], Starter]:
    """Register ``starter`` as the way a stopped or failed ``kind`` job resumes.

    Args:
        kind: the job kind.
    """

    def register(starter: Starter) -> Starter:
        RESTARTERS[kind] = starter
        return starter

    return register


def job_redirect(start: Callable[[], int]) -> RedirectResponse:
    """Start a job (or join the active one of its kind) and go to its page.

    Args:
        start: starts the job and returns its id.
    """
    return RedirectResponse(f"/jobs/{start_or_join(start)}", status_code=303)


def duration(seconds: float) -> str:
    """``75`` → ``"1 min 15 s"``: a time left, in the two units that matter."""
    return format_wait(max(0, round(seconds)))


def describe(progress: dict[str, Any], *, finished: bool) -> str:
    """One line about a job's progress: counts and what it is on; for training the step, the
    losses and the speed; while it runs, the time left.

    Args:
        progress: the job's progress (``done``/``total``/``unit`` and the stage's details).
        finished: the job has ended (then no time left is shown).
    """
    train = progress.get("train") or progress
    parts = []
    if train.get("step") is not None and train.get("max_steps"):
        parts.append(f"step {train['step']:,} of at most {train['max_steps']:,}")
        if train.get("train_loss") is not None:
            parts.append(f"loss {train['train_loss']:.3f}")
        if train.get("val_loss") is not None:
            parts.append(f"val {train['val_loss']:.3f}")
        if train.get("tokens_per_second"):
            parts.append(f"{round(train['tokens_per_second']):,} tokens/s")
    elif progress.get("total"):
        parts.append(f"{progress['done']:,} of {progress['total']:,} {progress.get('unit', '')}")
    if progress.get("messages_new") is not None:
        parts.append(f"{progress['messages_new']:,} messages stored")
    if progress.get("current_dialog") and not finished:
        parts.append(f"reading {progress['current_dialog']}")
    eta = progress.get("eta_seconds")
    if eta is not None and not finished:
        parts.append(f"about {duration(eta)} left")
    return " · ".join(p.strip() for p in parts)


def _stages(progress: dict[str, Any], *, finished: bool) -> list[dict[str, Any]]:
    stages = []
    for stage in progress.get("stages") or []:
        if finished and stage["state"] == "running":
            # Its process stopped mid-stage (a restart): it runs no more.
            stage = {**stage, "state": "interrupted", "eta_seconds": None}
        text = ""
        if stage["state"] == "running" and stage.get("total"):
            text = f"{stage['done']:,} of {stage['total']:,} {stage.get('unit', '')}".strip()
            if stage.get("eta_seconds") is not None and not finished:
                text += f" · about {duration(stage['eta_seconds'])} left"
        stages.append({**stage, "text": text})
    return stages


def job_view(
    job: Job, live: dict[int, dict[str, Any]], settings: Settings | None = None
) -> dict[str, Any]:
    """What the browser sees of a job (params may hold paths; they stay server-side).

    Args:
        job: the job's row.
        live: in-memory progress of jobs running in this process (fresher than the row).
        settings: whose data dir holds cancel requests (to show "stopping…").
    """
    progress = live.get(job.id or 0) or json.loads(job.progress_json or "{}")
    done, total = progress.get("done"), progress.get("total")
    fraction = done / total if isinstance(done, int | float) and total else None
    finished = job.state in FINISHED
    if finished and "eta_seconds" in progress:
        progress = {**progress, "eta_seconds": None}  # a finished job has nothing left
    result = json.loads(job.result_json) if job.result_json else None
    harvest = (result or {}).get("harvest") or (
        result if job.kind == "harvest" and "dialogs_total" in (result or {}) else None
    )
    if harvest and harvest.get("flood_wait"):
        harvest["flood_wait"]["wait_text"] = duration(harvest["flood_wait"]["seconds"])
    return {
        "id": job.id,
        "kind": job.kind,
        "title": TITLES.get(job.kind, job.kind.capitalize()),
        "detail": describe(progress, finished=finished),
        "stages": _stages(progress, finished=finished),
        "harvest": harvest if finished else None,
        "state": job.state.value,
        "finished": finished,
        "stopping": not finished
        and settings is not None
        and cancel_requested(settings, job.id or 0),
        "resumable": is_resumable(job) and job.kind in RESTARTERS,
        "progress": progress,
        "fraction": fraction,
        "result": result,
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
