"""The record of one training run on disk, as training writes it and every later stage reads it.

A run lives in ``<data_dir>/runs/<run_id>/``::

    run.json                    RunRecord (this module): config, status, dataset hash, metrics
    metrics.jsonl               one JSON object per logged step / validation (`twin.runs.metrics`)
    checkpoints/step-000100/    adapter + optimizer, scheduler, step, data position, RNG state
    final/lit_model.pth.lora    the adapter: litgpt LoRA parameters only (a plain state_dict)
    final/lit_model.pth         merged weights, only when asked for

The base model is never copied: ``base_model_dir`` points at the litgpt checkpoint dir. This
module imports no torch, so the web pages and the CLI read runs without loading it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from twin.config import Settings
from twin.errors import RunError
from twin.files import write_private

RUN_RECORD = "run.json"
ADAPTER_FILE = "lit_model.pth.lora"
CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "training_state.pth"
"""A checkpoint is complete once this file is in its dir (see `twin.train.checkpoint`)."""
TRAIN_HINT = "See `twin runs`, or train one with `twin train`."

QuantizeMode = Literal["bnb.nf4", "bnb.nf4-dq", "bnb.fp4", "bnb.fp4-dq", "bnb.int8-training"]
RunStatus = Literal["running", "stopped", "failed", "done"]


class LoraSettings(BaseModel):
    """The LoRA shape; passed to `litgpt.lora.Config` together with the base model's config.

    By default every linear layer of the blocks is adapted (attention's query, key, value and
    projection, and the MLP), not the output head: on Gemma 3 270M and the persona export
    (`bench/bench_sweep.py`, 91 held-out replies), the same three epochs made a twin that a
    classifier told from the person 57% of the time against 60% with query and value only,
    used the person's typical words at 1.13 of their rate against 0.71, and brought 6 of 9
    style ratios within 0.75–1.25 against 5, for ~1.2× the time per step on a CPU.
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    query: bool = True
    key: bool = True
    value: bool = True
    projection: bool = True
    mlp: bool = True
    head: bool = False

    def litgpt_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `litgpt.lora.Config` (``lora_r``, ``lora_query``, …)."""
        return {f"lora_{name}": value for name, value in self.model_dump().items()}


MIN_STEPS = 40
"""The fewest optimizer steps of a run with default settings (see `TrainingConfig.min_steps`):
on the bundled sample export (44 distinct training samples) three epochs were 6 steps, and the
twin answered in English prompt echoes; 40 steps is what the first-reply benchmark trains."""


class TrainingConfig(BaseModel):
    """Every hyper-parameter of a run; saved in ``run.json`` and reused on resume. The one place
    their defaults are declared: ``twin train``'s options default to these."""

    lora: LoraSettings = Field(default_factory=LoraSettings)
    learning_rate: float = Field(3e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(10, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    """The cosine schedule ends at ``learning_rate * min_lr_ratio``."""
    epochs: int = Field(3, ge=1)
    min_steps: int = Field(MIN_STEPS, ge=0)
    """With few samples, passes are added until the run has this many optimizer steps: three
    passes over a small export are a handful of steps, too few to learn the reply format."""
    max_steps: int | None = Field(None, ge=1)
    """Optimizer steps; caps ``epochs`` and ``min_steps``."""
    micro_batch_size: int = Field(4, ge=1)
    global_batch_size: int = Field(16, ge=1)
    """Samples per optimizer step (gradient accumulation makes up the rest)."""
    max_seq_length: int | None = Field(None, ge=8)
    """Default: the dataset's (``stats.json``, set by ``twin prepare``), capped by the base
    model's block size."""
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


class RunRecord(BaseModel):
    """The record of one training run (``run.json``)."""

    run_id: str
    base_model_dir: Path
    """Absolute path of the litgpt checkpoint dir the adapter was trained on."""
    dataset_dir: Path
    dataset_sha256: str
    max_seq_length: int
    config: TrainingConfig = Field(default_factory=TrainingConfig)
    """Every training hyper-parameter, as given (a resumed run continues with these)."""
    status: RunStatus = "running"
    """``running`` while a process works on it (or until a killed one is resumed)."""
    error: str | None = None
    """Why the run failed, when it did."""
    metrics: dict[str, Any] = Field(default_factory=dict)
    """Final figures: train/val loss, tokens/s, padding fraction, …"""
    timings: dict[str, float] = Field(default_factory=dict)
    fidelity: dict[str, Any] | None = None
    """The fidelity report, once computed."""

    @model_validator(mode="before")
    @classmethod
    def _from_older_layout(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("config"), dict):
            # Runs recorded before `min_steps` trained without one: a resumed run continues
            # with the schedule it started with.
            data = {**data, "config": {"min_steps": 0, **data["config"]}}
        # Runs recorded before the config was typed kept the LoRA shape beside the config and
        # the status and error among the metrics; they are read the same way.
        if not isinstance(data, dict) or "lora" not in data:
            return data
        data = dict(data)
        metrics = dict(data.get("metrics") or {})
        config = {**(data.get("config") or {}), "lora": data.pop("lora")}
        data["status"] = data.get("status") or metrics.pop("status", "running")
        data["error"] = data.get("error") or metrics.pop("error", None)
        return {**data, "config": config, "metrics": metrics}

    @property
    def lora(self) -> LoraSettings:
        """The adapter's shape (what a model must be built with to take it)."""
        return self.config.lora


def runs_dir(settings: Settings) -> Path:
    """``<data_dir>/runs``: every run's dir is a child named by its run id."""
    return settings.data_dir / "runs"


def run_dir_for(settings: Settings, run_id: str) -> Path:
    """The dir a run with this id has (or will have)."""
    return runs_dir(settings) / run_id


def adapter_path(run_dir: Path) -> Path:
    """Where a finished run keeps its adapter."""
    return run_dir / "final" / ADAPTER_FILE


def has_record(run_dir: Path) -> bool:
    """True once a run has written its record (a dir without one was killed before its
    first write, or is not a run)."""
    return (run_dir / RUN_RECORD).is_file()


def load_run(run_dir: Path) -> RunRecord:
    """Read ``run_dir/run.json``; a dir without one is named in the error."""
    if not has_record(run_dir):
        raise RunError(
            f"{run_dir} is not a twin training run (no {RUN_RECORD}).",
            hint="Pass a directory under <data dir>/runs/, or train one with `twin train`.",
        )
    return RunRecord.model_validate(json.loads((run_dir / RUN_RECORD).read_text(encoding="utf-8")))


def save_run(run_dir: Path, record: RunRecord) -> None:
    """Write ``run_dir/run.json`` atomically (write a temp file, then rename), owner-only: it
    names the dataset and holds figures learned from private chats."""
    write_private(run_dir / RUN_RECORD, record.model_dump_json(indent=2))


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = run_dir / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step-*") if (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run (the one a resume continues from), if any."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None
