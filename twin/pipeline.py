"""Train my twin: one job that runs every stage whose output is not current.

    sync (when Telegram is connected) → dataset → base model → train

Each stage calls the same entry function the CLI uses (`twin.telegram.harvest.harvest`,
`twin.prepare.prepare_dataset`, the base-model builder, `twin.train.worker`) and reports its own
progress; the pipeline adds the stage list and an overall ETA. A stage whose output is current
is skipped and says why. Every stage keeps what it finished (harvest commits page by page, the
dataset is swapped in whole, training checkpoints), so a cancelled or interrupted pipeline
resumes by running again: finished stages are then current and skipped.
"""

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

from twin.config import Settings
from twin.db import get_engine
from twin.errors import TelegramError, TrainError
from twin.jobs import (
    JobBusy,
    JobCancelled,
    get_job,
    request_cancel,
)
from twin.models import Dialog, JobState, Message
from twin.store import get_owner
from twin.telegram.harvest import HarvestProgress, HarvestSummary

Report = Callable[..., None]
"""``report(done, total, **details)``, as `twin.web.background` passes it."""
ShouldCancel = Callable[[], bool]
ClientFactoryMaker = Callable[[Settings], Any]
"""Builds a Telethon client factory for the credentials' settings (None: the real Telegram)."""

SAMPLE_EXPORT = Path(__file__).resolve().parents[1] / "samples" / "sample_export" / "result.json"
DEMO_PRETRAIN_STEPS = 300
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


def demo_model_dir(settings: Settings) -> Path:
    """Where the offline demo model goes (as ``twin model init-tiny`` puts it)."""
    return settings.data_dir / "checkpoints" / "twin-tiny"


def usable_base_model(settings: Settings) -> Path | None:
    """The configured base model when complete, else a built demo model, else None.

    Args:
        settings: for the base model and data dirs.
    """
    from twin.train.base_model import missing_files

    for candidate in (settings.base_model_path, demo_model_dir(settings)):
        if not missing_files(candidate):
            return candidate
    return None


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
    from twin.prepare.dataset import tokenizer_fingerprint
    from twin.train.data import dataset_sha256

    directory = settings.dataset_dir
    stats_path, source_path = directory / "stats.json", directory.with_name(SOURCE_FILE)
    if not stats_path.is_file():
        return "no dataset yet"
    source = json.loads(source_path.read_text()) if source_path.is_file() else {}
    if source.get("dataset_sha256") != dataset_sha256(directory):
        return "it was built outside the web app"
    if source.get("store") != store_fingerprint(settings):
        return "the messages or the chosen chats changed since it was built"
    if base_model is not None:
        tokenizer = json.loads(stats_path.read_text()).get("tokenizer") or {}
        if tokenizer.get("sha256") != tokenizer_fingerprint(base_model):
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
    from twin.telegram.client import connect_owner, default_factory, with_telegram_credentials
    from twin.telegram.harvest import harvest

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
    from twin.prepare.dataset import prepare_dataset

    store = store_fingerprint(settings)
    stats = prepare_dataset(
        settings=settings,
        out_dir=settings.dataset_dir,
        tokenizer_dir=tokenizer_dir,
        progress=report,
    )
    from twin.train.data import dataset_sha256

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
        if (directory / "train.json").is_file()
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
    which base model twin builds (today the offline demo model, `build_demo_model`).

    Args:
        settings: whose data dir.
        progress: called with (steps done, steps total) while building.
        should_cancel: polled while building.
    """
    present = usable_base_model(settings)
    if present is not None:
        return present
    return build_demo_model(settings, progress=progress, should_cancel=should_cancel)


def training_to_do(settings: Settings, base_model: Path) -> tuple[str, str | None]:
    """What the train stage does: ``("skip", run_id)`` when the newest run finished on this
    dataset and base model, ``("resume", run_id)`` when it stopped on them, else
    ``("new", None)``.

    Args:
        settings: whose runs and dataset.
        base_model: the base model to train.
    """
    from twin.train.data import dataset_sha256
    from twin.train.record import load_run
    from twin.train.runs import list_runs

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
    from twin.jobs import reap_dead_jobs

    asked = False
    while True:
        reap_dead_jobs(settings=settings, kind="train")
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
        max_steps: cap on optimizer steps; None: the default of three epochs.
    """
    from twin.train.trainer import TrainingConfig
    from twin.train.worker import start_training_job

    try:
        return start_training_job(
            settings=settings,
            base_model_dir=None if resume else base_model,
            dataset_dir=settings.dataset_dir,
            resume=resume,
            config=None if resume or max_steps is None else TrainingConfig(max_steps=max_steps),
        )
    except JobBusy as exc:
        return exc.job_id


