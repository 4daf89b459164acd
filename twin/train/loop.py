"""The training run itself: plan (checks, no writes) → setup → fit → validate → save.

`prepare_run` does every check that can fail on bad input before anything is written, so a
refused run leaves no trace. `run_training` owns the run dir from then on.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from litgpt.config import Config as BaseConfig
from litgpt.lora import GPT, Config, lora_filter, mark_only_lora_as_trainable
from litgpt.tokenizer import Tokenizer
from litgpt.utils import load_checkpoint

from twin.config import Settings
from twin.errors import TrainError
from twin.train.base_model import TOKENIZER_FILES, check_base_model
from twin.train.batching import epoch_batches
from twin.train.checkpoint import (
    latest_checkpoint,
    load_training_checkpoint,
    make_private,
    remove_partial_checkpoints,
    restore_rng_states,
    rng_states,
    save_training_checkpoint,
)
from twin.train.data import (
    IGNORE_INDEX,
    PREPARE_HINT,
    Sample,
    check_tokenizer,
    collate,
    dataset_sha256,
    load_split,
    read_stats,
)
from twin.train.loss import reply_loss
from twin.train.merge import merge_adapter
from twin.train.record import ADAPTER_FILE, RunRecord, adapter_path, load_run, save_run
from twin.train.trainer import (
    ProgressFn,
    RunProgress,
    StopFn,
    TrainingConfig,
    config_from_record,
    default_precision,
    lr_factor,
    new_run_id,
    record_status,
    runs_dir,
)

METRICS_FILE = "metrics.jsonl"
FINAL_COPIES = (*TOKENIZER_FILES, "model_config.yaml", "tokenizer_config.json")


@dataclass
class RunPlan:
    """A checked run, ready to start: nothing of it is on disk yet (or, on resume, unchanged)."""

    settings: Settings
    run_dir: Path
    record: RunRecord
    config: TrainingConfig
    train_samples: list[Sample]
    val_samples: list[Sample]
    dropped_samples: int
    """Training samples left out: longer than max_seq_length (a reply is never cut)."""
    dropped_val_samples: int = 0
    resume_from: Path | None = None
    stats: dict[str, Any] = field(default_factory=dict)


def newest_run_id(settings: Settings) -> str | None:
    """The id of the newest run dir with a ``run.json``, if any.

    Args:
        settings: whose runs.
    """
    found = sorted(p.parent.name for p in runs_dir(settings).glob("*/run.json"))
    return found[-1] if found else None


def prepare_run(
    *,
    settings: Settings,
    base_model_dir: Path | None,
    dataset_dir: Path | None,
    run_id: str | None,
    config: TrainingConfig,
    resume: bool,
) -> RunPlan:
    """Check everything and load the data; write nothing. Arguments as in `twin.train.train`."""
    resume_from = None
    if resume:
        run_id = run_id or newest_run_id(settings)
        if run_id is None:
            raise TrainError("There is no run to resume.", hint="Start one with `twin train`.")
        run_dir = runs_dir(settings) / run_id
        if not (run_dir / "run.json").is_file():
            raise TrainError(f"There is no run {run_id!r} to resume.", hint="See `twin runs`.")
        previous = load_run(run_dir)
        if record_status(previous) == "done":
            raise TrainError(
                f"Run {run_id} has already finished.",
                hint="Chat with it (`twin chat`) or start a new run with `twin train`.",
            )
        config = config_from_record(previous)
        base_model_dir, dataset_dir = previous.base_model_dir, previous.dataset_dir
        resume_from = latest_checkpoint(run_dir)
    else:
        run_id = run_id or new_run_id()
        run_dir = runs_dir(settings) / run_id
        # A dir without run.json is a run killed before its first write: nothing to keep.
        # Under a multi-process launch the other ranks may see run.json rank 0 just wrote.
        if (run_dir / "run.json").is_file() and launch_rank() == 0:
            raise TrainError(
                f"Run {run_id} already exists.",
                hint=f"Continue it with `twin train --resume {run_id}` or pick another --run.",
            )
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

    base = check_base_model(base_model_dir, settings=settings)
    data_dir = (dataset_dir or settings.dataset_dir).expanduser().resolve()
    if not (data_dir / "train.json").is_file():
        raise TrainError(f"No dataset at {data_dir} (train.json is missing).", hint=PREPARE_HINT)
    sha = dataset_sha256(data_dir)
    if resume and sha != previous.dataset_sha256:
        raise TrainError(
            f"The dataset in {data_dir} changed since run {run_id} started.",
            hint="Start a new run with `twin train` (a resumed run must see the same data).",
        )
    stats = read_stats(data_dir)
    check_tokenizer(stats, base, dataset_dir=data_dir)

    model_config = BaseConfig.from_file(base / "model_config.yaml")
    max_seq_length = min(
        config.max_seq_length or stats.get("max_seq_length") or model_config.block_size,
        model_config.block_size,
    )
    tokenizer = Tokenizer(base)
    train_samples, dropped = load_split(
        data_dir / "train.json", tokenizer=tokenizer, max_seq_length=max_seq_length
    )
    if not train_samples:
        raise TrainError(
            f"The dataset in {data_dir} has no training samples"
            + (
                f" ({dropped} are longer than max_seq_length={max_seq_length})." if dropped else "."
            ),
            hint=PREPARE_HINT + " Include more chats, or raise --max-seq-length.",
        )
    if count_steps_per_epoch(len(train_samples), config) == 0:
        raise TrainError(
            f"{len(train_samples)} training samples do not fill one optimizer step "
            f"of global_batch_size={config.global_batch_size}.",
            hint="Lower --global-batch-size or include more chats in the dataset.",
        )
    val_samples: list[Sample] = []
    dropped_val = 0
    if (data_dir / "val.json").is_file():
        val_samples, dropped_val = load_split(
            data_dir / "val.json", tokenizer=tokenizer, max_seq_length=max_seq_length
        )

    record = (
        previous
        if resume
        else RunRecord(
            run_id=run_id,
            base_model_dir=base,
            dataset_dir=data_dir,
            dataset_sha256=sha,
            lora=config.lora,
            max_seq_length=max_seq_length,
            config=config.model_dump(exclude={"lora"}),
            metrics={"status": "running"},
        )
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


def launch_rank() -> int:
    """This process's global rank as the launcher set it (``RANK``: torchrun, Fabric, SLURM
    wrappers), known before Fabric exists; 0 for a single process."""
    return int(os.environ.get("RANK", "0"))


def count_steps_per_epoch(samples: int, config: TrainingConfig) -> int:
    """Optimizer steps in one pass over ``samples`` (a partial last step is dropped).

    Args:
        samples: training samples.
        config: batch sizes and devices.
    """
    micro_batches = -(-samples // config.micro_batch_size)
    return micro_batches // (config.accumulation_steps * config.world_size)


def make_fabric(config: TrainingConfig) -> L.Fabric:
    """Fabric for the config: one device, or FSDP over several; QLoRA through bitsandbytes.

    Args:
        config: the run's config.
    """
    precision: Any = config.precision or default_precision()
    plugins = None
    if config.quantize:
        from lightning.fabric.plugins import BitsandbytesPrecision

        dtype = {"16-true": torch.float16, "bf16-true": torch.bfloat16}.get(precision)
        dtype = dtype or torch.bfloat16
        plugins, precision = BitsandbytesPrecision(config.quantize[4:], dtype), None
    strategy: Any = "auto"
    gpu = torch.cuda.is_available()
    fsdp = config.strategy == "fsdp" or (config.strategy == "auto" and gpu)
    if config.world_size > 1 and fsdp:
        from lightning.fabric.strategies import FSDPStrategy
        from litgpt.lora import Block

        strategy = FSDPStrategy(
            auto_wrap_policy={Block}, state_dict_type="full", sharding_strategy="HYBRID_SHARD"
        )
    elif config.world_size > 1:
        from lightning.fabric.strategies import DDPStrategy

        strategy = DDPStrategy(process_group_backend=None if gpu else "gloo")
    fabric = L.Fabric(
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=strategy,
        precision=precision,
        plugins=plugins,
    )
    if config.world_size > 1:
        fabric.launch()
    return fabric


def run_training(
    plan: RunPlan,
    *,
    merge: bool,
    progress: ProgressFn | None,
    should_stop: StopFn | None,
) -> RunRecord:
    """Set up, fit and save a planned run (see `twin.train.train`)."""
    run_dir, record = plan.run_dir, plan.record
    if plan.resume_from is None and not (run_dir / "run.json").is_file():
        # Private (0700), like the data dir: the checkpoints hold what was learned from chats.
        run_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        run_dir.mkdir(exist_ok=True, mode=0o700)
    remove_partial_checkpoints(run_dir)
    record.metrics["status"] = "running"
    try:
        if launch_rank() == 0:
            save_run(run_dir, record)
        return _fit(plan, merge=merge, progress=progress, should_stop=should_stop)
    except BaseException as exc:
        record.metrics["status"] = "failed"
        record.metrics["error"] = f"{type(exc).__name__}: {exc}"
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


def _fit(
    plan: RunPlan, *, merge: bool, progress: ProgressFn | None, should_stop: StopFn | None
) -> RunRecord:
    setup_start = time.perf_counter()
    config, record, run_dir = plan.config, plan.record, plan.run_dir
    fabric = make_fabric(config)
    fabric.seed_everything(config.seed, verbose=False)

    lora_config = Config.from_file(
        record.base_model_dir / "model_config.yaml", **config.lora.litgpt_kwargs()
    )
    # Only FSDP may skip initialization (it materializes parameters with reset_parameters);
    # with DDP, uninitialized memory would be the LoRA weights' starting point.
    sharded = type(fabric.strategy).__name__ == "FSDPStrategy"
    with fabric.init_module(empty_init=sharded):
        model = GPT(lora_config)
    mark_only_lora_as_trainable(model)
    model.max_seq_length = max(len(s["input_ids"]) for s in plan.train_samples + plan.val_samples)
    model = fabric.setup_module(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if config.quantize:
        import bitsandbytes as bnb

        optimizer: torch.optim.Optimizer = bnb.optim.PagedAdamW(
            trainable, lr=config.learning_rate, weight_decay=config.weight_decay
        )
    else:
        optimizer = torch.optim.AdamW(
            trainable, lr=config.learning_rate, weight_decay=config.weight_decay
        )
    optimizer = fabric.setup_optimizers(optimizer)
    load_checkpoint(fabric, model, record.base_model_dir / "lit_model.pth", strict=False)

    lengths = [len(s["input_ids"]) for s in plan.train_samples]
    per_step = config.accumulation_steps * config.world_size
    steps_per_epoch = count_steps_per_epoch(len(lengths), config)
    max_steps = min(
        config.max_steps or config.epochs * steps_per_epoch, config.epochs * steps_per_epoch
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        partial(
            lr_factor,
            warmup_steps=config.warmup_steps,
            max_steps=max_steps,
            min_lr_ratio=config.min_lr_ratio,
        ),
    )
    state: dict[str, Any] = {
        "model": model,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "step": 0,
        "epoch": 0,
        "batch_index": 0,
        "rng": None,
        "totals": {
            "tokens": 0,
            "useful_tokens": 0,
            "train_seconds": 0.0,
            "val_loss_start": None,
            "val_loss": None,
            "train_loss": None,
        },
    }
    if plan.resume_from is not None:
        load_training_checkpoint(fabric, checkpoint_dir=plan.resume_from, state=state)
        restore_rng_states(state["rng"])
        _truncate_metrics(run_dir, state["step"])
    else:
        _truncate_metrics(run_dir, 0)  # a resumed run killed before its first checkpoint
        if plan.val_samples:
            state["totals"]["val_loss_start"] = validate(fabric, model, plan.val_samples, config)
    totals = state["totals"]
    timings = {
        "setup_seconds": time.perf_counter() - setup_start,
        "eval_seconds": 0.0,
        "checkpoint_seconds": 0.0,
    }
    session_steps, session_seconds = 0, 0.0
    saved_step = state["step"]

    def save_checkpoint() -> None:
        nonlocal saved_step
        start = time.perf_counter()
        state["rng"] = rng_states()
        save_training_checkpoint(fabric, run_dir=run_dir, step=state["step"], state=state)
        saved_step = state["step"]
        timings["checkpoint_seconds"] += time.perf_counter() - start

    def report(status: str) -> RunProgress:
        useful, total = totals["useful_tokens"], totals["tokens"]
        seconds = totals["train_seconds"] or 1e-9
        rate = session_seconds / session_steps if session_steps else None
        snapshot = RunProgress(
            run_id=record.run_id,
            status=status,  # type: ignore[arg-type]
            step=state["step"],
            max_steps=max_steps,
            epoch=state["epoch"],
            learning_rate=optimizer.param_groups[0]["lr"],
            train_loss=totals["train_loss"],
            val_loss=totals["val_loss"],
            tokens_per_second=total / seconds,
            useful_tokens_per_second=useful / seconds,
            padding_fraction=1 - useful / total if total else 0.0,
            elapsed_seconds=totals["train_seconds"],
            eta_seconds=rate * (max_steps - state["step"]) if rate else None,
        )
        if progress is not None and fabric.global_rank == 0:
            progress(snapshot)
        return snapshot

    model.train()
    stopped = False
    batches_epoch, batches = -1, []
    while state["step"] < max_steps and not stopped:
        if batches_epoch != state["epoch"]:  # the order is a function of (seed, epoch)
            batches_epoch, batches = (
                state["epoch"],
                epoch_batches(
                    lengths,
                    micro_batch_size=config.micro_batch_size,
                    seed=config.seed,
                    epoch=state["epoch"],
                    group_by_length=config.group_by_length,
                ),
            )
        step_start = time.perf_counter()
        losses = []
        counts = torch.zeros(2, dtype=torch.int64)  # (tokens, non-padding tokens) this step
        for micro in range(config.accumulation_steps):
            indices = batches[state["batch_index"] + micro * config.world_size + fabric.global_rank]
            input_ids, labels = collate([plan.train_samples[i] for i in indices])
            input_ids, labels = fabric.to_device(input_ids), fabric.to_device(labels)
            accumulating = micro < config.accumulation_steps - 1
            with fabric.no_backward_sync(model, enabled=accumulating):
                loss = reply_loss(model, input_ids, labels)
                fabric.backward(loss / config.accumulation_steps)
            losses.append(loss.item())
            counts[0] += input_ids.numel()
            counts[1] += sum(lengths[i] for i in indices)
        if config.world_size > 1:  # each process saw its own micro-batches: add them up
            counts = fabric.all_reduce(counts, reduce_op="sum")
        totals["tokens"] += int(counts[0])
        totals["useful_tokens"] += int(counts[1])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        state["step"] += 1
        state["batch_index"] += per_step
        if state["batch_index"] >= steps_per_epoch * per_step:
            state["epoch"], state["batch_index"] = state["epoch"] + 1, 0
        elapsed = time.perf_counter() - step_start
        totals["train_seconds"] += elapsed
        session_steps, session_seconds = session_steps + 1, session_seconds + elapsed
        totals["train_loss"] = sum(losses) / len(losses)
        entry: dict[str, Any] = {
            "step": state["step"],
            "epoch": state["epoch"],
            "train_loss": totals["train_loss"],
            "lr": optimizer.param_groups[0]["lr"],
        }

        if plan.val_samples and (
            state["step"] % config.eval_interval == 0 or state["step"] == max_steps
        ):
            start = time.perf_counter()
            totals["val_loss"] = entry["val_loss"] = validate(
                fabric, model, plan.val_samples, config
            )
            timings["eval_seconds"] += time.perf_counter() - start
        snapshot = report("running")
        entry.update(
            tokens_per_second=snapshot.tokens_per_second, padding_fraction=snapshot.padding_fraction
        )
        if fabric.global_rank == 0:
            with (run_dir / METRICS_FILE).open("a", encoding="utf-8") as fp:
                fp.write(json.dumps(entry) + "\n")
            make_private(run_dir / METRICS_FILE)
        if state["step"] % config.checkpoint_interval == 0:
            save_checkpoint()
        if state["step"] < max_steps and should_stop is not None and should_stop():
            stopped = True

    if stopped:
        if saved_step != state["step"]:
            save_checkpoint()
        status = "stopped"
    else:
        _save_final(fabric, model, run_dir=run_dir, record=record, merge=merge)
        status = "done"
    final = report(status)
    record.metrics.update(
        status=status,
        steps=state["step"],
        max_steps=max_steps,
        epochs=state["step"] / steps_per_epoch,
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
        trainable_parameters=sum(p.numel() for p in trainable),
    )
    record.metrics.pop("error", None)
    timings["train_seconds"] = totals["train_seconds"]
    record.timings = {k: round(v, 3) for k, v in timings.items()}
    if fabric.global_rank == 0:
        save_run(run_dir, record)
    return record


@torch.no_grad()
def validate(
    fabric: L.Fabric, model: torch.nn.Module, samples: list[Sample], config: TrainingConfig
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


def _truncate_metrics(run_dir: Path, step: int) -> None:
    """Forget lines logged after the checkpoint we resume from (they will be logged again)."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return
    kept = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and json.loads(line).get("step", 0) <= step
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    make_private(tmp)
    tmp.replace(path)


