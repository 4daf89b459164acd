"""The list of training runs, as ``twin runs`` and the web app show it."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from twin.config import Settings
from twin.jobs import active_job
from twin.train.checkpoint import latest_checkpoint
from twin.train.record import load_run
from twin.train.trainer import record_status, runs_dir


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


def list_runs(settings: Settings) -> list[RunSummary]:
    """Every run under ``<data_dir>/runs``, newest first.

    Args:
        settings: whose runs (and job table, to tell a live run from a dead one).
    """
    live_job = active_job(settings=settings, kind="train") if settings.data_dir.is_dir() else None
    live_run = json.loads(live_job.params_json).get("run_id") if live_job else None
    summaries = []
    for path in sorted(runs_dir(settings).glob("*/run.json"), reverse=True):
        run_dir = path.parent
        record = load_run(run_dir)
        status = record_status(record)
        if status == "running" and record.run_id != live_run:
            status = "interrupted"
        checkpoint = latest_checkpoint(run_dir)
        step = record.metrics.get("steps")
        if step is None or status != "done":
            step = int(checkpoint.name.removeprefix("step-")) if checkpoint else 0
        metrics = record.metrics
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