# -- the pipeline ----------------------------------------------------------------------------


class _Run:
    """One pipeline run: the stage list, the clock, and the report to the job row."""

    def __init__(self, report: Report, durations: dict[str, float]) -> None:
        self.report = report
        self.stages = [StageView(name=name, label=label) for name, label in STAGES.items()]
        self.durations = durations
        self.current: StageView | None = None
        self.started = 0.0

    def stage(self, name: str) -> StageView:
        return next(s for s in self.stages if s.name == name)

    def begin(self, name: str, note: str = "") -> None:
        self.current = self.stage(name)
        self.current.state, self.current.note = "running", note
        self.started = time.monotonic()
        self.send()

    def skip(self, name: str, note: str) -> None:
        stage = self.stage(name)
        stage.state, stage.note = "skipped", note
        self.send()

    def end(self, note: str | None = None) -> None:
        assert self.current is not None
        self.current.state, self.current.eta_seconds = "done", None
        if note is not None:
            self.current.note = note
        self.durations[self.current.name] = time.monotonic() - self.started
        self.current = None
        self.send()

    def fail(self, state: str) -> None:
        if self.current is not None:
            self.current.state, self.current.eta_seconds = state, None
            self.send()

    def progress(
        self, done: int, total: int, *, unit: str = "", eta: float | None = None, **extra: Any
    ) -> None:
        """The running stage's progress; its ETA from ``eta`` or from its pace so far."""
        assert self.current is not None
        stage = self.current
        stage.done, stage.total, stage.unit = done, total, unit
        elapsed = time.monotonic() - self.started
        if eta is None and total and 0 < done < total and elapsed > 1:
            eta = elapsed / done * (total - done)
        stage.eta_seconds = None if eta is None else round(eta, 1)
        self.send(**extra)

    def overall_eta(self) -> float | None:
        """The running stage's ETA plus what the waiting stages took last time (or a guess)."""
        if self.current is None:
            return None
        eta = self.current.eta_seconds
        if eta is None:
            return None
        waiting = [s.name for s in self.stages if s.state == "waiting"]
        return round(eta + sum(self.durations.get(n, GUESS_SECONDS[n]) for n in waiting), 1)

    def send(self, **extra: Any) -> None:
        stage = self.current
        self.report(
            stage.done or 0 if stage else 0,
            stage.total or 0 if stage else 0,
            stage=stage.name if stage else None,
            stages=[s.model_dump() for s in self.stages],
            eta_seconds=self.overall_eta(),
            durations=self.durations,
            **extra,
        )


