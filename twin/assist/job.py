"""The assist listener as a job (`twin.jobs`): its row carries the live status, a cancel
request stops it, an error fails it with its message, and a listener that stopped only because
twin stopped is started again with twin (`job_to_resume`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from twin import jobs
from twin.assist.drafts import JOB_KIND, AssistOptions, AssistStatus, StatusCallback, assist
from twin.config import Settings
from twin.errors import TwinError
from twin.models import JobState
from twin.telegram.client import ClientFactory

if TYPE_CHECKING:
    from twin.chat.generate import Twin


async def run_assist_job(
    *,
    settings: Settings,
    job_id: int,
    twin: Twin | None = None,
    client_factory: ClientFactory | None = None,
    should_stop: Callable[[], bool] | None = None,
    shutting_down: Callable[[], bool] | None = None,
    progress: StatusCallback | None = None,
) -> AssistStatus:
    """Run `assist` for job ``job_id`` (``running``, owned by this process), keeping its row
    up to date: progress is the status, an error fails it with its message.

    A stop the owner asked for (the job's cancel request, or ``should_stop``) cancels the job;
    stopping because twin itself shuts down (``shutting_down``) leaves it resumable, so the
    web app starts it again when it starts (`job_to_resume`).

    Args:
        settings: whose database and data dir.
        job_id: the ``assist`` job.
        twin: as in `assist`.
        client_factory: as in `assist`.
        should_stop: the owner's stop (e.g. Ctrl-C).
        shutting_down: twin is stopping (e.g. the web server's shutdown).
        progress: also called with every status (e.g. to print the log).
    """
    options = AssistOptions.model_validate_json(
        jobs.get_job(settings=settings, job_id=job_id).params_json
    )

    def asked_to_stop() -> bool:
        return jobs.cancel_requested(settings, job_id) or bool(should_stop and should_stop())

    def stop() -> bool:
        return asked_to_stop() or bool(shutting_down and shutting_down())

    def record(status: AssistStatus) -> None:
        jobs.update_progress(
            settings=settings, job_id=job_id, progress=status.model_dump(mode="json")
        )
        if progress is not None:
            progress(status)

    try:
        status = await assist(
            settings=settings,
            options=options,
            twin=twin,
            client_factory=client_factory,
            should_stop=stop,
            progress=record,
        )
    except TwinError as exc:
        jobs.fail_job(settings=settings, job_id=job_id, error=str(exc), result={"resumable": False})
        raise
    except Exception as exc:
        jobs.fail_job(
            settings=settings,
            job_id=job_id,
            error=f"Unexpected error: {exc!r}",
            result={"resumable": True},
        )
        raise
    if asked_to_stop():
        jobs.cancel_job(
            settings=settings, job_id=job_id, result={"drafts": status.drafts, "resumable": False}
        )
    else:
        jobs.fail_job(
            settings=settings,
            job_id=job_id,
            error="Stopped when twin stopped; it starts again with twin.",
            result={"drafts": status.drafts, "resumable": True},
        )
    return status


def start_assist_job(*, settings: Settings, options: AssistOptions | None = None) -> int:
    """Record a running ``assist`` job for this process (or raise `twin.jobs.JobBusy`).

    Args:
        settings: whose database.
        options: the rules for this run of the listener.
    """
    job = jobs.start_job(
        settings=settings,
        kind=JOB_KIND,
        params=(options or AssistOptions()).model_dump(mode="json"),
    )
    assert job.id is not None
    return job.id


def job_to_resume(*, settings: Settings) -> AssistOptions | None:
    """The options of the newest ``assist`` job when it ended only because twin stopped
    (killed, restarted, shut down), so it should listen again; otherwise None.

    Args:
        settings: whose database.
    """
    jobs.reap_dead_jobs(settings=settings, kind=JOB_KIND)
    newest = jobs.list_jobs(settings=settings, kind=JOB_KIND, limit=1)
    if not newest or newest[0].state != JobState.failed:
        return None
    result = json.loads(newest[0].result_json or "{}")
    if not result.get("resumable"):
        return None
    return AssistOptions.model_validate_json(newest[0].params_json)
