"""Train: one button, live progress with the loss curve, cancel and resume; and when no base
model is downloaded, how to get Falcon-7B or build the offline demo model.

Training runs in its own process (`twin.train.worker`, as ``twin train --detach``); the demo
model is built in a thread of the server, as ``twin model init-tiny`` builds it.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from twin.basemodel.checkpoint import is_demo_model
from twin.basemodel.gemma import PACKAGE_SIZE, TERMS_NOTICE, gemma_installed
from twin.jobs import list_jobs
from twin.pipeline import DEMO_PRETRAIN_STEPS, usable_base_model
from twin.prepare.files import has_dataset, read_stats
from twin.runs import MIN_STEPS, list_runs, loss_points
from twin.train.base_model import DEFAULT_REPO_ID
from twin.web import tasks
from twin.web.deps import StateDep, render
from twin.web.forms import optional_steps
from twin.web.jobview import job_redirect, job_view

router = APIRouter()

MAX_DEMO_PRETRAIN_STEPS = 5000


@router.get("/train")
def train_page(request: Request, state: StateDep) -> Response:
    settings = state.settings
    runs = list_runs(settings)
    recent = list_jobs(settings=settings, kind="train", limit=1)
    demo = list_jobs(settings=settings, kind="demo-model", limit=1)
    gemma = list_jobs(settings=settings, kind="gemma-model", limit=1)
    base_model = usable_base_model(settings)
    context: dict[str, Any] = {
        "base_model": base_model,
        "is_demo": base_model is not None and is_demo_model(base_model),
        "download_command": f"litgpt download {DEFAULT_REPO_ID} --checkpoint_dir "
        f"{settings.data_dir / 'checkpoints'}",
        "demo_steps": DEMO_PRETRAIN_STEPS,
        "min_steps": MIN_STEPS,
        "has_dataset": has_dataset(settings.dataset_dir),
        "runs": runs,
        "stats": read_stats(settings.dataset_dir),
        "job": job_view(recent[0], state.live_progress) if recent else None,
        "demo_job": job_view(demo[0], state.live_progress) if demo else None,
        "gemma_job": job_view(gemma[0], state.live_progress) if gemma else None,
        "gemma_installed": gemma_installed(),
        "gemma_terms": TERMS_NOTICE,
        "gemma_size": PACKAGE_SIZE,
        "curve": json.dumps(loss_points(runs[0].run_dir) if runs else {}),
        "resumable": bool(runs) and runs[0].resumable,
    }
    return render(request, "train.html", context)


@router.post("/train")
def start_training_page(
    state: StateDep, max_steps: Annotated[str, Form(max_length=10)] = ""
) -> Response:
    """Start a run; ``max_steps`` (blank: the default length) caps its length."""
    steps = optional_steps(max_steps, name="The number of steps", upper=1_000_000)
    return job_redirect(lambda: tasks.start_training(state, max_steps=steps))


@router.post("/train/resume")
def resume_training(state: StateDep) -> Response:
    return job_redirect(lambda: tasks.resume_training(state))


@router.post("/train/demo-model")
def build_demo_model_page(
    state: StateDep, pretrain_steps: Annotated[str, Form(max_length=10)] = ""
) -> Response:
    """Build the tiny offline demo base model from the dataset's (or the sample's) text;
    ``pretrain_steps`` (blank: the default) trades build time for less noisy replies."""
    steps = optional_steps(pretrain_steps, name="Pre-training steps", upper=MAX_DEMO_PRETRAIN_STEPS)
    steps = DEMO_PRETRAIN_STEPS if steps is None else steps
    return job_redirect(lambda: tasks.start_demo_model(state, pretrain_steps=steps))


@router.post("/train/gemma-model")
def build_gemma_model_page(state: StateDep) -> Response:
    """Build Gemma 3 270M, the small real base model, from its installed package."""
    return job_redirect(lambda: tasks.start_gemma_model(state))
