"""Planning a run: every check that can fail on bad input, done before anything is written, so
a refused run leaves no trace. `prepare_run` returns the checked `RunPlan` that
`twin.train.loop.run_training` then carries out."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from litgpt.config import Config as BaseConfig
from pydantic import BaseModel, Field

from twin.basemodel.checkpoint import load_tokenizer
from twin.config import Settings
from twin.errors import TrainError
from twin.prepare.files import (
    REBUILD_HINT,
    TRAIN_FILE,
    VAL_FILE,
    PrepareStats,
    dataset_sha256,
    has_dataset,
    read_stats,
)
from twin.runs import (
    RunRecord,
    TrainingConfig,
    has_record,
    latest_checkpoint,
    load_run,
    new_run_id,
    newest_run_id,
    run_dir_for,
)
from twin.train.base_model import check_base_model
from twin.train.data import TokenizedSample, check_tokenizer, load_split


class TrainingRequest(BaseModel):
    """What to train; checked before anything is written and kept as the job's params."""

    base_model_dir: Path | None = None
    """litgpt checkpoint dir; default: `twin.basemodel.choose_base_model`'s. Ignored on resume
    (the run's own is used)."""
    dataset_dir: Path | None = None
    """Dir with ``train.json``/``val.json``/``stats.json``; default: ``<data_dir>/dataset``.
    Ignored on resume."""
    run_id: str | None = None
    """Name of the run dir; default: a new time-stamped id, or on resume the newest run."""
    config: TrainingConfig = Field(default_factory=TrainingConfig)
    """Ignored on resume: the run's own config is used, so the continuation is the same
    computation."""
    resume: bool = False
    """Continue ``run_id`` from its newest checkpoint instead of starting a new run."""
    merge: bool = False
    """Also write merged weights to ``final/lit_model.pth`` (a standalone model)."""


@dataclass
class RunPlan:
    """A checked run, ready to start: nothing of it is on disk yet (or, on resume, unchanged)."""

    settings: Settings
    run_dir: Path
    record: RunRecord
    config: TrainingConfig
    train_samples: list[TokenizedSample]
    val_samples: list[TokenizedSample]
    dropped_samples: int
    """Training samples left out: longer than max_seq_length (a reply is never cut)."""
    dropped_val_samples: int = 0
    resume_from: Path | None = None
    stats: PrepareStats | None = None


def launch_rank() -> int:
    """This process's global rank as the launcher set it (``RANK``: torchrun, Fabric, SLURM
    wrappers), known before Fabric exists; 0 for a single process."""
    return int(os.environ.get("RANK", "0"))


