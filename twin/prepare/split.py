"""The dataset on disk: the train/validation split (sessions are spooled as they come, then
validation is chosen by size so that it holds close to ``val_fraction`` of the samples, never
more than train), and the finished directory swapped in whole.

A sample whose context and reply were already written is dropped as it comes: an exchange
repeated across sessions ("hi" → "hey" every morning) trains once, and since no two kept
samples are alike, validation never scores a sample that train has learned by heart."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import psutil

from twin.prepare.files import TRAIN_FILE, VAL_FILE
from twin.prepare.sessions import Sample

# `json.dumps` with options builds a new encoder per call; one shared encoder gives the same text.
_RECORD_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True)
_SPOOL = ".sessions.jsonl"


def open_private(path: Path, *, mode: str = "w", buffering: int = -1) -> TextIO:
    """A new text file only the owner can read (0600), like the rest of the data dir."""
    flags = os.O_RDWR if "+" in mode else os.O_WRONLY
    fd = os.open(path, flags | os.O_CREAT | os.O_TRUNC, 0o600)
    return open(fd, mode, encoding="utf-8", newline="\n", buffering=buffering)


def session_score(*, seed: int, peer_id: int, first_tg_id: int) -> float:
    """A stable number in [0, 1) for a session: the order in which sessions are offered to
    validation (see `twin.prepare.split.choose_validation`).

    Hashing (not a shared random stream) keeps the order of two sessions the same when other
    chats are added or excluded.

    Args:
        seed: the split seed.
        peer_id: the dialog's Telegram peer id.
        first_tg_id: the Telegram id of the session's first message.

    >>> session_score(seed=42, peer_id=7, first_tg_id=1) == session_score(
    ...     seed=42, peer_id=7, first_tg_id=1)
    True
    """
    digest = hashlib.blake2b(f"{seed}:{peer_id}:{first_tg_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


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


def drop_seen(samples: Sequence[Sample], seen: set[bytes]) -> list[Sample]:
    """The samples whose (context, reply) is not in ``seen`` yet, in order; adds theirs.

    A 16-byte digest stands for each pair: a million samples cost tens of MB, not their text.

    Args:
        samples: one session's samples.
        seen: digests of the pairs kept so far (updated).

    >>> seen: set[bytes] = set()
    >>> hi = Sample(instruction="", input="Anna: hi", output="hey", me="Me", peer="Anna", length=9)
    >>> len(drop_seen([hi, hi], seen)), len(drop_seen([hi], seen))
    (1, 0)
    """
    kept = []
    for sample in samples:
        key = hashlib.blake2b(f"{sample.input}\0{sample.output}".encode(), digest_size=16).digest()
        if key not in seen:
            seen.add(key)
            kept.append(sample)
    return kept


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
        self.seen: set[bytes] = set()
        self.duplicates = 0
        """Samples dropped because one with the same context and reply was kept before."""

    def add_session(self, samples: list[Sample], *, score: float) -> list[Sample]:
        """Spool a session's samples but those seen before; return the ones kept."""
        kept = drop_seen(samples, self.seen)
        self.duplicates += len(samples) - len(kept)
        if not kept:
            return kept
        encode = _RECORD_ENCODER.encode
        # JSON escapes line breaks inside strings: one record is one line.
        self.spool.write("".join(encode(sample.record()) + "\n" for sample in kept))
        self.entries.append((score, len(kept)))
        return kept

    def close(self) -> list[str]:
        """Write both splits; return warnings about the split (empty when it went as asked)."""
        val = choose_validation(self.entries, val_fraction=self.val_fraction)
        files = {
            "train": _JsonArrayWriter(self.directory / TRAIN_FILE),
            "val": _JsonArrayWriter(self.directory / VAL_FILE),
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


def remove_abandoned_temp_dirs(out_dir: Path) -> None:
    """Delete temp dirs of runs that were killed before their cleanup ran (they hold private
    samples); a dir is abandoned when the pid in its name is no longer running."""
    for path in out_dir.parent.glob(f".{out_dir.name}.*"):
        pid = path.name.removeprefix(f".{out_dir.name}.").split(".", 1)[0]
        if not path.is_dir() or (pid.isdigit() and psutil.pid_exists(int(pid))):
            continue
        if path.name.endswith(".old") and not out_dir.exists():
            # Killed mid-swap (the fallback without renameat2): this is the previous dataset.
            os.rename(path, out_dir)
        else:
            shutil.rmtree(path, ignore_errors=True)


def write_json(path: Path, value: Any) -> None:
    with open_private(path) as f:
        f.write(json.dumps(value, ensure_ascii=False, sort_keys=True, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
