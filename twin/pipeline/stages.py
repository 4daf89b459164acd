"""The stages of "Train my twin" and what makes each one current (see `twin.pipeline`)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import Session, col, select

from twin.basemodel import choose_base_model, missing_files
from twin.basemodel.checkpoint import DEMO_PRETRAIN_STEPS, demo_model_dir
from twin.basemodel.gemma import BuildCancelled, BuildProgress, gemma_installed, get_gemma
from twin.config import Settings
from twin.db import get_engine
from twin.errors import TelegramError, TrainError
from twin.jobs import (
    JobBusy,
    JobCancelled,
    get_job,
    reap_dead_jobs,
    request_cancel,
)
from twin.models import Dialog, JobState, Message
from twin.prepare.dataset import prepare_dataset
from twin.prepare.files import dataset_mismatch, dataset_sha256, has_dataset, read_stats
from twin.runs import TRAIN_JOB_KIND, TrainingConfig, list_runs, load_run
from twin.store import get_owner
from twin.telegram.client import connect_owner, default_factory, with_telegram_credentials
from twin.telegram.harvest import HarvestProgress, HarvestSummary, harvest

Report = Callable[..., None]
"""``report(done, total, **details)``, as `twin.web.background` passes it."""
ShouldCancel = Callable[[], bool]
ClientFactoryMaker = Callable[[Settings], Any]
"""Builds a Telethon client factory for the credentials' settings (None: the real Telegram)."""

SAMPLE_EXPORT = Path(__file__).resolve().parents[2] / "samples" / "sample_export" / "result.json"
SOURCE_FILE = "dataset-source.json"
"""Written next to the dataset dir: which messages and chats it was built from, and its hash."""
POLL_SECONDS = 0.5

STAGES = {
    "sync": "Sync new messages",
    "dataset": "Build the dataset",
    "base_model": "Make the base model ready",
    "train": "Train",
}
GUESS_SECONDS = {"sync": 20.0, "dataset": 10.0, "base_model": 60.0, "train": 120.0}
"""A stage's duration before anything about it is known (for the overall ETA)."""


class StageView(BaseModel):
    """One stage as the job page shows it."""

    name: str
    label: str
    state: str = "waiting"
    """waiting, running, done, skipped, failed or cancelled."""
    note: str = ""
    done: int | None = None
    total: int | None = None
    unit: str = ""
    eta_seconds: float | None = None


UNREACHABLE_HINT = (
    "Check this machine's internet connection (a captive portal or a proxy can get in the way) "
    "and retry — nothing fetched so far is lost. Or import a Telegram Desktop export instead."
)


def telegram_unreachable(exc: BaseException) -> TelegramError:
    """The error for a Telegram that cannot be reached: a timeout, a DNS failure, a refused
    connection, or an answer that is not Telegram's (Telethon then raises
    `asyncio.IncompleteReadError`).

    Args:
        exc: what the network layer raised.
    """
    return TelegramError(
        f"Telegram cannot be reached from this machine ({type(exc).__name__}).",
        hint=UNREACHABLE_HINT,
    )


UNREACHABLE = (OSError, EOFError)
"""What the network layer raises when Telegram is out of reach (TimeoutError, socket.gaierror
and ConnectionError are OSErrors; IncompleteReadError is an EOFError)."""


# -- what is current -------------------------------------------------------------------------


def usable_base_model(settings: Settings) -> Path | None:
    """The base model twin would use now (`twin.basemodel.choose_base_model`: the configured
    one, Falcon-7B, Gemma 3 270M, the demo model) when it is complete, else None.

    Args:
        settings: for the base model and data dirs.
    """
    choice = choose_base_model(settings)
    if choice is None or missing_files(choice.path):
        return None
    return choice.path


def builds_real_model(settings: Settings) -> bool:
    """True when "Train my twin" would build Gemma 3 270M (its package is installed and the
    settings ask for it) rather than the demo model, when no base model is present.

    Args:
        settings: ``auto_base_model``.
    """
    return settings.auto_base_model == "gemma-3-270m" and gemma_installed()


def telegram_connected(settings: Settings) -> bool:
    """True when a Telegram session is stored (the owner logged in).

    Args:
        settings: whose database.
    """
    with Session(get_engine(settings)) as db:
        return get_owner(db).session_encrypted is not None


