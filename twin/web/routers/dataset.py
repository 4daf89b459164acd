"""Dataset: build it (a prepare job), its stats, a preview with placeholders, the scrub report."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import func
from sqlmodel import select

from twin.jobs import list_jobs
from twin.models import Dialog
from twin.prepare.files import read_stats
from twin.web import tasks
from twin.web.deps import DbDep, StateDep, render
from twin.web.jobview import job_redirect, job_view
from twin.web.preview import read_preview

router = APIRouter()


@router.get("/dataset")
def dataset_page(request: Request, db: DbDep, state: StateDep) -> Response:
    directory = state.settings.dataset_dir
    recent = list_jobs(settings=state.settings, kind="prepare", limit=1)
    included = db.exec(select(func.count()).select_from(Dialog).where(Dialog.included)).one()
    return render(
        request,
        "dataset.html",
        {
            "stats": read_stats(directory),
            "preview": read_preview(directory),
            "included": included,
            "job": job_view(recent[0], state.live_progress) if recent else None,
        },
    )


@router.post("/dataset")
def build_dataset_page(state: StateDep) -> Response:
    return job_redirect(lambda: tasks.start_prepare(state))
