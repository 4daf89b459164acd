"""Assist: switch on the listener that writes the twin's reply drafts into Telegram, choose the
chats, and watch the live log (time, contact, draft length; never text).

The listener (`twin.assist.job.run_assist_job`) runs as a task in the server's event loop
(a Telethon client belongs to the loop that made it) with the model chat already uses. It stops
when the owner switches it off; when the app stops it stops too and, being resumable, starts
again with the app (`lifespan`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import col, select

from twin import jobs
from twin.assist.drafts import JOB_KIND, AssistOptions, check_ready, set_assist
from twin.assist.job import job_to_resume, run_assist_job, start_assist_job
from twin.errors import TwinError
from twin.models import Dialog, Job
from twin.store import get_owner
from twin.web.deps import DbDep, DbId, StateDep, WebState, render
from twin.web.model import load_run_twin, newest_run

log = logging.getLogger(__name__)
router = APIRouter()


class _Listener:
    """The listener task of this server process, and the flag that stops it with the app."""

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.shutting_down = False


def _listener(app: FastAPI) -> _Listener:
    if not hasattr(app.state, "assist"):
        app.state.assist = _Listener()
    listener: _Listener = app.state.assist
    return listener


async def start_listener(app: FastAPI, options: AssistOptions) -> int:
    """Load the run's model, record the job and run it in this loop; return the job id.

    Raises `twin.errors.RunError` when no run is trained yet and `twin.jobs.JobBusy` when a
    listener already runs (here or from ``twin assist``).

    Args:
        app: the web app (its state has the settings, the model cache, the client factory).
        options: the listener's rules.
    """
    state: WebState = app.state.twin
    run_dir = check_ready(settings=state.settings, run=options.run)
    twin = await asyncio.to_thread(load_run_twin, state, run_dir)
    job_id = start_assist_job(settings=state.settings, options=options)
    maker = state.telegram_client_factory
    listener = _listener(app)
    listener.shutting_down = False

    async def run() -> None:
        try:
            await run_assist_job(
                settings=state.settings,
                job_id=job_id,
                twin=twin,
                client_factory=maker(state.settings) if maker is not None else None,
                shutting_down=lambda: listener.shutting_down,
            )
        except TwinError:
            pass  # the job row carries the message; the page shows it
        except Exception:
            log.exception("the assist listener (job %s) failed", job_id)

    listener.task = asyncio.create_task(run(), name=f"twin-assist-{job_id}")
    return job_id


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the listener again if twin stopped under it; stop it cleanly when twin stops."""
    state: WebState = app.state.twin
    options = job_to_resume(settings=state.settings)
    if options is not None:
        try:
            await start_listener(app, options)
        except TwinError as exc:
            log.warning("the assist listener did not start again: %s", exc)
    yield
    listener = _listener(app)
    if listener.task is not None and not listener.task.done():
        listener.shutting_down = True
        await asyncio.wait({listener.task}, timeout=10)


def _latest_job(state: WebState) -> Job | None:
    jobs.reap_dead_jobs(settings=state.settings, kind=JOB_KIND)
    latest = jobs.list_jobs(settings=state.settings, kind=JOB_KIND, limit=1)
    return latest[0] if latest else None


def status_view(job: Job | None) -> dict[str, Any]:
    """What the page shows about the listener (also its JSON for the live log).

    Args:
        job: the newest ``assist`` job, if any.
    """
    if job is None:
        return {"running": False, "state": "off", "job_id": None, "error": None, "log": []}
    progress = json.loads(job.progress_json or "{}")
    running = job.state in jobs.ACTIVE_STATES
    return {
        "running": running,
        "state": progress.get("state", "starting") if running else "off",
        "job_id": job.id,
        "run_id": progress.get("run_id"),
        "drafts": progress.get("drafts", 0),
        "error": job.error if job.state == jobs.JobState.failed else None,
        "log": progress.get("log", []),
    }


@router.get("/assist")
def assist_page(request: Request, state: StateDep, db: DbDep) -> Response:
    return _page(request, state, db)


def _page(request: Request, state: WebState, db: Any, error: str | None = None) -> Response:
    dialogs = db.exec(
        select(Dialog).where(col(Dialog.access_hash).is_not(None)).order_by(col(Dialog.name))
    ).all()
    context = {
        "status": status_view(_latest_job(state)),
        "dialogs": dialogs,
        "on_count": sum(1 for d in dialogs if d.assist),
        "connected": get_owner(db).session_encrypted is not None,
        "run_ready": newest_run(state) is not None,
        "error": error,
    }
    return render(request, "assist.html", context, status_code=400 if error else 200)


@router.get("/assist/status")
def assist_status(state: StateDep) -> dict[str, Any]:
    """The listener's state and live log, polled by the page."""
    return status_view(_latest_job(state))


@router.post("/assist/start")
async def start(request: Request, state: StateDep, db: DbDep) -> Response:
    try:
        await start_listener(request.app, AssistOptions())
    except TwinError as exc:
        return _page(request, state, db, error=str(exc))
    return RedirectResponse("/assist", status_code=303)


@router.post("/assist/stop")
async def stop(state: StateDep) -> Response:
    active = jobs.active_job(settings=state.settings, kind=JOB_KIND)
    if active is not None and active.id is not None:
        jobs.request_cancel(settings=state.settings, job_id=active.id)
    return RedirectResponse("/assist", status_code=303)


@router.post("/assist/chats/{dialog_id}")
def switch_chat(
    request: Request,
    state: StateDep,
    db: DbDep,
    dialog_id: DbId,
    on: Annotated[str, Form()] = "",
) -> Response:
    try:
        set_assist(settings=state.settings, dialog_id=dialog_id, on=on == "1")
    except TwinError as exc:
        return _page(request, state, db, error=str(exc))
    return RedirectResponse(f"/assist#dialog-{dialog_id}", status_code=303)
