"""Train/validation split: sessions are spooled as they come, then validation is chosen by
size so that it holds close to ``val_fraction`` of the samples, never more than train."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from twin.prepare.sessions import Sample

# `json.dumps` with options builds a new encoder per call; one shared encoder gives the same text.
_RECORD_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True)
_SPOOL = ".sessions.jsonl"


def open_private(path: Path, *, mode: str = "w", buffering: int = -1) -> TextIO:
    """A new text file only the owner can read (0600), like the rest of the data dir."""
    flags = os.O_RDWR if "+" in mode else os.O_WRONLY
    fd = os.open(path, flags | os.O_CREAT | os.O_TRUNC, 0o600)
    return open(fd, mode, encoding="utf-8", newline="\n", buffering=buffering)


def choose_validation(sessions: Sequence[tuple[float, int]], *, val_fraction: float) -> set[int]:
    """The indexes of the sessions to hold out for validation.

    Sessions join validation in the order of their score (a seeded hash, so the choice is
    stable and unbiased) while the held-out samples stay within ``val_fraction`` of all and
    never exceed the rest; a session too large to fit is passed over, so a few big sessions
    cannot swallow the data. When none fits, the smallest session is held out if it is not
    larger than the rest together: some validation beats none.

    Args:
        sessions: ``(score, number of samples)`` per session.
        val_fraction: the share of samples to hold out, in (0, 1).

    >>> sorted(choose_validation([(0.1, 1), (0.2, 1), (0.3, 40)], val_fraction=0.1))
    [0, 1]
    """
    total = sum(n for _, n in sessions)
    room = min(val_fraction * total, total / 2)
    chosen: set[int] = set()
    held = 0
    for i in sorted(range(len(sessions)), key=lambda i: sessions[i][0]):
        n = sessions[i][1]
        if n and held + n <= room:
            chosen.add(i)
            held += n
    if not chosen and len(sessions) >= 2:
        smallest = min(range(len(sessions)), key=lambda i: (sessions[i][1], sessions[i][0]))
        if 0 < sessions[smallest][1] <= total - sessions[smallest][1]:
            chosen.add(smallest)
    return chosen


class _JsonArrayWriter:
    """Streams records into a JSON array, one per line, so no split is held in memory."""

    def __init__(self, path: Path) -> None:
        self.file: TextIO = open_private(path, buffering=1 << 20)
        self.count = 0

    def write(self, record: str) -> None:
        self.file.write(("[\n" if self.count == 0 else ",\n") + record)
        self.count += 1

    def close(self) -> None:
        self.file.write("\n]\n" if self.count else "[]\n")
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


class SplitWriter:
    """Writes sessions to ``train.json`` and ``val.json`` (see `choose_validation`).

    Each session's records are spooled to a file in ``directory`` as it comes (memory stays
    bounded on a million messages); `close` chooses validation and copies every record to its
    split, then removes the spool.

    Args:
        directory: where the split files are written.
        val_fraction: the share of samples to hold out.
    """

    def __init__(self, directory: Path, *, val_fraction: float) -> None:
        self.directory = directory
        self.val_fraction = val_fraction
        self.spool: TextIO = open_private(directory / _SPOOL, mode="w+")
        self.entries: list[tuple[float, int]] = []  # (score, samples) in spool order
        self.sessions = Counter[str]()
        self.samples = Counter[str]()

    def add_session(self, samples: list[Sample], *, score: float) -> None:
        encode = _RECORD_ENCODER.encode
        # JSON escapes line breaks inside strings: one record is one line.
        self.spool.write("".join(encode(sample.record()) + "\n" for sample in samples))
        self.entries.append((score, len(samples)))

    def close(self) -> list[str]:
        """Write both splits; return warnings about the split (empty when it went as asked)."""
        val = choose_validation(self.entries, val_fraction=self.val_fraction)
        files = {
            "train": _JsonArrayWriter(self.directory / "train.json"),
            "val": _JsonArrayWriter(self.directory / "val.json"),
        }
        self.spool.seek(0)
        for i, (_, count) in enumerate(self.entries):
            split = "val" if i in val else "train"
            self.sessions[split] += 1
            self.samples[split] += count
            for _ in range(count):
                files[split].write(self.spool.readline().rstrip("\n"))
        for file in files.values():
            file.close()
        self.spool.close()
        (self.directory / _SPOOL).unlink()
        return self._warnings()

    def _warnings(self) -> list[str]:
        total = self.samples["train"] + self.samples["val"]
        if not total or not self.samples["val"]:
            return []
        share = self.samples["val"] / total
        if self.val_fraction / 2 <= share <= self.val_fraction * 1.5:
            return []
        return [
            f"val.json holds {self.samples['val']} of {total} samples ({share:.0%}), not near "
            f"the {self.val_fraction:.0%} asked: the conversations are too few or too uneven "
            "in size to split closer."
        ]
