"""Dataset files are the owner's only (0600 files in a 0700 dir), whatever the umask, like the
database and the job logs (run files: tests/web/test_attacks.py, on the shared trained run)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from twin.config import Settings

SAMPLE_EXPORT = Path(__file__).resolve().parents[1] / "samples" / "sample_export" / "result.json"


@pytest.fixture(autouse=True)
def lax_umask() -> Iterator[None]:
    """The usual desktop umask: files 0644 and dirs 0755 unless twin says otherwise."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in [root, *root.rglob("*")]}


def private_modes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): 0o700 if p.is_dir() else 0o600 for p in [root, *root.rglob("*")]
    }


def test_dataset_files_are_private(db: Settings) -> None:
    from twin.importer import import_export
    from twin.prepare.dataset import prepare_dataset

    import_export(settings=db, path=SAMPLE_EXPORT)
    out_dir = db.data_dir / "dataset"
    prepare_dataset(settings=db, out_dir=out_dir, min_messages=1)
    assert len(modes(out_dir)) > 1
    assert modes(out_dir) == private_modes(out_dir)


def test_run_files_written_by_many_processes_at_once_stay_whole(tmp_path: Path) -> None:
    """The ranks of a multi-process run rewrite the same run files at the same moment (a resumed
    two-process run failed with "No such file or directory: …/metrics.tmp" when both renamed one
    shared temporary file); every writer finishes and the file is always one whole version."""
    import multiprocessing

    from twin.runs import append_metrics
    from twin.runs.metrics import read_metrics

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for step in range(1, 41):
        append_metrics(run_dir, {"step": step, "train_loss": 1.0})
    context = multiprocessing.get_context("fork")
    with context.Pool(4) as pool:
        results = pool.map(_truncate_many, [str(run_dir)] * 4)
    assert results == ["ok"] * 4
    assert [entry["step"] for entry in read_metrics(run_dir)] == list(range(1, 21))
    assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.jsonl"]  # no temporary left
    assert (run_dir / "metrics.jsonl").stat().st_mode & 0o777 == 0o600


def _truncate_many(run_dir: str) -> str:
    from twin.runs import truncate_metrics

    try:
        for _ in range(300):
            truncate_metrics(Path(run_dir), 20)
    except OSError as exc:
        return repr(exc)
    return "ok"
