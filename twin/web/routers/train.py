"""Train: one button, live progress with the loss curve, cancel and resume; and when no base
model is downloaded, how to get Falcon-7B or build the offline demo model.

Training runs in its own process (`twin.train.worker`, as ``twin train --detach``); the demo
model is built in a thread of the server, as ``twin model init-tiny`` builds it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from twin import pipeline
from twin.basemodel.gemma import (
    PACKAGE_SIZE,
    TERMS_NOTICE,
    BuildProgress,
    gemma_installed,
    get_gemma,
)
from twin.config import Settings
from twin.errors import TrainError
from twin.jobs import JobCancelled, list_jobs
from twin.pipeline import DEMO_PRETRAIN_STEPS, usable_base_model
from twin.prepare.files import has_dataset, read_stats
from twin.web.background import Reporter, start_in_thread
from twin.web.deps import StateDep, WebState, render
from twin.web.routers.jobs import job_redirect, job_view, resumes

router = APIRouter()

MAX_DEMO_PRETRAIN_STEPS = 5000
MAX_CURVE_POINTS = 400


def loss_points(run_dir: Path) -> dict[str, list[list[float]]]:
    """The run's losses by step from its metrics log: ``{"train": [[step, loss], …], "val":
    […]}``, the train series thinned to at most a few hundred points (the last one kept).

    Args:
        run_dir: the run's directory.
    """
    from twin.train.loop import METRICS_FILE

    path = run_dir / METRICS_FILE
    train: list[list[float]] = []
    val: list[list[float]] = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line) if line.strip() else {}
            if entry.get("train_loss") is not None:
                train.append([entry["step"], round(entry["train_loss"], 4)])
            if entry.get("val_loss") is not None:
                val.append([entry["step"], round(entry["val_loss"], 4)])
    stride = max(1, len(train) // MAX_CURVE_POINTS)
    thinned = train[::stride]
    if train and thinned[-1] != train[-1]:
        thinned.append(train[-1])
    return {"train": thinned, "val": val}


@router.get("/train")
def train_page(request: Request, state: StateDep) -> Response:
    from twin.train.base_model import DEFAULT_REPO_ID
    from twin.train.runs import list_runs
    from twin.train.tiny import is_demo_model

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


def _start_training(settings: Settings, *, resume: bool, max_steps: int | None = None) -> Response:
    base = usable_base_model(settings)
    if base is None and not resume:
        raise TrainError(
            "There is no base model to train on yet.",
            hint="Click “Train my twin” on the dashboard (it makes one ready), or build the "
            "demo model on this page.",
        )
    return job_redirect(
        lambda: pipeline.start_training(settings, base, resume=resume, max_steps=max_steps)  # type: ignore[arg-type]
    )


def optional_steps(value: str, *, name: str, upper: int) -> int | None:
    """A form's step count: blank means the default; anything else a whole number in range."""
    from twin.errors import TrainError

    value = value.strip()
    if not value:
        return None
    if not value.isdigit() or not 0 < int(value) <= upper:
        raise TrainError(f"{name} must be a whole number from 1 to {upper}, got {value!r}.",
                         hint="Leave it blank for the default.")  # fmt: skip
    return int(value)


@router.post("/train")
def start_training_page(
    state: StateDep, max_steps: Annotated[str, Form(max_length=10)] = ""
) -> Response:
    """Start a run; ``max_steps`` (blank: the default of three epochs) caps its length. A
    dataset measured for another model (or in characters) goes through "Train my twin",
    which measures it again first."""
    from twin.train.data import dataset_is_current
    from twin.web.routers.dashboard import start_pipeline

    steps = optional_steps(max_steps, name="The number of steps", upper=1_000_000)
    settings = state.settings
    base = usable_base_model(settings)
    if base is not None and not dataset_is_current(
        dataset_dir=settings.dataset_dir, base_model_dir=base
    ):
        return job_redirect(lambda: start_pipeline(state, max_steps=steps))
    return _start_training(settings, resume=False, max_steps=steps)


@router.post("/train/resume")
def resume_training(state: StateDep) -> Response:
    return _start_training(state.settings, resume=True)


@resumes("train")
def _resume_run(state: WebState, params: dict[str, Any]) -> int:
    base = usable_base_model(state.settings) or state.settings.base_model_path
    return pipeline.start_training(state.settings, base, resume=True, max_steps=None)


@router.post("/train/demo-model")
def build_demo_model_page(
    state: StateDep, pretrain_steps: Annotated[str, Form(max_length=10)] = ""
) -> Response:
    """Build the tiny offline demo base model from the dataset's (or the sample's) text;
    ``pretrain_steps`` (blank: the default) trades build time for less noisy replies."""
    steps = optional_steps(pretrain_steps, name="Pre-training steps", upper=MAX_DEMO_PRETRAIN_STEPS)
    steps = DEMO_PRETRAIN_STEPS if steps is None else steps
    return job_redirect(lambda: start_demo_model(state, pretrain_steps=steps))


@router.post("/train/gemma-model")
def build_gemma_model_page(state: StateDep) -> Response:
    """Build Gemma 3 270M, the small real base model, from its installed package."""
    return job_redirect(lambda: start_gemma_model(state))


@resumes("gemma-model")
def _resume_gemma_model(state: WebState, params: dict[str, Any]) -> int:
    return start_gemma_model(state)


def start_gemma_model(state: WebState) -> int:
    """Convert Gemma 3 270M in a thread of the server (cancellable: nothing half-built is
    left); return the job id."""
    settings = state.settings

    def work(report: Reporter) -> dict[str, Any]:
        def on_build(p: BuildProgress) -> None:
            report(round(p.fraction * 1000), 1000, stage=p.stage)
            if report.cancelled():
                raise JobCancelled("The build was stopped; nothing half-built was kept.")

        path = get_gemma(settings=settings, progress=on_build)
        return {"path": path.name}

    job = start_in_thread(
        settings=settings,
        kind="gemma-model",
        work=work,
        live=state.live_progress,
        unit="‰",
        resumable=True,
    )
    return job.id or 0


@resumes("demo-model")
def _resume_demo_model(state: WebState, params: dict[str, Any]) -> int:
    return start_demo_model(state, pretrain_steps=params.get("pretrain_steps", DEMO_PRETRAIN_STEPS))


def start_demo_model(state: WebState, *, pretrain_steps: int = DEMO_PRETRAIN_STEPS) -> int:
    """Build the demo base model in a thread of the server (cancellable: nothing half-built
    is left); return the job id."""
    settings = state.settings

    def work(report: Reporter) -> dict[str, Any]:
        path = pipeline.build_demo_model(
            settings, progress=report, should_cancel=report.cancelled, pretrain_steps=pretrain_steps
        )
        return {"path": path.name}

    job = start_in_thread(
        settings=settings,
        kind="demo-model",
        work=work,
        live=state.live_progress,
        params={"pretrain_steps": pretrain_steps},
        unit="steps",
        resumable=True,
    )
    return job.id or 0
