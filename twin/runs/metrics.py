"""A run's metrics log (``metrics.jsonl``): one JSON object per optimizer step, written while
training, read back as the loss curve the train and job pages draw (live and finished alike)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from twin.files import write_private

METRICS_FILE = "metrics.jsonl"
MAX_CURVE_POINTS = 400
"""More points than a chart's width only slow the page down."""


def append_metrics(run_dir: Path, entry: dict[str, Any]) -> None:
    """Log one step's figures (owner-only: the losses are learned from private chats)."""
    path = run_dir / METRICS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fp:
        fp.write(json.dumps(entry) + "\n")
    path.chmod(0o600)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Every logged entry, oldest first (none before the first step)."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Forget entries logged after ``step``: a resumed run logs them again from its checkpoint."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return
    kept = [entry for entry in read_metrics(run_dir) if entry.get("step", 0) <= step]
    write_private(path, "".join(json.dumps(entry) + "\n" for entry in kept))


def loss_points(run_dir: Path) -> dict[str, list[list[float]]]:
    """The run's losses by step: ``{"train": [[step, loss], …], "val": […]}``, the train series
    thinned to at most `MAX_CURVE_POINTS` (the last one kept)."""
    train: list[list[float]] = []
    val: list[list[float]] = []
    for entry in read_metrics(run_dir):
        if entry.get("train_loss") is not None:
            train.append([entry["step"], round(entry["train_loss"], 4)])
        if entry.get("val_loss") is not None:
            val.append([entry["step"], round(entry["val_loss"], 4)])
    stride = max(1, len(train) // MAX_CURVE_POINTS)
    thinned = train[::stride]
    if train and thinned[-1] != train[-1]:
        thinned.append(train[-1])
    return {"train": thinned, "val": val}
