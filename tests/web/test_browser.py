"""A real Chromium walks the whole app: set the password, import the sample export, choose
contacts, build the dataset, build the demo model, train a few steps, chat (the reply streams
in), play a round of "Which one is me?", make an API token. Screenshots of every page land in
test-artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

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


@contextmanager
def chromium_page(height: int) -> Iterator[tuple[Any, list[str]]]:
    """A page in a fresh headless Chromium, 1100 px wide, and the list its console errors and
    script errors (CSP violations among them) land in."""
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": height})
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        yield page, problems
        browser.close()


def send_in_chat(page: Any, text: str, *, timeout: int) -> Any:
    """Send ``text`` on the chat page, sampling with every word possible (temperature 1, no
    top-k), and wait up to ``timeout`` ms for the twin's reply to be complete; the reply."""
    page.fill('input[name="temperature"]', "1")
    page.fill('input[name="top_k"]', "0")
    page.fill('input[name="text"]', text)
    page.click("text=Send")
    reply = page.locator(".messages li.mine").last
    sync_api.expect(reply).not_to_have_class("mine pending", timeout=timeout)
    return reply


@pytest.fixture
def server_url(served: tuple[str, FastAPI]) -> str:
    """The real app under uvicorn on 127.0.0.1 and a free port."""
    return served[0]


def test_the_whole_flow_in_a_browser(server_url: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium_page(800) as (page, problems):  # the pages must have no errors
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

        page.goto(server_url + "/chat")
        expect(page.get_by_text("No training run has finished yet")).to_be_visible()
        shot("09-chat-no-run")

        # No base model: the page says how to get Falcon-7B and offers the demo model.
        page.goto(server_url + "/train")
        expect(page.locator("pre.command")).to_contain_text("litgpt download tiiuae/falcon-7b")
        shot("10-train-no-model")
        page.fill('input[name="pretrain_steps"]', "20")
        page.click("text=Build the demo model")
        page.wait_for_url(f"{server_url}/jobs/*")
        expect(page.locator('[data-field="next"]')).to_be_visible(timeout=120_000)
        shot("11-demo-model-done")
        page.click("text=Continue")
        expect(page).to_have_url(server_url + "/train")
        expect(page.locator(".badge")).to_have_text("demo model")
        shot("12-train-ready")

        # Train a few steps in the worker process; the job page follows it live.
        page.fill('input[name="max_steps"]', "3")
        page.click("text=Train my twin")
        page.wait_for_url(f"{server_url}/jobs/*")
        expect(state).to_have_text(re.compile("done|failed|cancelled"), timeout=180_000)
        shot("13-train-done")
        assert state.text_content() == "done", page.locator('[data-field="error"]').text_content()
        # The train page's button runs "Train my twin": the dataset, measured in characters
        # before the demo model existed, is measured again in its tokens, then the run trains.
        expect(page.get_by_text(re.compile(r"^run \d{8}-\d{6} done$"))).to_be_visible()
        expect(
            page.get_by_text(re.compile(r"^\d+ train \+ \d+ validation samples$"))
        ).to_be_visible()

        # Chat: the reply streams in piece by piece.
        page.click("text=Continue")
        expect(page).to_have_url(server_url + "/chat")
        shot("14-chat-empty")
        reply = send_in_chat(page, "привет! как дела?", timeout=60_000)
        expect(page).to_have_url(re.compile(server_url + "/chat/.+"))
        pieces = int(reply.get_attribute("data-pieces") or 0)
        assert pieces > 1, f"the reply came in {pieces} piece(s): {reply.text_content()!r}"
        page.click("text=Regenerate")
        expect(page.locator(".messages li.mine")).to_have_count(1)
        expect(page.locator(".messages li.mine").last).not_to_have_class("mine pending")
        page.reload()  # the conversation was kept: it is listed and shown again
        expect(page.locator(".conversations li")).to_have_count(1)
        expect(page.locator(".messages li")).to_have_count(2)
        shot("15-chat")

        # The run's page and a round of "Which one is me?".
        page.goto(server_url + "/train")
        shot("16-train-runs")
        page.locator("table a").first.click()
        expect(page.get_by_text("Nobody has played yet")).to_be_visible()
        shot("17-run")
        page.click("text=Play a round")
        expect(page.locator(".choice")).to_have_count(2)
        shot("18-game-round")
        page.click("text=This one (A)")
        expect(page.locator(".result")).to_be_visible()
        shot("19-game-result")

        page.goto(server_url + "/settings")
        page.click("text=Create a token")
        expect(page.locator("pre.token")).to_be_visible()
        shot("20-settings-token")
        page.goto(server_url + "/telegram")
        expect(page.get_by_text("API credentials")).to_be_visible()
        shot("21-telegram")
        page.fill("input[name=api_id]", "2718281")
        page.fill("input[name=api_hash]", "9f86d081884c7d659a2feaa0c55ad015")
        page.click("text=Save")
        phone = page.locator("input[name=phone]")
        expect(phone).to_be_visible()
        # The phone field is a full-width field like every other, not a bare browser input.
        field, form = phone.bounding_box(), page.locator("form[action='/telegram/phone']")
        assert field is not None and (box := form.bounding_box()) is not None
        assert field["width"] >= 0.9 * box["width"]
        shot("22-telegram-login")

        page.click("text=Lock")
        expect(page).to_have_url(server_url + "/login")
        shot("23-locked")
    assert problems == []
