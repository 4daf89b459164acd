"""``python -m twin.train.worker JOB_ID``: the process a detached training runs in.

`twin.train.trainer.train` (``detach=True``) queues the job and starts this process, which
claims it and runs it with the same function. SIGTERM asks for a clean stop, like a cancel
request: a checkpoint, then exit.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

from twin.config import get_settings
from twin.jobs import claim_job
from twin.train.trainer import train


def _stop_on_signal() -> Callable[[], bool]:
    received: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: received.append(signum))
    return lambda: bool(received)


def main(argv: list[str] | None = None) -> int:
    """Claim the queued job named on the command line (default: ``sys.argv[1:]``) and run it."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m twin.train.worker JOB_ID", file=sys.stderr)
        return 2
    settings = get_settings()
    job_id = int(args[0])
    claim_job(settings=settings, job_id=job_id)
    try:
        training = train(settings=settings, job_id=job_id, should_stop=_stop_on_signal())
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    assert training.record is not None
    print(f"run {training.run_id}: {training.record.status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
