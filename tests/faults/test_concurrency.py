"""Writers at the same time: web requests while an import or a harvest writes, and store
functions from several threads. No "database is locked" may reach a user: the import holds the
write lock for its whole (all-or-nothing) transaction, so every other writer must wait for it
(busy timeout) instead of failing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import API_HASH, API_ID, db_file, make_export, message_rows, write_export
from fastapi.testclient import TestClient
from sqlmodel import select

from twin.config import Settings
from twin.db import session_scope
from twin.importer import import_export
from twin.jobs import get_job, start_job, update_progress
from twin.models import Dialog, JobState, Source
from twin.store import ChatMessage, set_included, upsert_dialog, upsert_messages

pytestmark = pytest.mark.faults


def _dialog_ids(settings: Settings) -> list[int]:
    with session_scope(settings) as session:
        return [d.id or 0 for d in session.exec(select(Dialog).order_by(Dialog.id))]


def _included(settings: Settings) -> dict[int, bool]:
    with session_scope(settings) as session:
        return {d.id or 0: d.included for d in session.exec(select(Dialog))}


def _wait_job(settings: Settings, job_id: int, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        job = get_job(settings=settings, job_id=job_id)
        if job.state not in (JobState.queued, JobState.running):
            return job
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.05)


def _hammer(work: Callable[[int], None], *, while_running: threading.Event, threads: int) -> int:
    """Call ``work(i)`` from ``threads`` threads until the event clears; return the calls."""
    calls = [0] * threads

    def loop(n: int) -> None:
        while while_running.is_set():
            work(n * 1000 + calls[n])
            calls[n] += 1

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(loop, n) for n in range(threads)]:
            future.result()  # re-raises whatever a writer hit
    return sum(calls)


def test_contacts_toggle_through_the_web_while_an_import_runs(
    owner: TestClient, settings: Settings, tmp_path: Path
) -> None:
    import_export(
        settings=settings,
        path=write_export(tmp_path / "a.json", make_export(chats=3, messages=50, seed=1)),
    )
    ids = _dialog_ids(settings)
    big = make_export(chats=6, messages=6000, seed=2, first_id=10_000)
    body = write_export(tmp_path / "b.json", big).read_bytes()

    started = owner.post("/import", content=body, headers={"content-type": "application/json"})
    assert started.status_code == 201, started.text
    job_id = int(started.json()["url"].rsplit("/", 1)[1])
    running = threading.Event()
    running.set()
    last: dict[int, bool] = {}
    statuses: list[int] = []

    def toggle(i: int) -> None:
        dialog_id, include = ids[i % len(ids)], bool(i % 2)
        response = owner.post(f"/contacts/{dialog_id}/{'include' if include else 'exclude'}")
        statuses.append(response.status_code)
        assert response.status_code == 303, response.text  # a 500 would be "database is locked"
        assert owner.get("/contacts").status_code == 200
        last[dialog_id] = include
        if get_job(settings=settings, job_id=job_id).state != JobState.running:
            running.clear()

    calls = _hammer(toggle, while_running=running, threads=3)
    job = _wait_job(settings, job_id)
    assert job.state == JobState.done, job.error
    assert calls >= 3 and set(statuses) == {303}
    included = _included(settings)
    assert all(included[d] == value for d, value in last.items())
    assert len(message_rows(db_file(settings.data_dir))) == 3 * 50 + 6 * 6000


def test_store_writes_from_threads_while_a_harvest_runs(db: Settings) -> None:
    from tgserver import TelegramServer, build_world

    settings = db.model_copy(update={"api_id": API_ID, "api_hash": API_HASH})
    server = TelegramServer(build_world(seed=3, people=4, messages_per_person=400))
    job = start_job(settings=settings, kind="harvest")
    assert job.id is not None
    with session_scope(settings) as session:
        mine = upsert_dialog(session, peer_id=42, name="Local", source=Source.export).id or 0
    errors: list[BaseException] = []
    running = threading.Event()
    running.set()

    def run_harvest() -> None:
        try:
            server.log_in(settings).harvest(settings)
        except BaseException as exc:
            errors.append(exc)
        finally:
            running.clear()

    def write(i: int) -> None:
        with session_scope(settings) as session:
            upsert_messages(
                session,
                dialog_id=mine,
                messages=[ChatMessage(tg_id=i, sent_unix=1_700_000_000 + i, out=True, text="x")],
                source=Source.export,
            )
            set_included(session, dialog_ids=[mine], included=bool(i % 2))
        update_progress(settings=settings, job_id=job.id or 0, progress={"done": i})

    harvester = threading.Thread(target=run_harvest)
    harvester.start()
    calls = _hammer(write, while_running=running, threads=3)
    harvester.join()
    assert not errors, errors
    rows = message_rows(db_file(settings.data_dir))
    people = {u.id for u in server.world.users.values() if not (u.bot or u.is_self)}
    harvested = sum(len(h) for peer, h in server.world.history.items() if peer in people)
    assert len(rows) == harvested + calls


def test_two_train_clicks_at_once_start_one_run(owner: TestClient, settings: Settings) -> None:
    from trainhelpers import make_dataset, make_tiny_model

    from twin.jobs import JobBusy, list_jobs
    from twin.runs import runs_dir
    from twin.train.trainer import TrainingRequest, train

    dataset = make_dataset(settings.dataset_dir, train=32, val=8)
    model = make_tiny_model(settings.data_dir / "checkpoints" / "twin-tiny", dataset_dir=dataset)
    both_ready = threading.Barrier(2)

    def click(_: int) -> Any:
        both_ready.wait()
        return owner.post("/train")

    with ThreadPoolExecutor(2) as pool:
        responses = list(pool.map(click, range(2)))
    assert [r.status_code for r in responses] == [303, 303]
    # The second click is shown the run the first one started.
    assert responses[0].headers["location"] == responses[1].headers["location"]
    [job] = list_jobs(settings=settings, kind="train")
    assert responses[0].headers["location"] == f"/jobs/{job.id}"

    # The same refusal from the entry function itself names the running job and what to do.
    with pytest.raises(JobBusy) as busy:
        request = TrainingRequest(base_model_dir=model, dataset_dir=dataset)
        train(request, settings=settings, detach=True)
    assert f"job {job.id}" in busy.value.message and busy.value.hint

    finished = _wait_job(settings, job.id or 0, timeout=240)
    assert finished.state == JobState.done, finished.error
    assert len(list(runs_dir(settings).iterdir())) == 1