def run_pipeline(
    *,
    settings: Settings,
    report: Report,
    should_cancel: ShouldCancel,
    client_factory: ClientFactoryMaker | None = None,
    max_steps: int | None = None,
    durations: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Run every stage that is not current, in order; return what each did.

    Raises `JobCancelled` on a cancel (after the running stage kept what it finished) and the
    stage's error on a failure; either way running the pipeline again resumes.

    Args:
        settings: whose data.
        report: receives the stage list and progress (``report(done, total, **details)``).
        should_cancel: polled by every stage.
        client_factory: makes Telethon client factories (None: the real Telegram).
        max_steps: cap on training's optimizer steps; None: the default of three epochs.
        durations: seconds each stage took last time, for the overall ETA.
    """
    run = _Run(report, dict(durations or {}))
    result: dict[str, Any] = {}
    try:
        _sync(run, settings, client_factory, should_cancel, result)
        base = usable_base_model(settings)
        _dataset(run, settings, base, should_cancel)
        if base is None:
            run.begin("base_model", "building the offline demo model")
            base = ensure_base_model(
                settings, lambda d, t: run.progress(d, t, unit="steps"), should_cancel
            )
            run.end(f"built {base.name}")
            # The dataset was measured before the model existed: measure it in its tokens.
            _dataset(run, settings, base, should_cancel, again=True)
        else:
            run.skip("base_model", f"present: {base.name}")
        result["base_model"] = base.name
        _train(run, settings, base, should_cancel, max_steps, result)
    except JobCancelled:
        run.fail("cancelled")
        raise
    except BaseException:
        run.fail("failed")
        raise
    result["durations"] = run.durations
    return result


def _sync(
    run: _Run,
    settings: Settings,
    client_factory: ClientFactoryMaker | None,
    should_cancel: ShouldCancel,
    result: dict[str, Any],
) -> None:
    if not telegram_connected(settings):
        run.skip("sync", "Telegram is not connected: using the chats imported so far")
        return
    run.begin("sync")

    def on_progress(p: HarvestProgress) -> None:
        run.progress(p.dialogs_done, p.dialogs_total, unit="chats", **harvest_details(p))

    summary = run_harvest(
        settings=settings,
        client_factory=client_factory,
        progress=on_progress,
        should_cancel=should_cancel,
    )
    result["harvest"] = summary.model_dump(mode="json")
    run.end(f"{summary.messages_new:,} new messages from {summary.dialogs_total} chats")


def _dataset(
    run: _Run,
    settings: Settings,
    base: Path | None,
    should_cancel: ShouldCancel,
    *,
    again: bool = False,
) -> None:
    reason = dataset_staleness(settings, base)
    if reason is None:
        if not again:
            run.skip("dataset", "current: built from these messages for this model")
        return
    if should_cancel():
        raise JobCancelled("Stopped before building the dataset.")
    run.begin("dataset", f"rebuilding: {reason}" if again else reason)
    stats = build_dataset(
        settings=settings,
        tokenizer_dir=base,
        report=lambda d, t: run.progress(d, t, unit="chats"),
    )
    run.end(
        f"{stats.samples_train:,} train + {stats.samples_val:,} validation samples"
        + (f" ({stats.length_unit})" if base is None else "")
    )


def _train(
    run: _Run,
    settings: Settings,
    base: Path,
    should_cancel: ShouldCancel,
    max_steps: int | None,
    result: dict[str, Any],
) -> None:
    from twin.jobs import active_job

    running = active_job(settings=settings, kind="train")
    action, run_id = training_to_do(settings, base)
    if running is not None:
        # Training runs in its own process: it outlives a server restart; follow it.
        action, run_id = "follow", json.loads(running.params_json or "{}").get("run_id")
    if action == "skip":
        run.skip("train", f"current: run {run_id} finished on this dataset and model")
        result["run_id"] = run_id
        return
    if should_cancel():
        raise JobCancelled("Stopped before training.")
    notes = {"resume": f"resuming run {run_id}", "follow": f"run {run_id}, already under way"}
    run.begin("train", notes.get(action, "a new run"))
    job_id = (
        running.id or 0
        if running is not None
        else start_training(settings, base, resume=action == "resume", max_steps=max_steps)
    )
    result["train_job"] = job_id

    def on_progress(p: dict[str, Any]) -> None:
        if p.get("max_steps"):
            run.progress(p.get("step", 0), p["max_steps"], unit="steps", eta=p.get("eta_seconds"),
                         train=p)  # fmt: skip

    outcome = follow_training(
        settings=settings, job_id=job_id, progress=on_progress, should_cancel=should_cancel
    )
    result["run_id"] = outcome.get("run_id")
    run.end(f"run {outcome.get('run_id')} done")
