"""Training as a job: the glue between `twin.train.train` and `twin.jobs`.

``twin train`` runs `run_training_job` in its own process (the foreground CLI) or spawns
``python -m twin.train.worker <job_id>`` detached (``--detach``, the web app). Either way the
job row carries the progress, a cancel request stops the run at the next step with a
checkpoint, and a stopped or failed run is marked resumable.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twin.config import Settings, get_settings
from twin.jobs import (
    cancel_job,
    cancel_requested,
    claim_job,
    fail_job,
    finish_job,
    get_job,
    set_pid,
    start_job,
    update_progress,
)
from twin.train.loop import newest_run_id, prepare_run
from twin.train.record import RUN_RECORD, RunRecord
from twin.train.trainer import (
    ProgressFn,
    RunProgress,
    StopFn,
    TrainingConfig,
    new_run_id,
    record_status,
    runs_dir,
    train,
)

JOB_KIND = "train"
PROGRESS_EVERY_SECONDS = 1.0
"""Throttle for job-row writes: the web polls twice a second, more is wasted I/O."""


def training_params(
    *,
    settings: Settings,
    base_model_dir: Path | None,
    dataset_dir: Path | None,
    run_id: str | None,
    config: TrainingConfig | None,
    resume: bool,
    merge: bool,
) -> dict[str, Any]:
    """Check a training request (as `train` would, writing nothing) and fix its run id.

    Returns the job's ``params``: everything the worker needs to call `train`.

    Args:
        settings: whose data dir and database.
        base_model_dir: as in `train`.
        dataset_dir: as in `train`.
        run_id: as in `train`; resolved here so the caller can name the run right away.
        config: as in `train`.
        resume: as in `train`.
        merge: as in `train`.
    """
    run_id = run_id or (newest_run_id(settings) if resume else new_run_id())
    config = config or TrainingConfig()
    prepare_run(
        settings=settings,
        base_model_dir=base_model_dir,
        dataset_dir=dataset_dir,
        run_id=run_id,
        config=config,
        resume=resume,
    )
    return {
        "run_id": run_id,
        "base_model_dir": str(base_model_dir) if base_model_dir else None,
        "dataset_dir": str(dataset_dir) if dataset_dir else None,
        "config": config.model_dump(mode="json"),
        "resume": resume,
        "merge": merge,
    }


def start_training_job(
    *,
    settings: Settings,
    base_model_dir: Path | None = None,
    dataset_dir: Path | None = None,
    run_id: str | None = None,
    config: TrainingConfig | None = None,
    resume: bool = False,
    merge: bool = False,
) -> int:
    """Check the request, queue a ``train`` job and spawn its worker process; return the job id.

    Bad input fails here, before anything is queued; a second start while a training job is
    active raises `twin.jobs.JobBusy`. The worker's output goes to ``<data_dir>/jobs/<id>.log``.

    Args:
        settings: whose data dir and database (passed to the worker through the environment).
        base_model_dir: as in `train`.
        dataset_dir: as in `train`.
        run_id: as in `train`.
        config: as in `train`.
        resume: as in `train`.
        merge: as in `train`.
    """
    params = training_params(
        settings=settings,
        base_model_dir=base_model_dir,
        dataset_dir=dataset_dir,
        run_id=run_id,
        config=config,
        resume=resume,
        merge=merge,
    )
    job = start_job(settings=settings, kind=JOB_KIND, params=params, queued=True)
    assert job.id is not None
    env = {**os.environ, "TWIN_DATA_DIR": str(settings.data_dir), "HF_HUB_OFFLINE": "1"}
    if settings.database_url:
        env["TWIN_DATABASE_URL"] = settings.database_url
    log = settings.data_dir / "jobs" / f"{job.id}.log"
    log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # 0600: the log may quote dataset text in an error message.
    with os.fdopen(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "twin.train.worker", str(job.id)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # survives the CLI's exit and its Ctrl-C
        )
    set_pid(settings=settings, job_id=job.id, pid=process.pid)
    return job.id


def run_training_job(
    *,
    settings: Settings,
    job_id: int,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> RunRecord:
    """Run the training of job ``job_id`` in this process and keep its row up to date.

    Args:
        settings: whose data dir and database.
        job_id: a ``train`` job in state ``running`` owned by this process.
        progress: also called with every `RunProgress` (e.g. a progress bar).
        should_stop: also polled each step (e.g. Ctrl-C); the job's cancel file always is.
    """
    params = json_params(settings, job_id)
    last_write = 0.0

    def on_progress(snapshot: RunProgress) -> None:
        nonlocal last_write
        if progress is not None:
            progress(snapshot)
        now = time.monotonic()
        if now - last_write >= PROGRESS_EVERY_SECONDS or snapshot.status != "running":
            last_write = now
            update_progress(settings=settings, job_id=job_id, progress=_job_progress(snapshot))

    def stop_requested() -> bool:
        return cancel_requested(settings, job_id) or bool(should_stop and should_stop())

    run_id = params["run_id"]
    try:
        record = train(
            settings=settings,
            base_model_dir=_path(params.get("base_model_dir")),
            dataset_dir=_path(params.get("dataset_dir")),
            run_id=run_id,
            config=TrainingConfig.model_validate(params["config"]),
            resume=params["resume"],
            merge=params["merge"],
            progress=on_progress,
            should_stop=stop_requested,
        )
    except BaseException as exc:
        # Resumable once the run exists; a request refused up front has nothing to resume.
        started = (runs_dir(settings) / run_id / RUN_RECORD).is_file()
        fail_job(
            settings=settings,
            job_id=job_id,
            error=str(exc) or type(exc).__name__,
            result={"run_id": run_id, "resumable": started},
        )
        raise
    result = {"run_id": run_id, "resumable": True, **record.metrics}
    if record_status(record) == "stopped":
        cancel_job(settings=settings, job_id=job_id, result=result)
    else:
        finish_job(settings=settings, job_id=job_id, result={**result, "resumable": False})
    return record


def json_params(settings: Settings, job_id: int) -> dict[str, Any]:
    """The ``params`` of a job, decoded.

    Args:
        settings: whose database.
        job_id: the job.
    """
    return dict(json.loads(get_job(settings=settings, job_id=job_id).params_json))


def _job_progress(snapshot: RunProgress) -> dict[str, Any]:
    # `done`/`total` drive the generic progress bar of the web app's job page.
    return {**snapshot.model_dump(), "done": snapshot.step, "total": snapshot.max_steps}


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _stop_on_signal() -> Callable[[], bool]:
    """SIGTERM asks for a clean stop (checkpoint, then exit), like a cancel request."""
    received: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: received.append(signum))
    return lambda: bool(received)


def main(argv: list[str] | None = None) -> int:
    """``python -m twin.train.worker JOB_ID``: claim the queued job and run it.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m twin.train.worker JOB_ID", file=sys.stderr)
        return 2
    settings = get_settings()
    job_id = int(args[0])
    claim_job(settings=settings, job_id=job_id)
    try:
        record = run_training_job(settings=settings, job_id=job_id, should_stop=_stop_on_signal())
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"run {record.run_id}: {record_status(record)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
