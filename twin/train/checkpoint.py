"""Training checkpoints: everything a killed run needs to continue as if it never stopped.

``checkpoints/step-000100/training_state.pth`` holds the adapter (LoRA parameters only), the
optimizer and scheduler states, the step, the data position (epoch + micro-batch index into the
seeded epoch order, see `twin.train.batching`), the RNG states and the running totals. It is
written into a hidden temp dir that is renamed into place once complete, so a checkpoint either
exists whole or not at all, whenever the process dies.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import torch
from litgpt.lora import lora_filter

from twin.dirs import replace_dir
from twin.runs.record import CHECKPOINTS_DIR, STATE_FILE, list_checkpoints

KEEP_CHECKPOINTS = 2


def checkpoint_dir_for(run_dir: Path, step: int) -> Path:
    """``run_dir/checkpoints/step-000100``: the checkpoint taken after optimizer step ``step``."""
    return run_dir / CHECKPOINTS_DIR / f"step-{step:06d}"


def rng_states() -> dict[str, Any]:
    """The random states that training consumes (dropout draws from torch's generators)."""
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Put back what `rng_states` returned.

    Args:
        states: the saved states.
    """
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def make_private(path: Path) -> None:
    """Owner-only modes under ``path``: directories 0700, files 0600 (torch, litgpt and
    shutil write with the umask, usually 0644).

    Args:
        path: a file, or a directory walked whole.
    """
    path.chmod(0o700 if path.is_dir() else 0o600)
    if path.is_dir():
        for child in path.rglob("*"):
            child.chmod(0o700 if child.is_dir() else 0o600)


def save_training_checkpoint(
    fabric: L.Fabric, *, run_dir: Path, step: int, state: dict[str, Any]
) -> Path:
    """Write a checkpoint atomically and drop all but the newest `KEEP_CHECKPOINTS`.

    Args:
        fabric: the run's Fabric (all ranks call this; with FSDP each contributes its shard).
        step: the optimizer step just completed.
        state: ``model``, ``optimizer``, ``scheduler`` objects plus plain values; the model is
            saved with LoRA parameters only.
    """
    final = checkpoint_dir_for(run_dir, step)
    tmp = final.with_name(f".{final.name}.tmp")
    if fabric.global_rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp.mkdir(mode=0o700)
    fabric.barrier()
    fabric.save(tmp / STATE_FILE, state, filter={"model": lora_filter})
    fabric.barrier()
    if fabric.global_rank == 0:
        make_private(tmp)
        replace_dir(tmp, final)  # a same-step checkpoint from before a resume: same content
        for old in list_checkpoints(run_dir)[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(old, ignore_errors=True)
    fabric.barrier()
    return final


def load_training_checkpoint(
    fabric: L.Fabric, *, checkpoint_dir: Path, state: dict[str, Any]
) -> None:
    """Load a checkpoint into ``state`` in place (objects restored, plain values replaced).

    Args:
        fabric: the run's Fabric.
        checkpoint_dir: a dir from `latest_checkpoint`.
        state: the same keys as saved, holding the live model, optimizer and scheduler.
    """
    # The model entry holds LoRA parameters only: the base weights are already loaded.
    fabric.load(checkpoint_dir / STATE_FILE, state, strict=False)


def remove_partial_checkpoints(run_dir: Path) -> None:
    """Delete temp dirs left by a process killed while writing a checkpoint."""
    root = run_dir / CHECKPOINTS_DIR
    if root.is_dir():
        for tmp in root.glob(".step-*.tmp"):
            shutil.rmtree(tmp, ignore_errors=True)
