"""``twin train``: LoRA fine-tuning of a litgpt base model on the prepared dataset, resumable.

`train` is the stage's one way in, for ``twin train`` (in the foreground or ``--detach``ed),
the web app's jobs and the worker process alike. It checks the `TrainingRequest` before
anything is written, keeps a ``train`` job row up to date (progress, cancel, the outcome) and
either runs the training here or in a worker process (``python -m twin.train.worker``).

Reads like litgpt's ``finetune/lora.py`` (setup → fit → validate → save) and uses its parts:
`litgpt.lora.GPT` with `mark_only_lora_as_trainable`, litgpt's checkpoint loading, its
`SFTDataset` for prompt masking, and `merge_lora_weights` for ``--merge``. What it adds:

* **Resume.** A checkpoint every ``checkpoint_interval`` steps and on stop holds everything
  (see `twin.train.checkpoint`); a run killed at any moment continues from its last checkpoint
  and, with ``32-true`` precision, reaches the same adapter bit for bit.
* **Less padding.** Micro-batches are grouped by length (`twin.train.batching`); the padding
  fraction is reported with the throughput.

Precision and scale: ``32-true`` on CPU (faster and exact there), ``bf16-mixed`` on GPU;
``quantize="bnb.nf4"`` is QLoRA (CUDA + bitsandbytes only). On a GPU cluster set ``devices``
and ``num_nodes`` and launch one process per GPU (e.g. ``srun`` or ``torchrun``); with more than
one device the model is sharded with FSDP (`FSDPStrategy`, one wrap per transformer block) and
each rank takes every ``world_size``-th micro-batch of the shared epoch order.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from twin.compute import compute_slot
from twin.config import Settings
from twin.db import upgrade_database
from twin.jobs import (
    JobCancelled,
    cancel_job,
    cancel_requested,
    fail_job,
    finish_job,
    get_job,
    set_pid,
    start_job,
    update_progress,
)
from twin.runs import (
    TRAIN_JOB_KIND,
    RunRecord,
    has_record,
    new_run_id,
    newest_run_id,
    run_dir_for,
)
from twin.train.loop import ProgressFn, RunProgress, StopFn, run_training
from twin.train.plan import TrainingRequest, launch_rank, prepare_run

log = logging.getLogger(__name__)

PROGRESS_EVERY_SECONDS = 1.0
"""Throttle for job-row writes: the web polls twice a second, more is wasted I/O."""


@dataclass
class Training:
    """What `train` started: its job, its run, and the run's record once it ran here."""

    job_id: int | None
    """None in the helper processes of a multi-process launch (rank 0 keeps the job)."""
    run_id: str
    record: RunRecord | None
    """None when the training went to a worker process."""