def _save_final(
    fabric: L.Fabric, model: torch.nn.Module, *, run_dir: Path, record: RunRecord, merge: bool
) -> None:
    """Write ``final/`` whole or not at all: the adapter (a plain state_dict of the LoRA
    parameters), the base model's config and tokenizer and litgpt's ``hyperparameters.yaml``,
    so that litgpt's own tools (``litgpt merge_lora``) accept the dir too."""
    final = adapter_path(run_dir).parent
    tmp = final.with_name(".final.tmp")
    if fabric.global_rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True, mode=0o700)
    fabric.barrier()
    # Fabric gathers the LoRA parameters from every shard; the result is {"model": {...}}.
    fabric.save(tmp / "gathered.pth", {"model": model}, filter={"model": lora_filter})
    fabric.barrier()
    if fabric.global_rank == 0:
        gathered = torch.load(tmp / "gathered.pth", weights_only=True)
        torch.save(gathered["model"], tmp / ADAPTER_FILE)
        (tmp / "gathered.pth").unlink()
        base = record.base_model_dir
        for name in (*FINAL_COPIES, "generation_config.json"):
            if (base / name).is_file():
                shutil.copy2(base / name, tmp / name)
        hyperparameters = {
            "checkpoint_dir": str(base),
            "precision": record.config.get("precision") or default_precision(),
            **record.lora.litgpt_kwargs(),
        }
        (tmp / "hyperparameters.yaml").write_text(yaml.safe_dump(hyperparameters))
        if merge:
            merge_adapter(
                base_model_dir=base,
                adapter_file=tmp / ADAPTER_FILE,
                lora=record.lora,
                out_file=tmp / "lit_model.pth",
            )
        make_private(tmp)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    fabric.barrier()
