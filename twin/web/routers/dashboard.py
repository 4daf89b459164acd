"""The dashboard: what is done so far (data, dataset, runs) and the next step."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import func
from sqlmodel import Session, col, select

from twin.models import Dialog, Job, JobState, Message
from twin.web.deps import DbDep, SettingsDep, render

router = APIRouter()


def latest_job(db: Session, kind: str) -> Job | None:
    """The newest job of a kind, if any ran."""
    return db.exec(select(Job).where(Job.kind == kind).order_by(col(Job.id).desc())).first()


@router.get("/")
def dashboard(request: Request, db: DbDep, settings: SettingsDep) -> Response:
    dialogs = db.exec(select(func.count()).select_from(Dialog)).one()
    included = db.exec(select(func.count()).select_from(Dialog).where(Dialog.included)).one()
    messages = db.exec(select(func.count()).select_from(Message)).one()
    has_dataset = (settings.dataset_dir / "train.json").is_file()
    train_job = latest_job(db, "train")
    if not messages:
        next_step = ("/import", "Import your Telegram export")
    elif not has_dataset:
        next_step = ("/dataset", "Build the dataset")
    elif train_job is None or train_job.state != JobState.done:
        next_step = ("/train", "Train your twin")
    else:
        next_step = ("/chat", "Chat with your twin")
    return render(
        request,
        "dashboard.html",
        {
            "dialogs": dialogs,
            "included": included,
            "messages": messages,
            "has_dataset": has_dataset,
            "import_job": latest_job(db, "import"),
            "prepare_job": latest_job(db, "prepare"),
            "train_job": train_job,
            "next_step": next_step,
        },
    )
