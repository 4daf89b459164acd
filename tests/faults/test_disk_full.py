"""A full disk while writing the database, the dataset and a checkpoint.

The data dir lives on a small tmpfs mounted for the test (needs root and ``mount``; skipped
otherwise), filled up to a few KB before the stage runs, so writes fail with ENOSPC exactly as on
a full disk. The stage must stop with its clear error (a `TwinError`, never a traceback) and the
previous good state must be intact; once space is freed, the same command succeeds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import all_rows, db_file, integrity, make_export, write_export

from twin.config import Settings
from twin.db import _cached_engine, upgrade_database
from twin.errors import PrepareError, TrainError, TwinError

pytestmark = pytest.mark.faults

TMPFS_BYTES = 64 * 1024**2


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs at ``tmp_path/disk``, unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES},mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        _cached_engine.cache_clear()
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path, *, leave_bytes: int) -> Path:
    """Fill ``disk`` so that about ``leave_bytes`` stay free; return the filler (delete it to
    free the space)."""
    filler = disk / f"filler-{uuid.uuid4().hex}"
    free = shutil.disk_usage(disk).free
    with filler.open("wb") as f:
        remaining = max(0, free - leave_bytes)
        chunk = b"\0" * (1 << 20)
        while remaining > 0:
            remaining -= f.write(chunk[: min(len(chunk), remaining)])
    return filler


def _digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_full_disk_during_import_keeps_the_database_as_it_was(
    small_disk: Path, tmp_path: Path
) -> None:
    from twin.importer import import_export

    settings = Settings(data_dir=small_disk / "data")
    upgrade_database(settings)
    first = write_export(tmp_path / "a.json", make_export(chats=2, messages=300, seed=1))
    import_export(settings=settings, path=first)
    before = all_rows(db_file(settings.data_dir))
    # Big enough that the write-ahead log cannot hold it in the space left.
    second = write_export(tmp_path / "b.json", make_export(chats=4, messages=3000, seed=2))

    filler = fill(small_disk, leave_bytes=64 * 1024)
    with pytest.raises(TwinError) as failed:
        import_export(settings=settings, path=second)
    assert "full" in str(failed.value).lower()
    _cached_engine.cache_clear()  # what a restart would do: new connections
    assert integrity(db_file(settings.data_dir)) == "ok"
    assert all_rows(db_file(settings.data_dir)) == before

    filler.unlink()
    summary = import_export(settings=settings, path=second)
    assert summary.messages_new == 4 * 3000 - 2 * 300  # the first export's ids 1…300 overlap


@pytest.fixture
def imported(small_disk: Path, tmp_path: Path) -> Settings:
    """A database on the small disk with a few chats, and a complete dataset next to it."""
    from twin.importer import import_export
    from twin.prepare.dataset import prepare_dataset

    settings = Settings(data_dir=small_disk / "data")
    upgrade_database(settings)
    export = write_export(tmp_path / "a.json", make_export(chats=4, messages=1500, seed=3))
    import_export(settings=settings, path=export)
    prepare_dataset(settings=settings, out_dir=settings.dataset_dir, min_messages=1, seed=1)
    return settings


def _prepare_on_full_disk(settings: Settings, disk: Path) -> BaseException:
    from twin.prepare.dataset import prepare_dataset

    old = _digest(settings.dataset_dir)
    filler = fill(disk, leave_bytes=16 * 1024)
    try:
        with pytest.raises(Exception) as failed:
            prepare_dataset(settings=settings, out_dir=settings.dataset_dir, min_messages=1, seed=2)
        assert _digest(settings.dataset_dir) == old, "the previous dataset changed"
        leftovers = [p.name for p in settings.data_dir.iterdir() if p.name.startswith(".dataset")]
        assert not leftovers, f"half-written files were left behind: {leftovers}"
    finally:
        filler.unlink()
    prepare_dataset(settings=settings, out_dir=settings.dataset_dir, min_messages=1, seed=2)
    assert _digest(settings.dataset_dir) != old
    return failed.value


def test_full_disk_during_prepare_keeps_the_previous_dataset(
    imported: Settings, small_disk: Path
) -> None:
    _prepare_on_full_disk(imported, small_disk)


def test_full_disk_during_prepare_says_so_clearly(imported: Settings, small_disk: Path) -> None:
    error = _prepare_on_full_disk(imported, small_disk)
    assert isinstance(error, PrepareError) and "space" in str(error).lower()


def test_full_disk_while_saving_a_checkpoint_keeps_the_previous_one(
    small_disk: Path, tmp_path: Path
) -> None:
    import torch
    from trainhelpers import make_dataset, make_tiny_model, train_here, training_config

    from twin.runs import STATE_FILE, latest_checkpoint, runs_dir

    dataset = make_dataset(tmp_path / "dataset", train=32, val=8)
    model = make_tiny_model(tmp_path / "model", dataset_dir=dataset)
    settings = Settings(data_dir=small_disk / "data")
    config = training_config(max_steps=6, checkpoint_interval=2, eval_max_batches=1)
    steps: list[int] = []
    record = train_here(
        settings=settings,
        base_model_dir=model,
        dataset_dir=dataset,
        run_id="run",
        config=config,
        progress=lambda p: steps.append(p.step),
        should_stop=lambda: bool(steps) and steps[-1] >= 2,
    )
    assert record.status == "stopped"
    run_dir = runs_dir(settings) / "run"
    saved = latest_checkpoint(run_dir)
    assert saved is not None and saved.name == "step-000002"
    saved_bytes = (saved / STATE_FILE).read_bytes()

    filler = fill(small_disk, leave_bytes=8 * 1024)
    with pytest.raises(TrainError) as failed:
        train_here(settings=settings, run_id="run", resume=True)
    assert "--resume" in str(failed.value)
    assert latest_checkpoint(run_dir) == saved
    assert (saved / STATE_FILE).read_bytes() == saved_bytes
    state = torch.load(saved / STATE_FILE, weights_only=False)
    assert state["step"] == 2

    filler.unlink()
    assert train_here(settings=settings, run_id="run", resume=True).status == "done"
    assert not any(p.name.endswith(".tmp") for p in (run_dir / "checkpoints").iterdir())
    os.sync()
