"""The dashboard: what is done so far (chats, dataset, runs), both ways to get the chats in, and
"Train my twin": one pipeline job that runs every stage that is not current."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import func
from sqlmodel import Session, col, select

from twin.models import Dialog, Job, JobState, Message
from twin.pipeline import telegram_connected
from twin.prepare.files import has_dataset
from twin.web import tasks
from twin.web.deps import DbDep, StateDep, render
from twin.web.forms import optional_steps
from twin.web.jobview import job_redirect, job_view

router = APIRouter()


def latest_job(db: Session, kind: str) -> Job | None:
    """The newest job of a kind, if any ran."""
    return db.exec(select(Job).where(Job.kind == kind).order_by(col(Job.id).desc())).first()


@router.get("/")
def dashboard(request: Request, db: DbDep, state: StateDep) -> Response:
    settings = state.settings
    dialogs = db.exec(select(func.count()).select_from(Dialog)).one()
    included = db.exec(select(func.count()).select_from(Dialog).where(Dialog.included)).one()
    messages = db.exec(select(func.count()).select_from(Message)).one()
    dataset_built = has_dataset(settings.dataset_dir)
    train_job = latest_job(db, "train")
    views = {
        kind: job_view(job, state.live_progress, settings)
        for kind in ("harvest", "pipeline", "import")
        if (job := latest_job(db, kind)) is not None
    }
    return render(
        request,
        "dashboard.html",
        {
            "dialogs": dialogs,
            "included": included,
            "messages": messages,
            "has_dataset": dataset_built,
            "connected": telegram_connected(settings),
            "import_job": views.get("import"),
            "harvest_job": views.get("harvest"),
            "pipeline_job": views.get("pipeline"),
            "train_job": train_job,
            "trained": train_job is not None and train_job.state == JobState.done,
        },
    )


@router.post("/pipeline")
def train_my_twin(state: StateDep, max_steps: Annotated[str, Form(max_length=10)] = "") -> Response:
    """Start "Train my twin" (or join the running one)."""
    steps = optional_steps(max_steps, name="The number of steps", upper=1_000_000)
    return job_redirect(lambda: tasks.start_pipeline(state, max_steps=steps))
