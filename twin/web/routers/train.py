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
from fastapi.responses import RedirectResponse, Response

from twin.config import Settings
from twin.jobs import JobBusy, list_jobs
from twin.web.background import start_in_thread
from twin.web.deps import StateDep, render
from twin.web.routers.jobs import job_view

router = APIRouter()

SAMPLE_EXPORT = Path(__file__).resolve().parents[3] / "samples" / "sample_export" / "result.json"
DEMO_PRETRAIN_STEPS = 300
MAX_DEMO_PRETRAIN_STEPS = 5000
MAX_CURVE_POINTS = 400


def demo_model_dir(settings: Settings) -> Path:
    """Where the offline demo model goes (as ``twin model init-tiny`` puts it)."""
    return settings.data_dir / "checkpoints" / "twin-tiny"


def usable_base_model(settings: Settings) -> Path | None:
    """The configured base model when complete, else a built demo model, else None.

    Args:
        settings: for the base model and data dirs.
    """
    from twin.train.base_model import missing_files

    for candidate in (settings.base_model_path, demo_model_dir(settings)):
        if not missing_files(candidate):
            return candidate
    return None


def loss_points(run_dir: Path) -> list[list[float]]:
    """``[[step, train_loss], …]`` from a run's metrics log, thinned to at most a few hundred.

    Args:
        run_dir: the run's directory.
    """
    from twin.train.loop import METRICS_FILE

    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    points = []
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line) if line.strip() else {}
        if entry.get("train_loss") is not None:
            points.append([entry["step"], round(entry["train_loss"], 4)])
    stride = max(1, len(points) // MAX_CURVE_POINTS)
    return points[::stride]


@router.get("/train")
def train_page(request: Request, state: StateDep) -> Response:
    from twin.train.base_model import DEFAULT_REPO_ID, download_hint
    from twin.train.runs import list_runs
    from twin.train.tiny import is_demo_model

    settings = state.settings
    runs = list_runs(settings)
    recent = list_jobs(settings=settings, kind="train", limit=1)
    demo = list_jobs(settings=settings, kind="demo-model", limit=1)
    base_model = usable_base_model(settings)
    context: dict[str, Any] = {
        "base_model": base_model,
        "is_demo": base_model is not None and is_demo_model(base_model),
        "download_hint": download_hint(settings),
        "download_command": f"litgpt download {DEFAULT_REPO_ID} --checkpoint_dir "
        f"{settings.data_dir / 'checkpoints'}",
        "demo_steps": DEMO_PRETRAIN_STEPS,
        "has_dataset": (settings.dataset_dir / "train.json").is_file(),
        "runs": runs,
        "job": job_view(recent[0], state.live_progress) if recent else None,
        "demo_job": job_view(demo[0], state.live_progress) if demo else None,
        "curve": json.dumps(loss_points(runs[0].run_dir)) if runs else "[]",
        "resumable": bool(runs) and runs[0].resumable,
    }
    return render(request, "train.html", context)


def _start_training(settings: Settings, *, resume: bool, max_steps: int | None = None) -> Response:
    from twin.errors import TrainError
    from twin.train.trainer import TrainingConfig
    from twin.train.worker import start_training_job

    base = usable_base_model(settings)
    if base is None and not resume:
        from twin.train.base_model import download_hint

        raise TrainError("There is no base model to train on yet.", hint=download_hint(settings))
    try:
        job_id = start_training_job(
            settings=settings,
            base_model_dir=None if resume else base,
            dataset_dir=settings.dataset_dir,
            resume=resume,
            config=None if resume or max_steps is None else TrainingConfig(max_steps=max_steps),
        )
    except JobBusy as exc:
        job_id = exc.job_id
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


def _optional_steps(value: str, *, name: str, upper: int) -> int | None:
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
def start_training(
    state: StateDep, max_steps: Annotated[str, Form(max_length=10)] = ""
) -> Response:
    """Start a run; ``max_steps`` (blank: the default of three epochs) caps its length."""
    steps = _optional_steps(max_steps, name="The number of steps", upper=1_000_000)
    return _start_training(state.settings, resume=False, max_steps=steps)


@router.post("/train/resume")
def resume_training(state: StateDep) -> Response:
    return _start_training(state.settings, resume=True)


@router.post("/train/demo-model")
def build_demo_model(
    state: StateDep, pretrain_steps: Annotated[str, Form(max_length=10)] = ""
) -> Response:
    """Build the tiny offline demo base model from the dataset's (or the sample's) text;
    ``pretrain_steps`` (blank: the default) trades build time for less noisy replies."""
    settings = state.settings
    steps = _optional_steps(
        pretrain_steps, name="Pre-training steps", upper=MAX_DEMO_PRETRAIN_STEPS
    )
    steps = DEMO_PRETRAIN_STEPS if steps is None else steps

    def work(report: Any) -> dict[str, Any]:
        from twin.train.tiny import corpus_from_dataset, corpus_from_export, init_tiny_model

        directory = settings.dataset_dir
        corpus = (
            corpus_from_dataset(directory)
            if (directory / "train.json").is_file()
            else corpus_from_export(SAMPLE_EXPORT)
        )
        path = init_tiny_model(
            out_dir=demo_model_dir(settings),
            corpus=corpus,
            pretrain_steps=steps,
            progress=lambda step, total, _loss: report(step, total),
        )
        return {"path": path.name}

    try:
        job = start_in_thread(
            settings=settings,
            kind="demo-model",
            work=work,
            live=state.live_progress,
            params={"pretrain_steps": steps},
            unit="steps",
        )
    except JobBusy as exc:
        return RedirectResponse(f"/jobs/{exc.job_id}", status_code=303)
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)
