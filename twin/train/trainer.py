"""``twin train``: LoRA fine-tuning of a litgpt base model on the prepared dataset, resumable.

Reads like litgpt's ``finetune/lora.py`` (setup → fit → validate → save) and uses its parts:
`litgpt.lora.GPT` with `mark_only_lora_as_trainable`, litgpt's checkpoint loading, its
`SFTDataset` for prompt masking, and `merge_lora_weights` for ``--merge``. What it adds:

* **Resume.** A checkpoint every ``checkpoint_interval`` steps and on stop holds everything
  (see `twin.train.checkpoint`); a run killed at any moment continues from its last checkpoint
  and, with ``32-true`` precision, reaches the same adapter bit for bit.
* **Less padding.** Micro-batches are grouped by length (`twin.train.batching`); the padding
  fraction is reported with the throughput.

Precision and scale: ``32-true`` on CPU (faster and exact there), ``bf16-mixed`` on GPU;
``quantize="bnb.nf4"`` is QLoRA (CUDA + bitsandbytes only). On a GPU cluster set ``devices``
and ``num_nodes`` and launch one process per GPU (e.g. ``srun`` or ``torchrun``); with more than
one device the model is sharded with FSDP (`FSDPStrategy`, one wrap per transformer block) and
each rank takes every ``world_size``-th micro-batch of the shared epoch order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field, model_validator

from twin.config import Settings
from twin.train.record import LoraSettings, RunRecord

QuantizeMode = Literal["bnb.nf4", "bnb.nf4-dq", "bnb.fp4", "bnb.fp4-dq", "bnb.int8-training"]
RunStatus = Literal["running", "stopped", "failed", "done"]


class TrainingConfig(BaseModel):
    """Every hyper-parameter of a run; saved in ``run.json`` and reused on resume."""

    lora: LoraSettings = Field(default_factory=LoraSettings)
    learning_rate: float = Field(3e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(10, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    """The cosine schedule ends at ``learning_rate * min_lr_ratio``."""
    epochs: int = Field(3, ge=1)
    max_steps: int | None = Field(None, ge=1)
    """Optimizer steps; caps ``epochs``."""
    micro_batch_size: int = Field(4, ge=1)
    global_batch_size: int = Field(16, ge=1)
    """Samples per optimizer step (gradient accumulation makes up the rest)."""
    max_seq_length: int | None = Field(None, ge=8)
    """Default: ``stats.json``'s value, else the base model's block size."""
    group_by_length: bool = True
    precision: str | None = None
    """Default: ``32-true`` on CPU, ``bf16-mixed`` on GPU."""
    quantize: QuantizeMode | None = None
    devices: int = Field(1, ge=1)
    num_nodes: int = Field(1, ge=1)
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"
    """With several processes: ``auto`` is FSDP on GPUs and DDP (gloo) on CPU."""
    seed: int = 42
    eval_interval: int = Field(50, ge=1)
    """Validate every this many steps (and at the end)."""
    eval_max_batches: int = Field(50, ge=1)
    checkpoint_interval: int = Field(100, ge=1)

    @model_validator(mode="after")
    def _batch_sizes_divide(self) -> TrainingConfig:
        per_step = self.micro_batch_size * self.devices * self.num_nodes
        if self.global_batch_size % per_step:
            raise ValueError(
                f"global_batch_size={self.global_batch_size} is not a multiple of "
                f"micro_batch_size × devices × num_nodes = {per_step}"
            )
        return self

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes

    @property
    def accumulation_steps(self) -> int:
        return self.global_batch_size // (self.micro_batch_size * self.world_size)


class RunProgress(BaseModel):
    """What a running training reports after each step (to the CLI bar, the job row, the web)."""

    run_id: str
    status: RunStatus = "running"
    step: int = 0
    max_steps: int = 0
    epoch: int = 0
    learning_rate: float = 0.0
    train_loss: float | None = None
    val_loss: float | None = None
    tokens_per_second: float = 0.0
    useful_tokens_per_second: float = 0.0
    """Non-padding tokens per second."""
    padding_fraction: float = 0.0
    elapsed_seconds: float = 0.0
    eta_seconds: float | None = None


ProgressFn = Callable[[RunProgress], None]
StopFn = Callable[[], bool]


def runs_dir(settings: Settings) -> Path:
    """``<data_dir>/runs``.

    Args:
        settings: whose data dir.
    """
    return settings.data_dir / "runs"


def new_run_id() -> str:
    """A sortable, readable run id (UTC time to the second)."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def default_precision() -> str:
    """``bf16-mixed`` on a GPU that supports it, else ``32-true`` (bf16 on CPU is slower)."""
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def lr_factor(step: int, *, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to ``min_lr_ratio`` at ``max_steps``.

    Args:
        step: optimizer steps taken so far.
        warmup_steps: steps of linear warmup.
        max_steps: the run's last step.
        min_lr_ratio: the final factor.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def train(
    *,
    settings: Settings,
    base_model_dir: Path | None = None,
    dataset_dir: Path | None = None,
    run_id: str | None = None,
    config: TrainingConfig | None = None,
    resume: bool = False,
    merge: bool = False,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> RunRecord:
    """Fine-tune a LoRA adapter on the dataset, or continue a stopped run.

    Everything that can be checked is checked before the run dir is created; a failure after
    that leaves the run marked ``failed`` in ``run.json`` with its last checkpoint (resumable).

    Args:
        settings: data dir (runs go to ``<data_dir>/runs/<run_id>``) and default base model.
        base_model_dir: litgpt checkpoint dir; default: ``settings.base_model_path``. Ignored
            on resume (the run's own is used).
        dataset_dir: dir with ``train.json``/``val.json``/``stats.json``; default:
            ``<data_dir>/dataset``. Ignored on resume.
        run_id: name of the run dir; default: a new time-stamped id, or on resume the newest run.
        config: hyper-parameters; default: `TrainingConfig()`. Ignored on resume (the run's own
            config is used, so the continuation is the same computation).
        resume: continue ``run_id`` from its newest checkpoint instead of starting a new run.
        merge: also write merged weights to ``final/lit_model.pth`` (a standalone model).
        progress: called with a `RunProgress` after every optimizer step and validation.
        should_stop: polled after every optimizer step; True saves a checkpoint and returns the
            record with status ``stopped`` (resumable).

    Returns:
        The run's record, as written to ``run.json``.
    """
    from twin.train.loop import prepare_run, run_training

    plan = prepare_run(
        settings=settings,
        base_model_dir=base_model_dir,
        dataset_dir=dataset_dir,
        run_id=run_id,
        config=config or TrainingConfig(),
        resume=resume,
    )
    return run_training(plan, merge=merge, progress=progress, should_stop=should_stop)


def record_status(record: RunRecord) -> str:
    """A run's status as kept in its record (``running`` while a process works on it).

    Args:
        record: from `twin.train.record.load_run`.
    """
    return str(record.metrics.get("status", "running"))


def config_from_record(record: RunRecord) -> TrainingConfig:
    """The `TrainingConfig` a run was started with.

    Args:
        record: the run's record.
    """
    data: dict[str, Any] = dict(record.config)
    data["lora"] = record.lora
    return TrainingConfig.model_validate(data)