def store_fingerprint(settings: Settings) -> str:
    """A digest of what a dataset is built from: how many messages, the newest id and edit,
    and which chats are included. Any harvest, import, edit or choice of chats changes it.

    Args:
        settings: whose database.
    """
    with Session(get_engine(settings)) as db:
        count, newest, edited = db.exec(
            select(func.count(), func.max(Message.id), func.max(Message.edited_unix))
        ).one()
        included = db.exec(select(Dialog.id).where(Dialog.included).order_by(col(Dialog.id))).all()
    payload = json.dumps([count, newest, edited, list(included)])
    return hashlib.sha256(payload.encode()).hexdigest()


def dataset_staleness(settings: Settings, base_model: Path | None) -> str | None:
    """Why the dataset must be (re)built, or None when it is current: built from the messages
    as they are now, and measured in ``base_model``'s tokens (when there is one).

    Args:
        settings: whose dataset and database.
        base_model: the model it will train; None before one exists.
    """
    directory = settings.dataset_dir
    stats, source_path = read_stats(directory), directory.with_name(SOURCE_FILE)
    if stats is None:
        return "no dataset yet"
    source = json.loads(source_path.read_text()) if source_path.is_file() else {}
    if source.get("dataset_sha256") != dataset_sha256(directory):
        return "it was built outside the web app"
    if source.get("store") != store_fingerprint(settings):
        return "the messages or the chosen chats changed since it was built"
    if base_model is not None and dataset_mismatch(stats, base_model) is not None:
        return "it was measured for another tokenizer (or in characters)"
    return None


# -- the stages ------------------------------------------------------------------------------


def run_harvest(
    *,
    settings: Settings,
    client_factory: ClientFactoryMaker | None,
    progress: Callable[[HarvestProgress], None],
    should_cancel: ShouldCancel,
) -> HarvestSummary:
    """Run the harvest in this thread's own event loop, stopping at the next page on cancel.

    A cancel (raised from the progress callback, right after a page was committed) and any
    failure leave every stored page in place: the next run resumes after it.

    Args:
        settings: whose database and stored Telegram session.
        client_factory: makes Telethon client factories (None: the real Telegram).
        progress: called after each page and each dialog.
        should_cancel: polled after each page.
    """
    credentials = with_telegram_credentials(settings)
    if credentials is None:
        raise TelegramError(
            "Telegram's API id and hash are not set.", hint="Enter them on the Telegram page."
        )
    factory = (client_factory or default_factory)(credentials)

    def check(snapshot: HarvestProgress) -> None:
        progress(snapshot)
        if should_cancel():
            raise JobCancelled("The fetch was stopped; what was fetched is kept.")

    async def go() -> HarvestSummary:
        client = await connect_owner(settings, client_factory=factory)
        try:
            return await harvest(settings=settings, client=client, progress=check)
        finally:
            await client.disconnect()

    try:
        return asyncio.run(go())
    except UNREACHABLE as exc:
        raise telegram_unreachable(exc) from exc
    except TelegramError as exc:
        if isinstance(exc.__cause__, UNREACHABLE):
            raise telegram_unreachable(exc.__cause__) from exc
        raise


def harvest_details(snapshot: HarvestProgress) -> dict[str, Any]:
    """A harvest's progress as the job page shows it."""
    return {"messages_new": snapshot.messages_new, "current_dialog": snapshot.current_dialog}


def build_dataset(*, settings: Settings, tokenizer_dir: Path | None, report: Report) -> Any:
    """Build the dataset from the included chats (as the Dataset page and ``twin prepare`` do)
    and record what it was built from.

    Args:
        settings: whose database and dataset dir.
        tokenizer_dir: the base model whose tokens measure lengths (None: characters).
        report: called with (chats done, chats total).
    """
    store = store_fingerprint(settings)
    stats = prepare_dataset(
        settings=settings,
        out_dir=settings.dataset_dir,
        tokenizer_dir=tokenizer_dir,
        progress=report,
    )
    source = {"store": store, "dataset_sha256": dataset_sha256(settings.dataset_dir)}
    settings.dataset_dir.with_name(SOURCE_FILE).write_text(json.dumps(source))
    return stats


def build_demo_model(
    settings: Settings,
    *,
    progress: Callable[[int, int], None],
    should_cancel: ShouldCancel,
    pretrain_steps: int | None = None,
) -> Path:
    """Build the tiny offline demo model from the scrubbed dataset (or the sample export),
    as ``twin model init-tiny`` does; a cancel leaves nothing half-built.

    Args:
        settings: whose dataset and data dir.
        progress: called with (steps done, steps total).
        should_cancel: polled every step.
        pretrain_steps: more steps, less noisy replies, longer build (default
            `DEMO_PRETRAIN_STEPS`).
    """
    from twin.train.tiny import corpus_from_dataset, corpus_from_export, init_tiny_model

    def step(done: int, total: int, _loss: float | None = None) -> None:
        progress(done, total)
        if should_cancel():
            raise JobCancelled("The base model build was stopped; nothing half-built was kept.")

    directory = settings.dataset_dir
    corpus = (
        corpus_from_dataset(directory)
        if has_dataset(directory)
        else corpus_from_export(SAMPLE_EXPORT)
    )
    return init_tiny_model(
        out_dir=demo_model_dir(settings),
        corpus=corpus,
        pretrain_steps=DEMO_PRETRAIN_STEPS if pretrain_steps is None else pretrain_steps,
        progress=step,
    )


