"""Fetch my chats and "Train my twin" in the web app, against the in-memory Telegram server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select
from tgserver import TelegramServer, build_world

from twin import pipeline
from twin.config import Settings
from twin.db import get_engine
from twin.jobs import start_job
from twin.models import Message
from twin.pipeline import stages as pipeline_stages
from twin.telegram.client import with_telegram_credentials

from .test_pages import API_HASH, follow_job


def private_messages(server: TelegramServer) -> int:
    """Messages in the world's private chats with people, a deleted account's too (what a
    harvest stores)."""
    world = server.world
    people = [k for k, u in world.users.items() if k > 0 and not (u.bot or u.is_self)]
    return sum(len(world.history.get(k, [])) for k in people)


def stored_messages(settings: Settings) -> int:
    with Session(get_engine(settings)) as db:
        return db.exec(select(func.count()).select_from(Message)).one()


def connect(owner: TestClient, settings: Settings, server: TelegramServer) -> TelegramServer:
    """Wire the server into the app, save API credentials from the page, and log in."""
    owner.app.state.twin.telegram_client_factory = server.client_factory  # type: ignore[attr-defined]
    saved = owner.post("/telegram/credentials", data={"api_id": "1234567", "api_hash": API_HASH})
    assert saved.status_code == 303
    # As the Telegram page does: the login runs with the saved credentials.
    return server.log_in(with_telegram_credentials(settings))  # type: ignore[arg-type]


def test_fetch_my_chats_with_progress_a_flood_wait_and_the_skip_report(
    owner: TestClient, db: Settings
) -> None:
    server = connect(owner, db, TelegramServer(build_world(people=2, messages_per_person=130)))
    page = owner.get("/").text
    assert 'action="/telegram/fetch"' in page and "Fetch my chats" in page
    # The second chat's first history request: Telegram asks to wait ten minutes.
    server.fail_next("GetHistoryRequest", None, None, "FLOOD_WAIT_600")
    started = owner.post("/telegram/fetch")
    assert started.status_code == 303
    job = follow_job(owner, started.headers["location"])
    assert job["state"] == "done", job["error"]
    summary = job["result"]
    # A long flood wait stops the run: the second chat is left for a fetch after the wait.
    assert summary["dialogs_total"] == 3 and summary["dialogs_harvested"] == 1
    wait = summary["flood_wait"]
    assert wait["seconds"] == 600 and wait["request"] == "messages.getHistory"
    stored = stored_messages(db)
    assert stored == summary["messages_new"] > 100
    assert (
        job["detail"].startswith("1 of 3 chats") and f"{stored:,} messages stored" in job["detail"]
    )

    shown = owner.get(started.headers["location"]).text
    assert f"{stored:,}</strong> new messages" in shown
    assert "Telegram asked to wait (10 minutes)" in shown and "data-countdown" in shown
    assert "4 chats skipped" in shown and "bot" in shown and "channel" in shown
    telegram = owner.get("/telegram").text
    assert "Sync new messages" in telegram and "Telegram asked to wait" in telegram
    assert "Sync new messages" in owner.get("/").text


def test_a_stopped_fetch_resumes_and_loses_nothing(owner: TestClient, db: Settings) -> None:
    server = connect(owner, db, TelegramServer(build_world(people=3, messages_per_person=250)))
    started = owner.post("/telegram/fetch")
    url = started.headers["location"]
    assert owner.post(f"{url}/cancel").status_code == 303
    assert "stopping…" in owner.get(url).text or follow_job(owner, url)["finished"]
    stopped = follow_job(owner, url)
    assert stopped["state"] == "cancelled" and stopped["resumable"], stopped
    assert stored_messages(db) < private_messages(server)
    assert f'action="{url}/resume"' in owner.get(url).text

    resumed = owner.post(f"{url}/resume")
    assert resumed.status_code == 303 and resumed.headers["location"] != url
    done = follow_job(owner, resumed.headers["location"])
    assert done["state"] == "done", done
    assert stored_messages(db) == private_messages(server)


def test_telegram_out_of_reach_gives_a_message_retry_and_the_export(
    owner: TestClient, db: Settings
) -> None:
    server = connect(owner, db, TelegramServer())
    # A captive portal answers instead of Telegram: Telethon reads a short, foreign reply.
    server.fail_next("GetDialogsRequest", asyncio.IncompleteReadError(b"<html>", 8))
    job = follow_job(owner, owner.post("/telegram/fetch").headers["location"])
    assert job["state"] == "failed" and "cannot be reached" in job["error"], job
    page = owner.get(f"/jobs/{job['id']}").text
    assert f'action="/jobs/{job["id"]}/resume"' in page and ">Retry<" in page
    assert 'href="/import"' in page and "TWIN_" not in page

    owner.post("/telegram/logout")
    server.fail_next("SendCodeRequest", asyncio.IncompleteReadError(b"", 8))
    refused = owner.post("/telegram/phone", data={"phone": "+44 7911 123456"})
    assert refused.status_code == 400 and "cannot be reached" in refused.text
    assert 'href="/import"' in refused.text and ">Retry<" in refused.text
    assert "TWIN_" not in refused.text


@pytest.mark.parametrize("kind", ["harvest", "pipeline", "demo-model", "train"])
def test_every_job_that_died_offers_resume(owner: TestClient, db: Settings, kind: str) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    job = start_job(settings=db, kind=kind, params={}, pid=int(gone.stdout))
    last = follow_job(owner, f"/jobs/{job.id}")
    assert last["state"] == "failed" and "can be resumed" in last["error"]
    assert last["resumable"] and last["detail"] == ""
    assert f'action="/jobs/{job.id}/resume"' in owner.get(f"/jobs/{job.id}").text


def test_train_my_twin_runs_each_stage_once_then_skips_what_is_current(
    owner: TestClient, db: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline_stages, "DEMO_PRETRAIN_STEPS", 4)
    server = connect(owner, db, TelegramServer(build_world(people=3, messages_per_person=120)))
    started = owner.post("/pipeline", data={"max_steps": "2"})
    assert started.status_code == 303
    job = follow_job(owner, started.headers["location"])
    assert job["state"] == "done", job["error"]
    stages = {s["name"]: s for s in job["progress"]["stages"]}
    assert [s["state"] for s in stages.values()] == ["done"] * 4, stages
    assert stored_messages(db) == private_messages(server)
    assert "built twin-tiny" in stages["base_model"]["note"]
    assert job["progress"]["eta_seconds"] is None and "left" not in job["detail"]
    # The dataset was first measured in characters, then again in the new model's tokens.
    stats = json.loads((db.dataset_dir / "stats.json").read_text())
    assert stats["tokenizer"] and stats["length_unit"] == "tokens"
    curve = owner.get(f"/jobs/{job['id']}/curve").json()
    assert [p[0] for p in curve["train"]] == [1, 2] and curve["val"]

    again = follow_job(owner, owner.post("/pipeline").headers["location"])
    assert again["state"] == "done", again
    states = {s["name"]: (s["state"], s["note"]) for s in again["progress"]["stages"]}
    assert states["sync"][0] == "done" and "0 new messages" in states["sync"][1]
    assert states["dataset"][0] == "skipped" and "current" in states["dataset"][1]
    assert states["base_model"] == ("skipped", "present: twin-tiny")
    assert states["train"][0] == "skipped" and job["result"]["run_id"] in states["train"][1]

    print("durations", job["result"]["durations"], again["result"]["durations"])
    # Choosing chats again makes the dataset stale; so does a new message.
    with Session(get_engine(db)) as session:
        dialog_id = session.exec(select(Message.dialog_id)).first()
    assert owner.post(f"/contacts/{dialog_id}/exclude").status_code == 303
    base = pipeline.usable_base_model(db)
    assert (
        pipeline.dataset_staleness(db, base)
        == "the messages or the chosen chats changed since it was built"
    )


def test_train_my_twin_without_telegram_uses_the_imported_chats(
    owner: TestClient, db: Settings
) -> None:
    from .test_pages import SAMPLE_EXPORT, upload

    assert upload(owner, SAMPLE_EXPORT.read_bytes())["state"] == "done"
    started = owner.post("/pipeline", data={"max_steps": "lots"}, headers={"Accept": "text/html"})
    assert started.status_code == 400 and "whole number" in started.text
    job_id = int(owner.post("/pipeline").headers["location"].rsplit("/", 1)[1])
    page = owner.get(f"/jobs/{job_id}").text
    assert "Train my twin" in page
    assert owner.post(f"/jobs/{job_id}/cancel").status_code == 303
    stopped = follow_job(owner, f"/jobs/{job_id}")
    assert stopped["state"] == "cancelled" and stopped["resumable"], stopped
    states = {s["name"]: s for s in stopped["progress"]["stages"]}
    assert states["sync"]["state"] == "skipped" and "not connected" in states["sync"]["note"]
    assert states["train"]["state"] == "waiting"
    assert f'action="/jobs/{job_id}/resume"' in owner.get(f"/jobs/{job_id}").text


def test_a_stopped_pipeline_still_names_its_run_for_the_loss_curve() -> None:
    """Stopping "Train my twin" mid-training kept the stage list but lost the run's id, so the
    job page drew "The loss curve appears after the first training step" after 5 steps."""
    reports: list[dict[str, object]] = []
    run = pipeline._Run(lambda done, total, **extra: reports.append(extra), {})
    run.begin("train", "a new run")
    run.progress(5, 40, unit="steps", train={"run_id": "r1", "step": 5})
    run.fail("cancelled")
    assert reports[-1]["train"] == {"run_id": "r1", "step": 5}
    assert reports[-1]["stages"][-1]["state"] == "cancelled"  # type: ignore[index]
    assert reports[-1]["unit"] == "steps"  # "5 of 40 steps", not "5 of 40"
