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

import json
import time
from pathlib import Path
from typing import Any

from twin.config import Settings
from twin.jobs import JobCancelled, active_job
from twin.pipeline.stages import (
    DEMO_PRETRAIN_STEPS,
    GUESS_SECONDS,
    SAMPLE_EXPORT,
    STAGES,
    UNREACHABLE,
    ClientFactoryMaker,
    Report,
    ShouldCancel,
    StageView,
    build_dataset,
    build_demo_model,
    builds_real_model,
    dataset_staleness,
    demo_model_dir,
    ensure_base_model,
    follow_training,
    harvest_details,
    run_harvest,
    start_training,
    store_fingerprint,
    telegram_connected,
    telegram_unreachable,
    training_to_do,
    usable_base_model,
)
from twin.runs import TRAIN_JOB_KIND
from twin.telegram.harvest import HarvestProgress

__all__ = [
    "DEMO_PRETRAIN_STEPS",
    "SAMPLE_EXPORT",
    "UNREACHABLE",
    "build_dataset",
    "build_demo_model",
    "builds_real_model",
    "dataset_staleness",
    "demo_model_dir",
    "ensure_base_model",
    "harvest_details",
    "run_harvest",
    "run_pipeline",
    "start_training",
    "store_fingerprint",
    "telegram_connected",
    "telegram_unreachable",
    "usable_base_model",
]

# -- the pipeline ----------------------------------------------------------------------------


class _Run:
    """One pipeline run: the stage list, the clock, and the report to the job row."""

    def __init__(self, report: Report, durations: dict[str, float]) -> None:
        self.report = report
        self.stages = [StageView(name=name, label=label) for name, label in STAGES.items()]
        self.durations = durations
        self.current: StageView | None = None
        self.started = 0.0
        self.details: dict[str, Any] = {}
        """The latest figures a stage reported (``train``: the run's id and losses): kept in
        every later report, so a stopped or failed pipeline still names its run and draws
        its loss curve."""

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
        self.details.update(extra)
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
            unit=stage.unit if stage else "",
            stages=[s.model_dump() for s in self.stages],
            eta_seconds=self.overall_eta(),
            durations=self.durations,
            **{**self.details, **extra},
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
        max_steps: cap on training's optimizer steps; None: the default length.
        durations: seconds each stage took last time, for the overall ETA.
    """
    run = _Run(report, dict(durations or {}))
    result: dict[str, Any] = {}
    try:
        _sync(run, settings, client_factory, should_cancel, result)
        base = usable_base_model(settings)
        if base is None and builds_real_model(settings):
            # Gemma needs nothing from the dataset: build it first and measure once.
            base = _base_model(run, settings, should_cancel, "building Gemma 3 270M")
            _dataset(run, settings, base, should_cancel)
        elif base is None:
            # The demo model's tokenizer is trained on the dataset's text, so the dataset
            # comes first, then is measured again in the new model's tokens.
            _dataset(run, settings, base, should_cancel)
            base = _base_model(run, settings, should_cancel, "building the offline demo model")
            _dataset(run, settings, base, should_cancel, again=True)
        else:
            _dataset(run, settings, base, should_cancel)
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


def _base_model(run: _Run, settings: Settings, should_cancel: ShouldCancel, note: str) -> Path:
    run.begin("base_model", note)
    base = ensure_base_model(settings, lambda d, t: run.progress(d, t), should_cancel)
    run.end(f"built {base.name}")
    return base


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
    running = active_job(settings=settings, kind=TRAIN_JOB_KIND)
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
                         train=p, waiting=None)  # fmt: skip
        elif p.get("waiting"):  # for the compute slot (`twin.compute`)
            run.progress(0, 0, unit="steps", waiting=p["waiting"])

    outcome = follow_training(
        settings=settings, job_id=job_id, progress=on_progress, should_cancel=should_cancel
    )
    result["run_id"] = outcome.get("run_id")
    run.end(f"run {outcome.get('run_id')} done")
