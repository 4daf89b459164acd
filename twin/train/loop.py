"""The training run itself: setup → fit → validate → save, on a `RunPlan` that
`twin.train.plan.prepare_run` checked. `run_training` owns the run dir from then on: any failure
leaves the run marked ``failed`` with its last checkpoint (resumable)."""

from __future__ import annotations

import contextlib
import errno
import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import lightning as L
import torch
from litgpt.lora import GPT, Config, mark_only_lora_as_trainable
from litgpt.utils import load_checkpoint
from pydantic import BaseModel

from twin.errors import TrainError
from twin.runs import (
    RunRecord,
    RunStatus,
    TrainingConfig,
    append_metrics,
    has_record,
    save_run,
    truncate_metrics,
)
from twin.train.batching import epoch_batches
from twin.train.checkpoint import (
    load_training_checkpoint,
    remove_partial_checkpoints,
    restore_rng_states,
    rng_states,
    save_training_checkpoint,
)
from twin.train.data import IGNORE_INDEX, TokenizedSample, collate
from twin.train.fabric import make_fabric
from twin.train.final import save_final
from twin.train.loss import reply_loss
from twin.train.plan import RunPlan, count_steps_per_epoch, launch_rank


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


def run_training(
    plan: RunPlan,
    *,
    merge: bool,
    progress: ProgressFn | None,
    should_stop: StopFn | None,
) -> RunRecord:
    """Set up, fit and save a planned run (see `twin.train.trainer.train`)."""
    run_dir, record = plan.run_dir, plan.record
    if plan.resume_from is None and not has_record(run_dir):
        # Private (0700), like the data dir: the checkpoints hold what was learned from chats.
        run_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        run_dir.mkdir(exist_ok=True, mode=0o700)
    remove_partial_checkpoints(run_dir)
    record.status = "running"
    try:
        if launch_rank() == 0:
            save_run(run_dir, record)
        return _Fit(plan, progress=progress).run(merge=merge, should_stop=should_stop)
    except BaseException as exc:
        record.status, record.error = "failed", f"{type(exc).__name__}: {exc}"
        # The disk may be what failed: a half-written checkpoint only takes space, and a
        # run.json that cannot be updated still says "running", which resumes the same way.
        with contextlib.suppress(OSError):
            remove_partial_checkpoints(run_dir)
            if launch_rank() == 0:
                save_run(run_dir, record)
        if isinstance(exc, TrainError | KeyboardInterrupt):
            raise
        cause, fix = str(exc), "Fix the cause"
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            cause = f"the disk is full ({exc.strerror}); the last complete checkpoint is kept"
            fix = "Free some disk space"
        raise TrainError(
            f"Training run {record.run_id} failed: {cause}",
            hint=f"{fix}, then continue from its last checkpoint: "
            f"`twin train --resume {record.run_id}`.",
        ) from exc


def _new_totals() -> dict[str, Any]:
    return {
        "tokens": 0,
        "useful_tokens": 0,
        "train_seconds": 0.0,
        "val_loss_start": None,
        "val_loss": None,
        "train_loss": None,
    }


