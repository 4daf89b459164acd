"""One heavy computation at a time per data dir: a second training (or fidelity report) waits
for the first instead of running both at an eighth of the speed, says what it waits for, can
be stopped while it waits, and a killed holder never leaves the slot taken."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from trainhelpers import make_dataset, make_tiny_model, train_here, training_config

from twin.compute import compute_slot, holder
from twin.config import Settings
from twin.db import upgrade_database
from twin.jobs import JobCancelled, list_jobs, request_cancel
from twin.runs import TRAIN_JOB_KIND, runs_dir
from twin.web.jobview import describe

HOLD = """
import sys, time
from pathlib import Path
from twin.compute import compute_slot
from twin.config import Settings
from twin.db import upgrade_database
with compute_slot(Settings(data_dir=Path(sys.argv[1])), what=sys.argv[2]):
    print("holding", flush=True)
    while not Path(sys.argv[3]).exists():
        time.sleep(0.05)
"""


@contextmanager
def held(
    settings: Settings, what: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Another process holding the compute slot until the yielded file exists."""
    release = tmp_path / f"release-{time.monotonic_ns()}"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(settings.data_dir), what, str(release)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "holding\n"
        yield process, release
    finally:
        release.touch()
        process.wait(timeout=30)


def test_a_second_computation_waits_and_names_the_first(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    seen: list[str] = []
    with held(settings, "training run r1", tmp_path) as (_, release):
        assert holder(settings) == "training run r1"

        def waiting(what: str) -> None:
            seen.append(what)
            if len(seen) == 3:
                release.touch()

        with compute_slot(settings, what="the fidelity report of run r1", waiting=waiting,
                          poll_seconds=0.05):  # fmt: skip
            assert holder(settings) == "the fidelity report of run r1"
    assert seen[:3] == ["training run r1"] * 3
    assert holder(settings) is None  # released
    with compute_slot(settings, what="next", waiting=lambda _: pytest.fail("should be free")):
        pass


def test_a_killed_holder_frees_the_slot(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with held(settings, "training run r1", tmp_path) as (process, _):
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        with compute_slot(settings, what="mine", waiting=lambda _: pytest.fail("still taken")):
            assert holder(settings) == "mine"


def test_waiting_can_be_stopped(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")

    def stop(_: str) -> None:
        raise JobCancelled("stopped")

    with held(settings, "training run r1", tmp_path):
        with pytest.raises(JobCancelled), compute_slot(settings, what="mine", waiting=stop):
            pytest.fail("ran without the slot")
        assert holder(settings) == "training run r1"  # the holder keeps it


def test_a_training_waits_for_a_running_report_and_can_be_stopped_while_it_waits(
    tmp_path: Path,
) -> None:
    """The training job says what it waits for (its job page too), starts when the slot is
    free; stopped while waiting, it ends cancelled and leaves no run behind."""
    dataset = make_dataset(tmp_path / "dataset", train=16, val=4)
    model = make_tiny_model(tmp_path / "model", dataset_dir=dataset)
    settings = Settings(data_dir=tmp_path / "data")
    upgrade_database(settings)
    config = training_config(max_steps=2, eval_interval=2, checkpoint_interval=100)
    request = dict(base_model_dir=model, dataset_dir=dataset, config=config)
    outcome: dict[str, object] = {}

    def train(run_id: str) -> None:
        try:
            outcome[run_id] = train_here(settings=settings, run_id=run_id, **request)
        except JobCancelled as exc:
            outcome[run_id] = exc

    def waiting_job() -> int:
        for _ in range(600):
            jobs = list_jobs(settings=settings, kind=TRAIN_JOB_KIND, limit=1)
            if jobs and "waiting" in (jobs[0].progress_json or ""):
                return jobs[0].id or 0
            time.sleep(0.05)
        pytest.fail("the training never said it was waiting")

    with held(settings, "the fidelity report of run r0", tmp_path) as (_, release):
        first = threading.Thread(target=train, args=("r1",))
        first.start()
        job_id = waiting_job()
        job = list_jobs(settings=settings, kind=TRAIN_JOB_KIND, limit=1)[0]
        line = describe(json.loads(job.progress_json or "{}"), finished=False)
        assert line.startswith("waiting for the fidelity report of run r0 to finish")
        assert "r1" not in outcome  # not trained while the slot is taken
        release.touch()
        first.join(timeout=300)
    record = outcome["r1"]
    assert getattr(record, "status", None) == "done"
    assert list_jobs(settings=settings, kind=TRAIN_JOB_KIND, limit=1)[0].id == job_id

    with held(settings, "the fidelity report of run r1", tmp_path):
        second = threading.Thread(target=train, args=("r2",))
        second.start()
        job_id = waiting_job()
        request_cancel(settings=settings, job_id=job_id)
        second.join(timeout=60)
    assert isinstance(outcome["r2"], JobCancelled)
    job = list_jobs(settings=settings, kind=TRAIN_JOB_KIND, limit=1)[0]
    assert job.state.value == "cancelled"
    assert not (runs_dir(settings) / "r2").exists()