def count_steps_per_epoch(samples: int, config: TrainingConfig) -> int:
    """Optimizer steps in one pass over ``samples`` (a partial last step is dropped)."""
    micro_batches = -(-samples // config.micro_batch_size)
    return micro_batches // (config.accumulation_steps * config.world_size)


def _resumed_record(settings: Settings, run_id: str | None) -> tuple[str, Path, RunRecord]:
    run_id = run_id or newest_run_id(settings)
    if run_id is None:
        raise TrainError("There is no run to resume.", hint="Start one with `twin train`.")
    run_dir = run_dir_for(settings, run_id)
    if not has_record(run_dir):
        raise TrainError(f"There is no run {run_id!r} to resume.", hint="See `twin runs`.")
    previous = load_run(run_dir)
    if previous.status == "done":
        raise TrainError(
            f"Run {run_id} has already finished.",
            hint="Chat with it (`twin chat`) or start a new run with `twin train`.",
        )
    return run_id, run_dir, previous


def _check_hardware(config: TrainingConfig) -> None:
    if config.quantize and not torch.cuda.is_available():
        raise TrainError(
            f"quantize={config.quantize} (QLoRA) needs a CUDA GPU; none is available.",
            hint="Train without --quantize on CPU (the adapter is the same kind of file).",
        )
    # Fabric refuses FSDP without a GPU (lightning/fabric/connector.py: "FSDP is only available
    # on GPU"); said here, before any process starts, with what works instead.
    if config.strategy == "fsdp" and not torch.cuda.is_available():
        raise TrainError(
            "strategy=fsdp is set up for CUDA GPUs only: Lightning Fabric runs FSDP on GPUs only.",
            hint="Use --strategy ddp (or auto: DDP over gloo on CPU) to train in several "
            "processes on CPU.",
        )


def prepare_run(request: TrainingRequest, *, settings: Settings) -> RunPlan:
    """Check everything ``request`` asks for and load the data; write nothing."""
    run_id, config = request.run_id, request.config
    base_model_dir, dataset_dir = request.base_model_dir, request.dataset_dir
    previous: RunRecord | None = None
    resume_from = None
    if request.resume:
        run_id, run_dir, previous = _resumed_record(settings, run_id)
        config = previous.config
        base_model_dir, dataset_dir = previous.base_model_dir, previous.dataset_dir
        resume_from = latest_checkpoint(run_dir)
    else:
        run_id = run_id or new_run_id()
        run_dir = run_dir_for(settings, run_id)
        # A dir without run.json is a run killed before its first write: nothing to keep.
        # Under a multi-process launch the other ranks may see run.json rank 0 just wrote.
        if has_record(run_dir) and launch_rank() == 0:
            raise TrainError(
                f"Run {run_id} already exists.",
                hint=f"Continue it with `twin train --resume {run_id}` or pick another --run.",
            )
    _check_hardware(config)

    base = check_base_model(base_model_dir, settings=settings)
    data_dir = (dataset_dir or settings.dataset_dir).expanduser().resolve()
    if not has_dataset(data_dir):
        raise TrainError(f"No dataset at {data_dir} ({TRAIN_FILE} is missing).", hint=REBUILD_HINT)
    sha = dataset_sha256(data_dir)
    if previous is not None and sha != previous.dataset_sha256:
        raise TrainError(
            f"The dataset in {data_dir} changed since run {run_id} started.",
            hint="Start a new run with `twin train` (a resumed run must see the same data).",
        )
    stats = read_stats(data_dir)
    check_tokenizer(stats, base, dataset_dir=data_dir)

    block_size = BaseConfig.from_file(base / "model_config.yaml").block_size
    # One source for the sample length: the run's setting, else the dataset's (`twin prepare`
    # measured the samples against it), never more than the model takes.
    max_seq_length = min(
        config.max_seq_length or (stats and stats.max_seq_length) or block_size, block_size
    )
    tokenizer = load_tokenizer(
        base, error=TrainError, hint="Put the base model's tokenizer files back (see --base)."
    )
    train_samples, dropped = load_split(
        data_dir / TRAIN_FILE, tokenizer=tokenizer, max_seq_length=max_seq_length
    )
    if not train_samples:
        raise TrainError(
            f"The dataset in {data_dir} has no training samples"
            + (
                f" ({dropped} are longer than max_seq_length={max_seq_length})." if dropped else "."
            ),
            hint=REBUILD_HINT + " Include more chats, or raise --max-seq-length.",
        )
    if count_steps_per_epoch(len(train_samples), config) == 0:
        raise TrainError(
            f"{len(train_samples)} training samples do not fill one optimizer step "
            f"of global_batch_size={config.global_batch_size}.",
            hint="Lower --global-batch-size or include more chats in the dataset.",
        )
    val_samples: list[TokenizedSample] = []
    dropped_val = 0
    if (data_dir / VAL_FILE).is_file():
        val_samples, dropped_val = load_split(
            data_dir / VAL_FILE, tokenizer=tokenizer, max_seq_length=max_seq_length
        )

    record = previous or RunRecord(
        run_id=run_id,
        base_model_dir=base,
        dataset_dir=data_dir,
        dataset_sha256=sha,
        max_seq_length=max_seq_length,
        config=config,
    )
    return RunPlan(
        settings=settings,
        run_dir=run_dir,
        record=record,
        config=config,
        train_samples=train_samples,
        val_samples=val_samples,
        dropped_samples=dropped,
        dropped_val_samples=dropped_val,
        resume_from=resume_from,
        stats=stats,
    )
