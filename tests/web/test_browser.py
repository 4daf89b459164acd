"""A real Chromium walks the app: set the password, import the sample export, see the contacts,
build the dataset, review it. Screenshots of every page land in test-artifacts/."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from twin.config import Settings
from twin.web import create_app

from .conftest import PASSWORD
from .test_pages import SAMPLE_EXPORT

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server_url(db: Settings) -> Iterator[str]:
    """The real app under uvicorn on 127.0.0.1 and a free port, in a thread."""
    settings = db.model_copy(update={"port": _free_port()})
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=settings.port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{settings.port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_first_run_import_contacts_dataset(server_url: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        # CSP violations and script errors show up here; the pages must have none.
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        expect = sync_api.expect

        def shot(name: str) -> None:
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

        page.goto(server_url + "/")
        expect(page).to_have_url(server_url + "/setup")
        shot("01-setup")
        page.fill('input[name="password"]', PASSWORD)
        page.fill('input[name="confirm"]', PASSWORD)
        page.click('button[type="submit"]')
        expect(page).to_have_url(server_url + "/")
        expect(page.get_by_text("Nothing imported yet")).to_be_visible()
        shot("02-dashboard-empty")

        page.click("text=Import your Telegram export")
        expect(page).to_have_url(server_url + "/import")
        shot("03-import")
        page.set_input_files('input[type="file"]', str(SAMPLE_EXPORT))
        page.click("text=Upload and import")
        page.wait_for_url(f"{server_url}/jobs/*")
        expect(page.locator('[data-field="next"]')).to_be_visible(timeout=60_000)
        expect(page.locator('[data-field="state"]')).to_have_text("done")
        shot("04-import-done")

        page.click("text=Continue")
        expect(page).to_have_url(server_url + "/contacts")
        for name in ("Маша", "Dan Whitaker", "Мама"):
            expect(page.get_by_role("cell", name=name)).to_be_visible()
        page.locator("#dialog-3 button").click()
        expect(page.locator("#dialog-3")).to_have_class("excluded")
        shot("05-contacts")

        page.click("text=Next: build the dataset")
        shot("06-dataset-empty")
        page.click("text=Build the dataset")
        page.wait_for_url(f"{server_url}/jobs/*")
        state = page.locator('[data-field="state"]')
        expect(state).not_to_have_text("running", timeout=90_000)
        shot("07-prepare-done")
        assert state.text_content() == "done", page.locator('[data-field="error"]').text_content()

        page.click("text=Continue")
        expect(page).to_have_url(server_url + "/dataset")
        expect(page.get_by_text("Scrub report")).to_be_visible()
        expect(page.locator(".sample").first).to_be_visible()
        shot("08-dataset")

        # The pages of the later steps render cleanly too (no base model, no run yet).
        for path, text, name in (
            ("/train", "Build the demo model", "09-train"),
            ("/chat", "No training run has finished yet", "10-chat"),
            ("/telegram", "API credentials", "11-telegram"),
        ):
            page.goto(server_url + path)
            expect(page.get_by_text(text)).to_be_visible()
            shot(name)

        page.click("text=Lock")
        expect(page).to_have_url(server_url + "/login")
        shot("12-locked")
        browser.close()
    assert problems == []
