"""Runs: everything about a training run on disk, below both training (which writes runs) and
the stages that read them (chat, evaluation, export, the web pages). Imports no torch.

`twin.runs.record` is the record (``run.json``) and the run dir's layout, `twin.runs.listing`
finds runs (newest, finished, by name), `twin.runs.metrics` is the per-step log.
"""

from twin.runs.listing import (
    TRAIN_JOB_KIND,
    RunSummary,
    finished_runs,
    is_finished,
    list_runs,
    new_run_id,
    newest_run_id,
    resolve_run_dir,
)
from twin.runs.metrics import METRICS_FILE, append_metrics, loss_points, truncate_metrics
from twin.runs.record import (
    ADAPTER_FILE,
    MIN_STEPS,
    RUN_RECORD,
    STATE_FILE,
    TRAIN_HINT,
    LoraSettings,
    RunRecord,
    RunStatus,
    TrainingConfig,
    adapter_path,
    has_record,
    latest_checkpoint,
    list_checkpoints,
    load_run,
    run_dir_for,
    runs_dir,
    save_run,
)

__all__ = [
    "ADAPTER_FILE",
    "METRICS_FILE",
    "MIN_STEPS",
    "RUN_RECORD",
    "STATE_FILE",
    "TRAIN_HINT",
    "TRAIN_JOB_KIND",
    "LoraSettings",
    "RunRecord",
    "RunStatus",
    "RunSummary",
    "TrainingConfig",
    "adapter_path",
    "append_metrics",
    "finished_runs",
    "has_record",
    "is_finished",
    "latest_checkpoint",
    "list_checkpoints",
    "list_runs",
    "load_run",
    "loss_points",
    "new_run_id",
    "newest_run_id",
    "resolve_run_dir",
    "run_dir_for",
    "runs_dir",
    "save_run",
    "truncate_metrics",
]
