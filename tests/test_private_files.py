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
