"""What a training run leaves behind, read by the chat and the fidelity report.

A run lives in ``<data_dir>/runs/<run_id>/``::

    run.json                    RunRecord (this module): config, dataset hash, metrics, timings
    metrics.jsonl               one JSON object per logged step / validation
    checkpoints/step-000100/    adapter + optimizer, scheduler, step, data position, RNG state
    final/lit_model.pth.lora    the adapter: litgpt LoRA parameters only (a plain state_dict)
    final/lit_model.pth         merged weights, only when asked for

The base model is never copied: ``base_model_dir`` points at the litgpt checkpoint dir.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from twin.errors import ChatError

RUN_RECORD = "run.json"
ADAPTER_FILE = "lit_model.pth.lora"


class LoraSettings(BaseModel):
    """The LoRA shape; passed to `litgpt.lora.Config` together with the base model's config."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    query: bool = True
    key: bool = False
    value: bool = True
    projection: bool = False
    mlp: bool = False
    head: bool = False

    def litgpt_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `litgpt.lora.Config` (``lora_r``, ``lora_query``, …)."""
        return {f"lora_{name}": value for name, value in self.model_dump().items()}


class RunRecord(BaseModel):
    """The record of one training run (``run.json``)."""

    run_id: str
    base_model_dir: Path
    """Absolute path of the litgpt checkpoint dir the adapter was trained on."""
    dataset_dir: Path
    dataset_sha256: str
    lora: LoraSettings = Field(default_factory=LoraSettings)
    max_seq_length: int
    config: dict[str, Any] = Field(default_factory=dict)
    """Every training hyper-parameter, as given."""
    metrics: dict[str, Any] = Field(default_factory=dict)
    """Final figures: train/val loss, tokens/s, padding fraction, …"""
    timings: dict[str, float] = Field(default_factory=dict)
    fidelity: dict[str, Any] | None = None
    """The fidelity report, once computed."""


def adapter_path(run_dir: Path) -> Path:
    """Where a finished run keeps its adapter."""
    return run_dir / "final" / ADAPTER_FILE


def load_run(run_dir: Path) -> RunRecord:
    """Read ``run_dir/run.json``.

    Args:
        run_dir: the run's directory.
    """
    path = run_dir / RUN_RECORD
    if not path.is_file():
        raise ChatError(
            f"{run_dir} is not a twin training run (no {RUN_RECORD}).",
            hint="Pass a directory under <data dir>/runs/, or train one with `twin train`.",
        )
    return RunRecord.model_validate(json.loads(path.read_text(encoding="utf-8")))


def save_run(run_dir: Path, record: RunRecord) -> None:
    """Write ``run_dir/run.json`` atomically (write a temp file, then rename).

    Args:
        run_dir: the run's directory.
        record: what to write.
    """
    tmp = run_dir / (RUN_RECORD + ".tmp")
    tmp.write_text(record.model_dump_json(indent=2), encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(run_dir / RUN_RECORD)