def train(
    request: TrainingRequest | None = None,
    *,
    settings: Settings,
    detach: bool = False,
    job_id: int | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Training:
    """Fine-tune a LoRA adapter on the dataset, or continue a stopped run, as a ``train`` job.

    Bad input fails here, before anything is queued or written; a second start while a
    training job is active raises `twin.jobs.JobBusy`. A failure after the run dir exists
    leaves the run marked ``failed`` with its last checkpoint (resumable).

    Args:
        request: what to train; default: a new run with `TrainingConfig`'s defaults.
        settings: data dir (runs go to ``<data_dir>/runs/<run_id>``) and database.
        detach: queue the job and run it in a worker process (its output goes to
            ``<data_dir>/jobs/<id>.log``); return at once.
        job_id: run this queued job's request here (the worker process does).
        progress: called with a `RunProgress` after every optimizer step and validation.
        should_stop: polled after every optimizer step (the job's cancel request always is);
            True saves a checkpoint and ends the run ``stopped`` (resumable).
    """
    if job_id is not None:
        request = TrainingRequest.model_validate_json(
            get_job(settings=settings, job_id=job_id).params_json
        )
        return _run_job(settings, job_id, request, progress=progress, should_stop=should_stop)
    request = request or TrainingRequest()
    if launch_rank() > 0:
        # torchrun/srun start the command once per process: rank 0 keeps the job row and
        # reports, the other ranks only train.
        record = _run(settings, request, progress=None, should_stop=should_stop)
        return Training(job_id=None, run_id=record.run_id, record=record)
    run_id = request.run_id or (newest_run_id(settings) if request.resume else new_run_id())
    request = request.model_copy(update={"run_id": run_id})
    prepare_run(request, settings=settings)  # refuses bad input, writes nothing
    upgrade_database(settings)
    _record_unrecorded_failures(settings)
    job = start_job(
        settings=settings, kind=TRAIN_JOB_KIND, params=request.model_dump(mode="json"),
        queued=detach,
    )  # fmt: skip
    assert job.id is not None and run_id is not None
    if detach:
        _spawn_worker(settings, job.id)
        return Training(job_id=job.id, run_id=run_id, record=None)
    return _run_job(settings, job.id, request, progress=progress, should_stop=should_stop)


def _run(
    settings: Settings,
    request: TrainingRequest,
    *,
    progress: ProgressFn | None,
    should_stop: StopFn | None,
) -> RunRecord:
    plan = prepare_run(request, settings=settings)
    return run_training(plan, merge=request.merge, progress=progress, should_stop=should_stop)


def _run_job(
    settings: Settings,
    job_id: int,
    request: TrainingRequest,
    *,
    progress: ProgressFn | None,
    should_stop: StopFn | None,
) -> Training:
    """Run the request in this process and keep the job's row up to date."""
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

    waited: set[str] = set()

    def wait_for(holder: str) -> None:
        if holder not in waited:
            waited.add(holder)
            log.warning("waiting for %s to finish (one heavy job at a time)", holder)
        update_progress(settings=settings, job_id=job_id, progress={"waiting": holder})
        if stop_requested():
            raise JobCancelled(f"Stopped while waiting for {holder} to finish.")

    run_id = request.run_id or ""
    try:
        with compute_slot(settings, what=f"training run {run_id}", waiting=wait_for):
            record = _run(settings, request, progress=on_progress, should_stop=stop_requested)
    except JobCancelled as exc:  # before it started: nothing of it to keep
        started = has_record(run_dir_for(settings, run_id))
        result = {"run_id": run_id, "stopped": str(exc), "resumable": started}
        cancel_job(settings=settings, job_id=job_id, result=result)
        raise
    except BaseException as exc:
        # Resumable once the run exists; a request refused up front has nothing to resume.
        started = has_record(run_dir_for(settings, run_id))
        failure = {
            "error": str(exc) or type(exc).__name__,
            "result": {"run_id": run_id, "resumable": started},
        }
        try:
            fail_job(settings=settings, job_id=job_id, **failure)
        except (OSError, SQLAlchemyError) as store_failed:
            # A full disk fails the run and then the database write that records it: the run's
            # own error is the one to show, and the failure is written before this process
            # starts its next run (else its row would still say running, and refuse it).
            log.warning("could not record the failure of job %s: %s", job_id, store_failed)
            _UNRECORDED_FAILURES[job_id] = failure
        raise
    result = {"run_id": run_id, "status": record.status, **record.metrics}
    if record.status == "stopped":
        cancel_job(settings=settings, job_id=job_id, result={**result, "resumable": True})
    else:
        finish_job(settings=settings, job_id=job_id, result={**result, "resumable": False})
    return Training(job_id=job_id, run_id=record.run_id, record=record)


_UNRECORDED_FAILURES: dict[int, dict[str, Any]] = {}
"""Jobs of this process whose failure could not be written (job id → `fail_job` arguments)."""


def _record_unrecorded_failures(settings: Settings) -> None:
    for job_id, failure in list(_UNRECORDED_FAILURES.items()):
        fail_job(settings=settings, job_id=job_id, **failure)
        del _UNRECORDED_FAILURES[job_id]


def _job_progress(snapshot: RunProgress) -> dict[str, Any]:
    # `done`/`total` drive the generic progress bar of the web app's job page.
    return {**snapshot.model_dump(), "done": snapshot.step, "total": snapshot.max_steps}


def _spawn_worker(settings: Settings, job_id: int) -> None:
    env = {**os.environ, "TWIN_DATA_DIR": str(settings.data_dir), "HF_HUB_OFFLINE": "1"}
    if settings.database_url:
        env["TWIN_DATABASE_URL"] = settings.database_url
    log = settings.data_dir / "jobs" / f"{job_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # 0600: the log may quote dataset text in an error message.
    with os.fdopen(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "twin.train.worker", str(job_id)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # survives the CLI's exit and its Ctrl-C
        )
    set_pid(settings=settings, job_id=job_id, pid=process.pid)