def ensure_base_model(
    settings: Settings, progress: Callable[[int, int], None], should_cancel: ShouldCancel
) -> Path:
    """The base model to train on, made ready when there is none: THE one place that decides
    which base model twin builds — Gemma 3 270M from its package (`twin.basemodel.get_gemma`)
    when `builds_real_model`, else the offline demo model (`build_demo_model`).

    Args:
        settings: whose data dir.
        progress: called with (steps done, steps total) while building.
        should_cancel: polled while building.
    """
    present = usable_base_model(settings)
    if present is not None:
        return present
    if not builds_real_model(settings):
        return build_demo_model(settings, progress=progress, should_cancel=should_cancel)

    def on_build(p: BuildProgress) -> None:
        progress(round(p.fraction * 1000), 1000)

    try:
        return get_gemma(settings=settings, progress=on_build, should_cancel=should_cancel)
    except BuildCancelled as exc:
        message = "The base model build was stopped; nothing half-built was kept."
        raise JobCancelled(message) from exc


def training_to_do(settings: Settings, base_model: Path) -> tuple[str, str | None]:
    """What the train stage does: ``("skip", run_id)`` when the newest run finished on this
    dataset and base model, ``("resume", run_id)`` when it stopped on them, else
    ``("new", None)``.

    Args:
        settings: whose runs and dataset.
        base_model: the base model to train.
    """

    runs = list_runs(settings)
    if not runs:
        return "new", None
    newest = runs[0]
    record = load_run(newest.run_dir)
    same = (
        record.dataset_sha256 == dataset_sha256(settings.dataset_dir)
        and Path(record.base_model_dir).resolve() == base_model.resolve()
    )
    if same and newest.status == "done":
        return "skip", newest.run_id
    if same and newest.resumable:
        return "resume", newest.run_id
    return "new", None


def follow_training(
    *,
    settings: Settings,
    job_id: int,
    progress: Callable[[dict[str, Any]], None],
    should_cancel: ShouldCancel,
) -> dict[str, Any]:
    """Wait for the training job (in its own process) to end, passing its progress on and a
    cancel through; return its result.

    Args:
        settings: whose database.
        job_id: the ``train`` job.
        progress: called with the job's progress (step, loss, ETA) as it changes.
        should_cancel: polled; a cancel asks the worker to stop with a checkpoint.
    """
    asked = False
    while True:
        reap_dead_jobs(settings=settings, kind=TRAIN_JOB_KIND)
        job = get_job(settings=settings, job_id=job_id)
        progress(json.loads(job.progress_json or "{}"))
        result = json.loads(job.result_json) if job.result_json else {}
        if job.state == JobState.done:
            return result
        if job.state == JobState.cancelled:
            raise JobCancelled("Training was stopped at a checkpoint.")
        if job.state == JobState.failed:
            raise TrainError(job.error or "Training failed.", hint="Resume to continue it.")
        if should_cancel() and not asked:
            request_cancel(settings=settings, job_id=job_id)
            asked = True
        time.sleep(POLL_SECONDS)


def start_training(
    settings: Settings, base_model: Path, *, resume: bool, max_steps: int | None
) -> int:
    """Start (or resume) a training run in its own process; the active one if one runs.

    Args:
        settings: whose data dir.
        base_model: the base model (ignored when resuming: the run knows it).
        resume: continue the newest run from its last checkpoint.
        max_steps: cap on optimizer steps; None: the default length.
    """
    # Imported here: training loads torch and litgpt, which the pages never need otherwise.
    from twin.train.trainer import TrainingRequest, train

    config = TrainingConfig() if max_steps is None else TrainingConfig(max_steps=max_steps)
    request = TrainingRequest(
        base_model_dir=None if resume else base_model,
        dataset_dir=settings.dataset_dir,
        resume=resume,
        config=config,
    )
    try:
        return train(request, settings=settings, detach=True).job_id or 0
    except JobBusy as exc:
        return exc.job_id
