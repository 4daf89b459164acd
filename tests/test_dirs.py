"""Directories replaced whole: a reader sees the old dir or the new one, never none and never
a part; a failed write leaves the old one as it was."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from twin.dirs import dir_written_whole


def _write(target: Path, generation: int) -> None:
    with dir_written_whole(target) as tmp:
        (tmp / "a.txt").write_text(str(generation))
        (tmp / "b.txt").write_text(str(generation))


def test_a_reader_never_finds_the_dir_missing_or_mixed(tmp_path: Path) -> None:
    target = tmp_path / "export"
    _write(target, 0)
    seen: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                a = (target / "a.txt").read_text()
                b = (target / "b.txt").read_text()
            except FileNotFoundError:
                seen.append("missing")
                continue
            if a != b and int(b) < int(a):  # b read after a: it can only be as new or newer
                seen.append(f"mixed {a}/{b}")

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for generation in range(1, 400):
            _write(target, generation)
    finally:
        done.set()
        reader.join()
    assert seen == []
    assert (target / "a.txt").read_text() == "399"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temp dir left


def test_a_failed_write_leaves_the_old_dir_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "export"
    _write(target, 1)
    with pytest.raises(RuntimeError), dir_written_whole(target) as tmp:
        (tmp / "a.txt").write_text("2")
        raise RuntimeError("disk full")
    assert (target / "a.txt").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
