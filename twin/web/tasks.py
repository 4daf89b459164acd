"""What the pages' buttons start: each a stage's entry function run as a job.

The routers parse a form and call one of these; each returns the new job's id (or raises
`twin.jobs.JobBusy` with the active one's). The demo and Gemma builds, the dataset, the
harvest, the pipeline and the fidelity report run in a thread of the server
(`twin.web.background`); training runs in its own process
(`twin.pipeline.start_training`). Kinds that keep what they finished register how they start
again (`twin.web.jobview.resumes`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from twin import pipeline
from twin.basemodel.gemma import BuildProgress, get_gemma
from twin.db import get_engine
from twin.errors import TrainError
from twin.evaluate.game import human_figure
from twin.jobs import JobCancelled
from twin.models import Job, JobState
from twin.pipeline import (
    DEMO_PRETRAIN_STEPS,
    build_dataset,
    harvest_details,
    run_harvest,
    run_pipeline,
    usable_base_model,
)
from twin.runs import run_dir_for
from twin.telegram.harvest import HarvestProgress, HarvestSummary
from twin.web.background import Reporter, Work, start_in_thread
from twin.web.deps import WebState
from twin.web.jobview import resumes

FIDELITY_JOB = "fidelity"


def _in_thread(state: WebState, kind: str, work: Work, **options: Any) -> int:
    """Start ``work`` as a job of ``kind`` in a thread of the server; its id."""
    job = start_in_thread(
        settings=state.settings, kind=kind, work=work, live=state.live_progress, **options
    )
    return job.id or 0


@resumes("pipeline")
def _resume_pipeline(state: WebState, params: dict[str, Any]) -> int:
    return start_pipeline(state, max_steps=params.get("max_steps"))


def start_pipeline(state: WebState, *, max_steps: int | None = None) -> int:
    """Run "Train my twin" (every stage that is not current) in a thread of the server.

    Args:
        state: the app's state (settings, live progress, the Telegram client factory).
        max_steps: cap on training's optimizer steps; None: the default length.
    """
    settings = state.settings
    with Session(get_engine(settings)) as db:
        last = db.exec(
            select(Job)
            .where(Job.kind == "pipeline", Job.state == JobState.done)
            .order_by(col(Job.id).desc())
        ).first()
    durations = json.loads(last.result_json or "{}").get("durations") if last else None

    def work(report: Reporter) -> dict[str, Any]:
        return run_pipeline(
            settings=settings,
            report=report,
            should_cancel=report.cancelled,
            client_factory=state.telegram_client_factory,
            max_steps=max_steps,
            durations=durations,
        )

    return _in_thread(
        state,
        "pipeline",
        work,
        params={"max_steps": max_steps},
        resumable=True,
    )


def start_training(state: WebState, *, max_steps: int | None = None) -> int:
    """Train on the base model in use. A dataset measured for another model (or in
    characters) goes through "Train my twin", which measures it again first.

    Args:
        state: the app's state.
        max_steps: cap on the run's optimizer steps; None: the default length.
    """
    from twin.train.data import dataset_is_current  # loads torch: only when training starts

    settings = state.settings
    base = usable_base_model(settings)
    if base is None:
        raise TrainError(
            "There is no base model to train on yet.",
            hint="Click “Train my twin” on the dashboard (it makes one ready), or build the "
            "demo model on this page.",
        )
    if not dataset_is_current(dataset_dir=settings.dataset_dir, base_model_dir=base):
        return start_pipeline(state, max_steps=max_steps)
    return pipeline.start_training(settings, base, resume=False, max_steps=max_steps)


@resumes("train")
def resume_training(state: WebState, params: dict[str, Any] | None = None) -> int:
    """Continue the newest run from its last checkpoint (on its own base model when the
    usual choice is gone)."""
    base = usable_base_model(state.settings) or state.settings.base_model_path
    return pipeline.start_training(state.settings, base, resume=True, max_steps=None)


def start_prepare(state: WebState) -> int:
    """Build the dataset, measured in the tokens of the model it will train (characters
    before there is one)."""
    settings = state.settings

    def work(report: Reporter) -> Any:
        return build_dataset(
            settings=settings, tokenizer_dir=usable_base_model(settings), report=report
        )

    return _in_thread(state, "prepare", work, unit="chats")


@resumes("harvest")
def _resume_harvest(state: WebState, params: dict[str, Any]) -> int:
    return start_harvest(state)


def start_harvest(state: WebState) -> int:
    """Fetch my chats with live progress; cancel stops it after the page being stored
    (nothing is lost, the next fetch resumes there).

    Args:
        state: the app's state (settings, live progress, the Telegram client factory).
    """
    settings = state.settings

    def work(report: Reporter) -> HarvestSummary:
        def on_progress(p: HarvestProgress) -> None:
            report(p.dialogs_done, p.dialogs_total, **harvest_details(p))

        return run_harvest(
            settings=settings,
            client_factory=state.telegram_client_factory,
            progress=on_progress,
            should_cancel=report.cancelled,
        )

    return _in_thread(state, "harvest", work, unit="chats", resumable=True)


@resumes("gemma-model")
def _resume_gemma_model(state: WebState, params: dict[str, Any]) -> int:
    return start_gemma_model(state)


def start_gemma_model(state: WebState) -> int:
    """Convert Gemma 3 270M from its installed package (cancellable: nothing half-built is
    left)."""
    settings = state.settings

    def work(report: Reporter) -> dict[str, Any]:
        def on_build(p: BuildProgress) -> None:
            report(round(p.fraction * 1000), 1000, stage=p.stage)
            if report.cancelled():
                raise JobCancelled("The build was stopped; nothing half-built was kept.")

        path = get_gemma(settings=settings, progress=on_build)
        return {"path": path.name}

    return _in_thread(state, "gemma-model", work, unit="‰", resumable=True)


@resumes("demo-model")
def _resume_demo_model(state: WebState, params: dict[str, Any]) -> int:
    return start_demo_model(state, pretrain_steps=params.get("pretrain_steps", DEMO_PRETRAIN_STEPS))


def start_demo_model(state: WebState, *, pretrain_steps: int = DEMO_PRETRAIN_STEPS) -> int:
    """Build the demo base model (cancellable: nothing half-built is left).

    Args:
        state: the app's state.
        pretrain_steps: more steps trade build time for less noisy replies.
    """
    settings = state.settings

    def work(report: Reporter) -> dict[str, Any]:
        path = pipeline.build_demo_model(
            settings, progress=report, should_cancel=report.cancelled, pretrain_steps=pretrain_steps
        )
        return {"path": path.name}

    return _in_thread(
        state,
        "demo-model",
        work,
        params={"pretrain_steps": pretrain_steps},
        unit="steps",
        resumable=True,
    )


@resumes(FIDELITY_JOB)
def _resume_fidelity(state: WebState, params: dict[str, Any]) -> int:
    return start_fidelity(state, run_dir=run_dir_for(state.settings, params["run_id"]))


def start_fidelity(state: WebState, *, run_dir: Path) -> int:
    """Compute a finished run's fidelity report, as ``twin eval`` does (with the game's score),
    and store it with the run.

    Args:
        state: the app's state.
        run_dir: the finished run.
    """
    from twin.evaluate.fidelity import evaluate_run  # loads torch: only when a report is made

    settings = state.settings

    def work(report: Reporter) -> dict[str, Any]:
        def on_progress(done: int, total: int, stage: str) -> None:
            report(done, total, stage=stage)
            if report.cancelled():
                raise JobCancelled("The report was stopped; compute it again to finish it.")

        fidelity = evaluate_run(
            settings=settings, run_dir=run_dir, human=human_figure(run_dir), progress=on_progress
        )
        return {"run_id": fidelity.run_id, "twin_perplexity": fidelity.twin_perplexity}

    return _in_thread(
        state,
        FIDELITY_JOB,
        work,
        params={"run_id": run_dir.name},
        unit="steps",
        resumable=True,
    )