class _Fit:
    """One process's part of a run: the model, optimizer and schedule set up from the plan (or
    its checkpoint), then optimizer steps until the end, a stop request or a failure.

    ``state`` is exactly what a checkpoint holds, so a resumed run continues the same
    computation: the step, the data position (epoch, micro-batch index), the RNG states and
    the running totals.
    """

    def __init__(self, plan: RunPlan, *, progress: ProgressFn | None) -> None:
        setup_start = time.perf_counter()
        self.plan, self.config, self.record = plan, plan.config, plan.record
        self.on_progress = progress
        self.fabric = make_fabric(self.config)
        self.fabric.seed_everything(self.config.seed, verbose=False)
        self.model = self._model()
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = self._optimizer()
        load_checkpoint(
            self.fabric, self.model, self.record.base_model_dir / "lit_model.pth", strict=False
        )
        self.lengths = [len(s["input_ids"]) for s in plan.train_samples]
        self.per_step = self.config.accumulation_steps * self.config.world_size
        self.steps_per_epoch = count_steps_per_epoch(len(self.lengths), self.config)
        total = max(self.config.epochs * self.steps_per_epoch, self.config.min_steps)
        self.max_steps = min(self.config.max_steps or total, total)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            partial(
                lr_factor,
                warmup_steps=self.config.warmup_steps,
                max_steps=self.max_steps,
                min_lr_ratio=self.config.min_lr_ratio,
            ),
        )
        self.state: dict[str, Any] = {
            "model": self.model,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "step": 0,
            "epoch": 0,
            "batch_index": 0,
            "rng": None,
            "totals": _new_totals(),
        }
        self._restore()
        self.totals: dict[str, Any] = self.state["totals"]
        self.timings = {
            "setup_seconds": time.perf_counter() - setup_start,
            "eval_seconds": 0.0,
            "checkpoint_seconds": 0.0,
        }
        self.session_steps, self.session_seconds = 0, 0.0
        self.saved_step = self.state["step"]

    def _model(self) -> Any:
        lora_config = Config.from_file(
            self.record.base_model_dir / "model_config.yaml", **self.config.lora.litgpt_kwargs()
        )
        # Only FSDP may skip initialization (it materializes parameters with reset_parameters);
        # with DDP, uninitialized memory would be the LoRA weights' starting point.
        sharded = type(self.fabric.strategy).__name__ == "FSDPStrategy"
        with self.fabric.init_module(empty_init=sharded):
            model = GPT(lora_config)
        mark_only_lora_as_trainable(model)
        samples = self.plan.train_samples + self.plan.val_samples
        model.max_seq_length = max(len(s["input_ids"]) for s in samples)
        return self.fabric.setup_module(model)

    def _optimizer(self) -> Any:
        config = self.config
        if config.quantize:
            # CUDA-only dependency, needed for QLoRA alone.
            import bitsandbytes as bnb

            optimizer: torch.optim.Optimizer = bnb.optim.PagedAdamW(
                self.trainable, lr=config.learning_rate, weight_decay=config.weight_decay
            )
        else:
            optimizer = torch.optim.AdamW(
                self.trainable, lr=config.learning_rate, weight_decay=config.weight_decay
            )
        return self.fabric.setup_optimizers(optimizer)

    def _restore(self) -> None:
        """Continue from the plan's checkpoint, or measure the starting validation loss."""
        run_dir = self.plan.run_dir
        if self.plan.resume_from is not None:
            load_training_checkpoint(
                self.fabric, checkpoint_dir=self.plan.resume_from, state=self.state
            )
            restore_rng_states(self.state["rng"])
            if self.fabric.global_rank == 0:  # the one process that logs metrics
                truncate_metrics(run_dir, self.state["step"])
        else:
            if self.fabric.global_rank == 0:  # a resumed run killed before its first checkpoint
                truncate_metrics(run_dir, 0)
            if self.plan.val_samples:
                self.state["totals"]["val_loss_start"] = validate(
                    self.fabric, self.model, self.plan.val_samples, self.config
                )

    def save_checkpoint(self) -> None:
        start = time.perf_counter()
        self.state["rng"] = rng_states()
        save_training_checkpoint(
            self.fabric, run_dir=self.plan.run_dir, step=self.state["step"], state=self.state
        )
        self.saved_step = self.state["step"]
        self.timings["checkpoint_seconds"] += time.perf_counter() - start

    def report(self, status: RunStatus) -> RunProgress:
        totals, state = self.totals, self.state
        useful, total = totals["useful_tokens"], totals["tokens"]
        seconds = totals["train_seconds"] or 1e-9
        rate = self.session_seconds / self.session_steps if self.session_steps else None
        snapshot = RunProgress(
            run_id=self.record.run_id,
            status=status,
            step=state["step"],
            max_steps=self.max_steps,
            epoch=state["epoch"],
            learning_rate=self.optimizer.param_groups[0]["lr"],
            train_loss=totals["train_loss"],
            val_loss=totals["val_loss"],
            tokens_per_second=total / seconds,
            useful_tokens_per_second=useful / seconds,
            padding_fraction=1 - useful / total if total else 0.0,
            elapsed_seconds=totals["train_seconds"],
            eta_seconds=rate * (self.max_steps - state["step"]) if rate else None,
        )
        if self.on_progress is not None and self.fabric.global_rank == 0:
            self.on_progress(snapshot)
        return snapshot

    def run(self, *, merge: bool, should_stop: StopFn | None) -> RunRecord:
        """Optimizer steps until the last one (then save the adapter) or a stop request (then
        checkpoint); the record of either end is written."""
        self.model.train()
        stopped = False
        batches_epoch, batches = -1, []
        while self.state["step"] < self.max_steps and not stopped:
            if batches_epoch != self.state["epoch"]:  # the order is a function of (seed, epoch)
                batches_epoch, batches = self.state["epoch"], self._epoch_order()
            self._step(batches)
            if self.state["step"] % self.config.checkpoint_interval == 0:
                self.save_checkpoint()
            if self.state["step"] < self.max_steps and should_stop is not None and should_stop():
                stopped = True
        if stopped:
            if self.saved_step != self.state["step"]:
                self.save_checkpoint()
        else:
            save_final(
                self.fabric, self.model, run_dir=self.plan.run_dir, record=self.record, merge=merge
            )
        return self._finish("stopped" if stopped else "done")

    def _epoch_order(self) -> list[list[int]]:
        return epoch_batches(
            self.lengths,
            micro_batch_size=self.config.micro_batch_size,
            seed=self.config.seed,
            epoch=self.state["epoch"],
            group_by_length=self.config.group_by_length,
        )

    def _step(self, batches: list[list[int]]) -> None:
        """One optimizer step over this process's micro-batches, then validation when due and
        a line in the metrics log."""
        config, fabric, state, totals = self.config, self.fabric, self.state, self.totals
        step_start = time.perf_counter()
        losses = []
        counts = torch.zeros(2, dtype=torch.int64)  # (tokens, non-padding tokens) this step
        for micro in range(config.accumulation_steps):
            indices = batches[state["batch_index"] + micro * config.world_size + fabric.global_rank]
            input_ids, labels = collate([self.plan.train_samples[i] for i in indices])
            input_ids, labels = fabric.to_device(input_ids), fabric.to_device(labels)
            accumulating = micro < config.accumulation_steps - 1
            with fabric.no_backward_sync(self.model, enabled=accumulating):
                loss = reply_loss(self.model, input_ids, labels)
                fabric.backward(loss / config.accumulation_steps)
            losses.append(loss.item())
            counts[0] += input_ids.numel()
            counts[1] += sum(self.lengths[i] for i in indices)
        if config.world_size > 1:  # each process saw its own micro-batches: add them up
            counts = fabric.all_reduce(counts, reduce_op="sum")
        totals["tokens"] += int(counts[0])
        totals["useful_tokens"] += int(counts[1])
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        state["step"] += 1
        state["batch_index"] += self.per_step
        if state["batch_index"] >= self.steps_per_epoch * self.per_step:
            state["epoch"], state["batch_index"] = state["epoch"] + 1, 0
        elapsed = time.perf_counter() - step_start
        totals["train_seconds"] += elapsed
        self.session_steps, self.session_seconds = (
            self.session_steps + 1,
            self.session_seconds + elapsed,
        )
        totals["train_loss"] = sum(losses) / len(losses)
        self._log_step()

    def _log_step(self) -> None:
        state, totals = self.state, self.totals
        entry: dict[str, Any] = {
            "step": state["step"],
            "epoch": state["epoch"],
            "train_loss": totals["train_loss"],
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        val_due = state["step"] % self.config.eval_interval == 0 or state["step"] == self.max_steps
        if self.plan.val_samples and val_due:
            start = time.perf_counter()
            totals["val_loss"] = entry["val_loss"] = validate(
                self.fabric, self.model, self.plan.val_samples, self.config
            )
            self.timings["eval_seconds"] += time.perf_counter() - start
        snapshot = self.report("running")
        entry.update(
            tokens_per_second=snapshot.tokens_per_second, padding_fraction=snapshot.padding_fraction
        )
        if self.fabric.global_rank == 0:
            append_metrics(self.plan.run_dir, entry)

    def _finish(self, status: RunStatus) -> RunRecord:
        plan, record, totals = self.plan, self.record, self.totals
        final = self.report(status)
        record.status, record.error = status, None
        record.metrics.update(
            steps=self.state["step"],
            max_steps=self.max_steps,
            epochs=self.state["step"] / self.steps_per_epoch,
            train_loss=totals["train_loss"],
            val_loss=totals["val_loss"],
            val_loss_start=totals["val_loss_start"],
            tokens=totals["tokens"],
            useful_tokens=totals["useful_tokens"],
            tokens_per_second=final.tokens_per_second,
            useful_tokens_per_second=final.useful_tokens_per_second,
            padding_fraction=final.padding_fraction,
            train_samples=len(plan.train_samples),
            val_samples=len(plan.val_samples),
            dropped_samples=plan.dropped_samples,
            dropped_val_samples=plan.dropped_val_samples,
            trainable_parameters=sum(p.numel() for p in self.trainable),
        )
        self.timings["train_seconds"] = totals["train_seconds"]
        record.timings = {k: round(v, 3) for k, v in self.timings.items()}
        if self.fabric.global_rank == 0:
            save_run(plan.run_dir, record)
        return record


@torch.no_grad()
def validate(
    fabric: L.Fabric, model: torch.nn.Module, samples: list[TokenizedSample], config: TrainingConfig
) -> float:
    """Token-weighted validation loss over the first ``eval_max_batches`` length-sorted batches.

    Uses no random numbers (dropout is off in eval mode), so validating never changes the
    course of training: a resumed run that skips a validation stays identical.
    """
    model.eval()
    ordered = sorted(samples, key=lambda s: len(s["input_ids"]))
    size = config.micro_batch_size
    loss_sum, count = 0.0, 0
    for start in range(0, min(len(ordered), size * config.eval_max_batches), size):
        input_ids, labels = collate(ordered[start : start + size])
        input_ids, labels = fabric.to_device(input_ids), fabric.to_device(labels)
        tokens = int((labels[:, 1:] != IGNORE_INDEX).sum())
        loss_sum += reply_loss(model, input_ids, labels).item() * tokens
        count += tokens
    model.train()
    return loss_sum / max(count, 1)
