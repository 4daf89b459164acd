"""Finding runs: the list ``twin runs`` and the web app show, the newest one, the finished ones
(those a chat, an export or the API can load), and the run a name or a path means."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from twin.config import Settings
from twin.errors import RunError
from twin.jobs import active_job
from twin.runs.record import (
    RUN_RECORD,
    TRAIN_HINT,
    adapter_path,
    has_record,
    latest_checkpoint,
    load_run,
    runs_dir,
)

TRAIN_JOB_KIND = "train"
"""The job kind of a training run (one at a time)."""


class RunSummary(BaseModel):
    """One run: where it stands and its latest figures."""

    run_id: str
    run_dir: Path
    status: str
    """``done``, ``running``, ``stopped``, ``failed`` or ``interrupted`` (process died)."""
    resumable: bool
    step: int
    max_steps: int | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    tokens_per_second: float | None = None
    padding_fraction: float | None = None
    base_model_dir: Path


def new_run_id() -> str:
    """A sortable, readable run id (UTC time to the second)."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def run_dirs(settings: Settings) -> list[Path]:
    """The dirs of every recorded run, oldest first (run ids sort by time)."""
    return sorted(path.parent for path in runs_dir(settings).glob(f"*/{RUN_RECORD}"))


def newest_run_id(settings: Settings) -> str | None:
    """The id of the newest recorded run, if any (what ``--resume`` continues by default)."""
    found = run_dirs(settings)
    return found[-1].name if found else None


def is_finished(run_dir: Path) -> bool:
    """True when the run's training is done and its adapter is in place: it can answer."""
    return adapter_path(run_dir).is_file() and load_run(run_dir).status == "done"


def finished_runs(settings: Settings) -> list[Path]:
    """The dirs (absolute) of the runs that can answer, newest first."""
    return [d.resolve() for d in reversed(run_dirs(settings)) if is_finished(d)]


def resolve_run_dir(*, settings: Settings, run: str | Path | None = None) -> Path:
    """The run dir meant by ``run``, with an adapter to load: a path, a run id under the runs
    dir, or (None) the newest finished run.

    Args:
        settings: whose runs.
        run: a run dir, a run id, or None.
    """
    root = runs_dir(settings)
    if run is None:
        finished = finished_runs(settings)
        if not finished:
            raise RunError(f"No finished training run in {root}.", hint=TRAIN_HINT)
        return finished[0]
    candidate = Path(run).expanduser()
    run_dir = candidate if candidate.is_dir() else root / str(run)
    if not has_record(run_dir):
        raise RunError(f"No training run {str(run)!r} (looked in {root}).", hint=TRAIN_HINT)
    if not adapter_path(run_dir).is_file():
        raise RunError(
            f"The run {run_dir.name} has no adapter yet (no {adapter_path(run_dir)}).",
            hint=f"Let it finish, or continue it with `twin train --resume {run_dir.name}`.",
        )
    return run_dir.resolve()


def list_runs(settings: Settings) -> list[RunSummary]:
    """Every run under ``<data_dir>/runs``, newest first; a run recorded as running whose
    process is gone (no active training job names it) is ``interrupted``."""
    live_job = (
        active_job(settings=settings, kind=TRAIN_JOB_KIND) if settings.data_dir.is_dir() else None
    )
    live_run = json.loads(live_job.params_json).get("run_id") if live_job else None
    summaries = []
    for run_dir in reversed(run_dirs(settings)):
        record = load_run(run_dir)
        status: str = record.status
        if status == "running" and record.run_id != live_run:
            status = "interrupted"
        checkpoint = latest_checkpoint(run_dir)
        metrics = record.metrics
        step = metrics.get("steps")
        if step is None or status != "done":
            step = int(checkpoint.name.removeprefix("step-")) if checkpoint else 0
        summaries.append(
            RunSummary(
                run_id=record.run_id,
                run_dir=run_dir,
                status=status,
                resumable=status in ("stopped", "failed", "interrupted"),
                step=step,
                max_steps=metrics.get("max_steps"),
                train_loss=metrics.get("train_loss"),
                val_loss=metrics.get("val_loss"),
                tokens_per_second=metrics.get("tokens_per_second"),
                padding_fraction=metrics.get("padding_fraction"),
                base_model_dir=record.base_model_dir,
            )
        )
    return summaries
