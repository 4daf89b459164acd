"""The user's story in a real Chromium, against the in-memory Telegram server: log in with a code
and the two-step password → fetch my chats (the server is killed mid-fetch and started again;
the fetch resumes, and a flood wait shows) → "Train my twin" (the server is killed mid-training
and started again; the pipeline resumes) → a streamed chat reply. Nothing is lost: every message
of the account is stored once and one training run exists. Screenshots of every step land in
test-artifacts/story-*.png."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, func, select
from tgserver import CODE, PHONE, build_world
from webhelpers import free_port

from twin.config import Settings
from twin.db import get_engine
from twin.models import Message

from .browser_server import PASSWORD_2FA
from .conftest import PASSWORD
from .test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, send_in_chat

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)",
)

WORLD = (11, 3, 240)  # seed, people, messages per person: a few pages per chat
SERVER = Path(__file__).with_name("browser_server.py")
ROOT = Path(__file__).resolve().parents[2]


class App:
    """The app in its own process, which the test kills (SIGKILL) and starts again."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = settings.data_dir.parent / "server.log"

    def start(self, *, flood_seconds: int | None = None) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
            "HF_HUB_OFFLINE": "1",
            "TGSERVER_WORLD": ",".join(map(str, WORLD)),
            "TWIN_TEST_DEMO_STEPS": "20",
            "TGSERVER_HISTORY_DELAY": "1.5",
        }
        env.pop("TGSERVER_FLOOD", None)
        if flood_seconds is not None:
            env["TGSERVER_FLOOD"] = str(flood_seconds)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(SERVER), str(self.port)], env=env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.url + "/login", timeout=2)
                return
            except OSError:
                assert self.process.poll() is None, self.log.read_text()
                assert time.monotonic() < deadline, "the app did not start"
                time.sleep(0.2)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()


@pytest.fixture
def app_process(db: Settings) -> Iterator[App]:
    app = App(db)
    yield app
    if app.process is not None and app.process.poll() is None:
        app.kill()


def private_messages() -> int:
    world = build_world(seed=WORLD[0], people=WORLD[1], messages_per_person=WORLD[2])
    people = [k for k, u in world.users.items() if k > 0 and not (u.bot or u.is_self)]
    return sum(len(world.history.get(k, [])) for k in people)


def stored_messages(settings: Settings) -> int:
    with Session(get_engine(settings)) as db:
        return db.exec(select(func.count()).select_from(Message)).one()


def test_the_users_story_with_restarts(app_process: App, db: Settings) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    app_process.start()
    url = app_process.url
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        page.on("pageerror", lambda e: problems.append(str(e)))
        expect = sync_api.expect
        state = page.locator('.job [data-field="state"]').first

        def back_after_restart() -> None:
            """After a restart the page reconnects; if the browser session did not survive
            it, the page asks for the password and returns to where it was."""
            deadline = time.monotonic() + 40
            while "/login" not in page.url:
                if state.count() and state.text_content() == "failed":
                    return
                assert time.monotonic() < deadline, "the page did not come back"
                page.wait_for_timeout(200)
            page.fill('input[name="password"]', PASSWORD)
            page.click('button[type="submit"]', no_wait_after=True)
            page.wait_for_url(f"{url}/jobs/*", timeout=120_000)

        def shot(name: str) -> None:
            page.screenshot(path=str(ARTIFACTS / f"story-{name}.png"), full_page=True)

        page.goto(url + "/")
        page.fill('input[name="password"]', PASSWORD)
        page.fill('input[name="confirm"]', PASSWORD)
        page.click('button[type="submit"]')
        expect(page).to_have_url(url + "/")
        expect(page.get_by_role("link", name="Log in with Telegram")).to_be_visible()
        expect(page.get_by_role("link", name="Import your Telegram export")).to_be_visible()
        shot("01-dashboard-two-ways-in")

        # Log in: API credentials, phone, code, two-step password.
        page.click("text=Log in with Telegram")
        page.fill('input[name="api_id"]', "1234567")
        page.fill('input[name="api_hash"]', "0f" * 16)
        page.click("text=Save")
        page.fill('input[name="phone"]', PHONE)
        page.click("text=Send me a code")
        page.fill('input[name="code"]', CODE)
        shot("02-code")
        page.click("text=Log in")
        expect(page.get_by_text("Two-step verification")).to_be_visible()
        page.fill('input[name="password"]', PASSWORD_2FA)
        page.click("text=Log in")
        expect(page.get_by_text("Connected as")).to_be_visible()
        shot("03-connected")

        # Fetch, and kill the server while it reads the chats.
        page.click("text=Fetch my chats")
        page.wait_for_url(f"{url}/jobs/*")
        detail = page.locator('[data-field="detail"]').first
        # Still in the first chat: some messages stored, the chat being read named.
        first_chat = re.compile(r"^0 of 4 chats · [1-9][\d,]* messages stored · reading \w")
        expect(detail).to_have_text(first_chat, timeout=60_000)
        app_process.kill()
        shot("04-fetch-running")
        expect(page.locator('[data-field="connection"]')).to_be_visible(timeout=20_000)
        shot("05-fetch-server-down")
        assert 0 < stored_messages(db) < private_messages()
        app_process.start(flood_seconds=2)
        back_after_restart()
        expect(state).to_have_text("failed", timeout=30_000)
        expect(page.get_by_text("It can be resumed")).to_be_visible()
        shot("06-fetch-after-restart")
        page.click('button:has-text("Resume")')
        expect(page.locator('[data-field="next"]')).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Telegram asked to wait")).to_be_visible()
        expect(page.locator("[data-countdown]")).to_contain_text("can be fetched")
        shot("07-fetch-done-flood-wait")

        # Train my twin: one click; kill the server during training.
        time.sleep(2)  # the flood wait ends; the pipeline's sync fetches that chat
        page.goto(url + "/")
        page.fill('input[name="max_steps"]', "6")
        page.click('button:has-text("Train my twin")')
        page.wait_for_url(f"{url}/jobs/*")
        stages = page.locator('[data-field="stages"]')
        expect(stages).to_contain_text(re.compile(r"Train · running · \d"), timeout=240_000)
        shot("08-pipeline-training")
        app_process.kill()
        app_process.start()
        back_after_restart()
        expect(state).to_have_text("failed", timeout=30_000)
        shot("09-pipeline-after-restart")
        page.click('button:has-text("Resume")')
        expect(page.locator('[data-field="next"]')).to_be_visible(timeout=300_000)
        expect(stages).to_contain_text("Build the dataset · skipped")
        expect(stages).to_contain_text("Make the base model ready · skipped")
        expect(page.locator(".series-train")).to_be_visible()
        shot("10-pipeline-done")
        assert stored_messages(db) == private_messages()
        assert len(list((db.data_dir / "runs").iterdir())) == 1

        # Chat: the reply streams in, and holds only the twin's words.
        page.click("text=Continue")
        expect(page).to_have_url(url + "/chat")
        expect(page.get_by_text("demo model")).to_be_visible()
        expect(page.locator('[data-field="regenerate"]')).to_be_hidden()  # nothing to redo yet
        reply = send_in_chat(page, "hi! coffee tomorrow?", timeout=120_000)
        expect(page.locator(".conversations li")).to_have_count(1)  # listed at once
        shot("11-chat")
        text = reply.text_content() or ""
        assert int(reply.get_attribute("data-pieces") or 0) >= 1 and text.strip(), text
        assert "###" not in text and "Response:" not in text, text
        browser.close()
    assert problems == []
