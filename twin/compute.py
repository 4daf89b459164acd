"""One heavy computation at a time per data dir: training and the fidelity report.

Each keeps every core busy with torch's threads. A training sharing a 2-core laptop with
other heavy work ran 3–4 times slower, not twice (the threads oversubscribe the cores), so a
second one waits for the first: it takes the data dir's compute slot, an ``flock`` on
`LOCK_FILE`, and until it has it, tells its caller what it waits for (the job page shows it)
and may be stopped. The kernel releases the lock when the holding process ends, however it
ends, so a killed job never leaves the slot taken.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from twin.config import Settings

LOCK_FILE = "compute.lock"
POLL_SECONDS = 1.0
"""How often a waiting computation tries the slot again."""


def holder(settings: Settings) -> str | None:
    """What holds the compute slot now, as its holder described itself (None: free, or a
    holder that has not written its description yet).

    Args:
        settings: whose data dir.
    """
    try:
        text = (settings.data_dir / LOCK_FILE).read_text(encoding="utf-8")
        return str(json.loads(text)["what"]) if text else None
    except (OSError, ValueError, KeyError):
        return None


def _describe(fd: int, holder: dict[str, object] | None) -> None:
    """Write who holds the slot (None: nobody) into the lock file. Only a courtesy to whoever
    waits: a full disk must not stop the work, so a failed write is let go."""
    try:
        os.ftruncate(fd, 0)
        if holder is not None:
            os.pwrite(fd, json.dumps(holder).encode("utf-8"), 0)
    except OSError:
        pass


@contextmanager
def compute_slot(
    settings: Settings,
    *,
    what: str,
    waiting: Callable[[str], None] | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> Iterator[None]:
    """Hold the data dir's compute slot for the ``with`` block; wait while another holds it.

    Args:
        settings: whose data dir.
        what: this computation, as a waiting one will name it ("training run 20261202-0102").
        waiting: called with the holder's description each time the slot is found taken; it
            may raise (a cancel) to stop waiting.
        poll_seconds: how often to try again.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if waiting is not None:
                    waiting(holder(settings) or "another computation")
                time.sleep(poll_seconds)
        _describe(fd, {"what": what, "pid": os.getpid()})
        try:
            yield
        finally:
            _describe(fd, None)
    finally:
        os.close(fd)  # releases the lock
