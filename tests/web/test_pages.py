"""The pages over HTTP: import the sample export, choose contacts, build and review the dataset."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from twin.config import Settings
from twin.db import get_engine
from twin.models import Dialog, Message

SAMPLE_EXPORT = Path(__file__).resolve().parents[2] / "samples" / "sample_export" / "result.json"


def follow_job(client: TestClient, url: str) -> dict:
    """Read a job's event stream to its end and return the last event."""
    events = []
    with client.stream("GET", f"{url}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
    assert events and events[-1]["finished"], events
    return events[-1]


def upload(client: TestClient, body: bytes) -> dict:
    response = client.post("/import", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 201, response.text
    return follow_job(client, response.json()["url"])


def _message_count(settings: Settings) -> int:
    with Session(get_engine(settings)) as db:
        return db.exec(select(func.count()).select_from(Message)).one()


def test_dashboard_points_to_the_next_step(owner: TestClient) -> None:
    page = owner.get("/")
    assert page.status_code == 200
    assert 'href="/import"' in page.text and "Nothing imported yet" in page.text


def test_import_contacts_dataset_flow(owner: TestClient, settings: Settings) -> None:
    job = upload(owner, SAMPLE_EXPORT.read_bytes())
    assert job["state"] == "done", job
    assert job["result"]["dialogs_imported"] == 3
    assert not (settings.data_dir / "uploads").exists() or not any(
        (settings.data_dir / "uploads").iterdir()
    )
    assert owner.get(f"/jobs/{job['id']}").status_code == 200

    contacts = owner.get("/contacts").text
    for name in ("Маша", "Dan Whitaker", "Мама"):
        assert name in contacts
    assert "BotFather" not in contacts  # only personal chats are imported
    assert "3 of 3 chats are used" in contacts

    with Session(get_engine(settings)) as db:
        mum = db.exec(select(Dialog).where(Dialog.name == "Мама")).one()
    assert owner.post(f"/contacts/{mum.id}/exclude").status_code == 303
    assert "2 of 3 chats are used" in owner.get("/contacts").text

    assert 'action="/pipeline"' in owner.get("/").text
    started = owner.post("/dataset")
    assert started.status_code == 303
    job = follow_job(owner, started.headers["location"])
    assert job["state"] == "done", job
    assert job["progress"]["done"] == job["progress"]["total"]

    page = owner.get("/dataset").text
    assert "Scrub report" in page and "Preview" in page
    stats = job["result"]
    assert f"{stats['samples_train']} train" in page
    report = page.split("Scrub report", 1)[1].split("Preview", 1)[0]
    for kind, count in stats["scrub_totals"].items():
        assert re.search(rf"&lt;{kind}&gt;</mark></td><td class=\"num\">{count}<", report)
    assert page.count('<article class="sample">') == 8


def test_preview_marks_placeholders_and_escapes_the_rest(
    owner: TestClient, settings: Settings
) -> None:
    directory = settings.data_dir / "dataset"
    directory.mkdir(parents=True)
    plain = {"instruction": "You are Alex.", "input": "Anna: hi", "output": "hello"}
    secret = {
        "instruction": "You are Alex.",
        "input": "Anna: mail me at <EMAIL> <b>now</b>",
        "output": "call <PHONE>, not &lt;EMAIL&gt; <script>alert(1)</script>",
    }
    samples = [plain] * 20 + [secret]
    (directory / "train.json").write_text(json.dumps(samples))
    stats = {"samples_train": 21, "samples_val": 0, "dialogs_used": 1, "messages": 42,
             "sessions": 3, "length_unit": "chars", "lengths": None, "warnings": [],
             "scrub_totals": {"EMAIL": 1, "PHONE": 1}, "tokenizer": None, "max_seq_length": 512,
             "chars_per_token": 3, "gap_seconds": 86_400, "min_messages": 1, "since": None,
             "until": None, "val_fraction": 0.1, "seed": 42}  # fmt: skip
    (directory / "stats.json").write_text(json.dumps(stats))

    page = owner.get("/dataset").text
    preview = page.split("<h2>Preview</h2>", 1)[1]
    assert preview.count('<article class="sample">') == 8
    # The sample with placeholders is shown although it comes after the first eight.
    assert 'at <mark class="ph">&lt;EMAIL&gt;</mark> &lt;b&gt;now&lt;/b&gt;' in preview
    assert 'call <mark class="ph">&lt;PHONE&gt;</mark>, not &amp;lt;EMAIL&amp;gt;' in preview
    assert "<script>" not in preview and "&lt;script&gt;alert(1)" in preview


def test_a_broken_export_fails_its_job_clearly_and_stores_nothing(
    owner: TestClient, settings: Settings
) -> None:
    whole = SAMPLE_EXPORT.read_bytes()
    job = upload(owner, whole[: len(whole) // 2])  # a copy cut short
    assert job["state"] == "failed"
    assert "not valid JSON" in job["error"] and "Export again" in job["error"]
    assert _message_count(settings) == 0
    assert not any((settings.data_dir / "uploads").iterdir())
    failed_page = owner.get("/").text
    assert "The last import failed" in failed_page


def test_unknown_job_and_page_give_clear_errors(owner: TestClient) -> None:
    missing = owner.get("/jobs/999", headers={"Accept": "text/html"})
    assert missing.status_code == 404 and "There is no job 999" in missing.text
    assert owner.get("/nope", headers={"Accept": "text/html"}).status_code == 404


def test_train_without_base_model_says_how_to_get_one(
    owner: TestClient, settings: Settings
) -> None:
    # Before any dataset: both ways on, by hand or the dashboard's one button.
    page = owner.get("/train").text
    assert 'href="/dataset"' in page and "Train my twin" in page and 'href="/"' in page
    (settings.data_dir / "dataset").mkdir(parents=True)
    (settings.data_dir / "dataset" / "train.json").write_text("[]")
    page = owner.get("/train").text
    assert "litgpt download tiiuae/falcon-7b" in page
    assert "Build the demo model" in page
    refused = owner.post("/train", headers={"Accept": "text/html"})
    assert refused.status_code == 400 and "no base model" in refused.text


API_HASH = "0f" * 16


def _connect_page_with_credentials(owner: TestClient, server: object) -> None:
    owner.app.state.twin.telegram_client_factory = server.client_factory  # type: ignore[attr-defined]
    page = owner.get("/telegram").text
    assert 'action="/telegram/credentials"' in page
    bad = owner.post("/telegram/credentials", data={"api_id": "1234567", "api_hash": "nope"})
    assert bad.status_code == 400 and "32 hex characters" in bad.text
    saved = owner.post("/telegram/credentials", data={"api_id": "1234567", "api_hash": API_HASH})
    assert saved.status_code == 303


def test_telegram_login_with_code_and_two_step_password(
    owner: TestClient, settings: Settings
) -> None:
    from tgserver import CODE, TelegramServer

    from twin.models import Owner

    server = TelegramServer(password="correct horse", password_hint="horse")
    _connect_page_with_credentials(owner, server)
    pages = [owner.get("/telegram").text]
    assert 'action="/telegram/phone"' in pages[-1]
    bad_phone = owner.post("/telegram/phone", data={"phone": "12"})
    assert bad_phone.status_code == 400 and "country code" in bad_phone.text
    assert owner.post("/telegram/phone", data={"phone": "+44 7911 123456"}).status_code == 303
    pages.append(owner.get("/telegram").text)
    assert "+447911123456" in pages[-1] and 'action="/telegram/code"' in pages[-1]
    wrong = owner.post("/telegram/code", data={"code": "11111"})
    assert wrong.status_code == 400 and "code is wrong" in wrong.text
    assert owner.post("/telegram/code", data={"code": CODE}).status_code == 303
    pages.append(owner.get("/telegram").text)
    assert "Two-step verification" in pages[-1] and "hint: horse" in pages[-1]
    wrong = owner.post("/telegram/password", data={"password": "battery staple"})
    assert wrong.status_code == 400 and "password is wrong" in wrong.text
    assert owner.post("/telegram/password", data={"password": "correct horse"}).status_code == 303
    pages.append(owner.get("/telegram").text)
    assert "Connected as <strong>Olga" in pages[-1]
    # Secrets never reach the browser, and the API hash rests encrypted.
    for page in pages:
        assert API_HASH not in page and CODE not in page and "correct horse" not in page
    with Session(get_engine(settings)) as db:
        stored = db.get(Owner, 1)
        assert stored is not None and stored.session_encrypted and stored.api_hash_encrypted
        assert API_HASH not in stored.api_hash_encrypted


def test_telegram_login_with_qr_code(owner: TestClient) -> None:
    from tgserver import TelegramServer

    server = TelegramServer()
    _connect_page_with_credentials(owner, server)
    assert owner.post("/telegram/qr").status_code == 303
    page = owner.get("/telegram").text
    assert "Scan with your phone" in page and "<svg" in page and "tg://" not in page
    pending = next(iter(owner.app.state.twin.telegram_logins.values()))  # type: ignore[attr-defined]
    assert server.scan_qr(pending["qr_url"])
    with owner.stream("GET", "/telegram/qr/events") as response:
        body = "".join(response.iter_text())
    assert "event: next" in body
    assert "Connected as" in owner.get("/telegram").text


def test_a_dead_training_process_shows_as_failed_not_forever_running(
    owner: TestClient, settings: Settings
) -> None:
    import subprocess
    import sys

    from twin.jobs import start_job

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    job = start_job(settings=settings, kind="train", params={}, pid=int(gone.stdout))
    last = follow_job(owner, f"/jobs/{job.id}")
    assert last["state"] == "failed" and "stopped without finishing" in last["error"]


def test_the_demo_model_is_built_as_a_job_and_labelled(
    owner: TestClient, settings: Settings
) -> None:
    from trainhelpers import make_dataset

    make_dataset(settings.dataset_dir, train=16, val=4)
    bad = owner.post(
        "/train/demo-model", data={"pretrain_steps": "lots"}, headers={"Accept": "text/html"}
    )
    assert bad.status_code == 400 and "whole number" in bad.text
    started = owner.post("/train/demo-model", data={"pretrain_steps": "3"})
    assert started.status_code == 303
    job = follow_job(owner, started.headers["location"])
    assert job["state"] == "done", job
    assert job["progress"]["done"] == job["progress"]["total"] == 3
    assert job["progress"]["eta_seconds"] is None and "left" not in job["detail"]
    page = owner.get("/train").text
    assert "twin-tiny" in page and "demo model" in page and 'name="max_steps"' in page
    refused = owner.post("/train", data={"max_steps": "-1"}, headers={"Accept": "text/html"})
    assert refused.status_code == 400 and "whole number" in refused.text


def test_an_upload_that_is_not_json_gets_a_plain_message(
    owner: TestClient, settings: Settings
) -> None:
    refused = owner.post(
        "/import", content=b"PK\x03\x04 a zip file", headers={"Content-Type": "application/json"}
    )
    assert refused.status_code == 400
    body = refused.json()
    assert body["detail"] == "This file is not a Telegram export: it is not valid JSON."
    assert "Machine-readable JSON" in body["hint"] and "lexical" not in refused.text
    assert not any((settings.data_dir / "uploads").iterdir())
