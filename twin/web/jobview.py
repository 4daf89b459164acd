"""What a page shows of a job, and how a job is started from a page or started again.

`job_view` is the one description of a job that the job page, the dashboard and the other
pages render and that the job's event stream sends; `job_redirect` starts a job (or joins the
active one of its kind) and goes to its page; `resumes` registers how a stopped kind starts
again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi.responses import RedirectResponse

from twin.config import Settings
from twin.jobs import cancel_requested, is_resumable, start_or_join
from twin.models import Job, JobState
from twin.telegram.client import format_wait
from twin.web.deps import WebState

FINISHED = {JobState.done, JobState.failed, JobState.cancelled}
# Where to go once a job of this kind is done.
DONE_URLS = {
    "import": "/contacts",
    "prepare": "/dataset",
    "train": "/chat",
    "demo-model": "/train",
    "harvest": "/contacts",
    "pipeline": "/chat",
    "gemma-model": "/train",
}
TITLES = {
    "import": "Import",
    "prepare": "Build the dataset",
    "train": "Training",
    "demo-model": "Build the demo model",
    "harvest": "Fetch my chats",
    "pipeline": "Train my twin",
    "gemma-model": "Build Gemma 3 270M",
    "fidelity": "Fidelity report",
}
CANCELLABLE = {"train", "harvest", "pipeline", "demo-model", "gemma-model", "fidelity"}
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
    if progress.get("waiting") and not finished:
        return f"waiting for {progress['waiting']} to finish (one heavy job at a time)"
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
        if progress.get("stage") and not progress.get("stages") and not finished:
            parts.append(str(progress["stage"]))
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


def _done_url(job: Job) -> str:
    """Where the job's work shows: a fidelity report on its run's page."""
    run_id = json.loads(job.params_json or "{}").get("run_id")
    if job.kind == "fidelity" and run_id:
        return f"/runs/{run_id}#fidelity-report"
    return DONE_URLS.get(job.kind, "/")


def job_view(
    job: Job, live: dict[int, dict[str, Any]], settings: Settings | None = None
) -> dict[str, Any]:
    """What the browser sees of a job (params may hold paths; they stay server-side).

    Args:
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
        "done_url": _done_url(job),
        "cancellable": job.kind in CANCELLABLE and job.state not in FINISHED,
    }
