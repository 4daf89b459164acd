"""The Assist page: it says what the feature does before anything is on, switches chats and the
listener, restarts the listener with the app, and (in a real Chromium) shows the live log entry
of a draft written for an incoming message from the in-memory Telegram server."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import select
from tgserver import build_world, with_api_credentials
from tgserver_updates import UpdatesServer

from twin import jobs
from twin.assist.drafts import JOB_KIND, AssistOptions
from twin.assist.job import job_to_resume
from twin.config import Settings
from twin.db import session_scope
from twin.models import Dialog, JobState
from twin.web import create_app

from .conftest import PASSWORD, log_in

ANNA = 2001


@pytest.fixture
def db(db: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The migrated database, with Telegram API credentials in the environment."""
    return with_api_credentials(monkeypatch)


@pytest.fixture
def server(db: Settings) -> UpdatesServer:
    server = UpdatesServer(build_world(people=2, messages_per_person=12))
    server.log_in(db)
    server.harvest(db)
    return server


def _anna(settings: Settings) -> Dialog:
    with session_scope(settings) as session:
        return session.exec(select(Dialog).where(Dialog.peer_id == ANNA)).one()


def test_the_page_explains_first_and_switches_chats(
    owner: TestClient, db: Settings, server: UpdatesServer
) -> None:
    page = owner.get("/assist")
    assert page.status_code == 200
    assert "twin never sends a message itself" in page.text
    assert "No run is trained yet" in page.text  # and no switch to start it
    assert 'action="/assist/start"' not in page.text
    refused = owner.post("/assist/start", headers={"Accept": "text/html"})
    assert refused.status_code == 400 and "No finished training run" in refused.text
    anna = _anna(db)
    assert anna.assist is False  # off by default
    response = owner.post(f"/assist/chats/{anna.id}", data={"on": "1"})
    assert response.status_code == 303
    assert _anna(db).assist is True
    assert 'aria-pressed="true"' in owner.get("/assist").text
    owner.post(f"/assist/chats/{anna.id}", data={"on": "0"})
    assert _anna(db).assist is False
    assert owner.get("/assist/status").json()["state"] == "off"


def test_the_listener_starts_again_with_the_app(
    db: Settings, server: UpdatesServer, finished_run: Path
) -> None:
    # A listener whose server process died is resumed when the app starts ...
    dead = subprocess.Popen(["true"])
    dead.wait()
    params = AssistOptions(poll_seconds=0.02).model_dump(mode="json")
    jobs.start_job(settings=db, kind=JOB_KIND, params=params, pid=dead.pid)
    app = create_app(db)
    app.state.twin.telegram_client_factory = server.client_factory
    with TestClient(app, base_url=f"http://127.0.0.1:{db.port}", follow_redirects=False) as client:
        log_in(client)
        deadline = time.monotonic() + 60
        while client.get("/assist/status").json()["state"] != "listening":
            assert time.monotonic() < deadline, "the listener did not start again"
            time.sleep(0.05)
        assert server.listeners() == 1
    # ... and when the app stops, it stops with it, ready to start again.
    [job, _] = jobs.list_jobs(settings=db, kind=JOB_KIND)
    assert job.state == JobState.failed and "starts again with twin" in (job.error or "")
    assert job_to_resume(settings=db) is not None
    assert server.listeners() == 0


def test_switch_on_in_a_browser_and_see_the_draft_in_the_log(
    served: tuple[str, FastAPI], db: Settings, server: UpdatesServer, finished_run: Path
) -> None:
    # Imported here: without Playwright or Chromium only this test is skipped.
    from .test_browser import ARTIFACTS, CHROMIUM, chromium_page, sync_api

    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium")
    base_url, app = served
    app.state.twin.telegram_client_factory = server.client_factory
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium_page(900) as (page, problems):
        expect = sync_api.expect
        page.goto(base_url + "/setup")
        page.fill('input[name="password"]', PASSWORD)
        page.fill('input[name="confirm"]', PASSWORD)
        page.click('button[type="submit"]')
        page.click("nav >> text=Assist")
        expect(page.get_by_text("twin never sends a message itself")).to_be_visible()

        row = page.locator(f"#dialog-{_anna(db).id}")
        row.get_by_role("button", name="Switch on").click()
        expect(row.get_by_role("button")).to_have_attribute("aria-pressed", "true")
        page.locator("#listener").get_by_role("button", name="Switch on").click()
        state = page.locator('#listener [data-field="state"]')
        expect(state).to_have_text("listening", timeout=60_000)

        listener: Any = app.state.assist
        listener.task.get_loop().call_soon_threadsafe(server.receive, ANNA, "tea tonight?")
        log = page.locator('#listener [data-field="log"]')
        expect(log).to_contain_text("draft saved", timeout=60_000)
        expect(log).to_contain_text("Anna P0")
        page.screenshot(path=str(ARTIFACTS / "assist.png"), full_page=True)

        page.locator("#listener").get_by_role("button", name="Switch off").click()
        expect(state).to_have_text("off", timeout=30_000)
    assert problems == []
    [(peer, draft)] = server.saved_drafts
    assert peer == ANNA and draft.strip()
    assert "tea tonight" not in page_text_of_job(db)


def page_text_of_job(settings: Settings) -> str:
    """The assist job's stored row, as text (to check no message text is kept)."""
    [job] = jobs.list_jobs(settings=settings, kind=JOB_KIND)
    return job.model_dump_json()
