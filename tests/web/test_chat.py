"""Chat: conversations kept on disk, listed and reopened; talk as any contact; regenerate;
sampling controls; a reply from the real tiny model; a client that leaves frees the model."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from twin.config import Settings
from twin.web.model import get_twin

from .conftest import log_in


class FakeTwin:
    """Stands in for the model where the model is not what a test is about."""

    name = "fake-run"

    def __init__(self, pieces: list[str] | None = None) -> None:
        self.pieces = pieces or ["ok", ", see ", "you at 8"]
        self.calls: list[dict] = []

    def stream_reply(
        self, *, context: list, me: str, peer: str, **sampling: object
    ) -> Iterator[str]:
        self.calls.append({"context": context, "me": me, "peer": peer, **sampling})
        return iter(self.pieces)


def events_of(body: str) -> list[tuple[str, dict]]:
    """``(event name, data)`` pairs of an SSE body."""
    parsed = []
    for raw in body.strip().split("\n\n"):
        name = next((ln[7:] for ln in raw.splitlines() if ln.startswith("event: ")), "message")
        data = next(ln[6:] for ln in raw.splitlines() if ln.startswith("data: "))
        parsed.append((name, json.loads(data)))
    return parsed


def ask(client: TestClient, **body: object) -> list[tuple[str, dict]]:
    with client.stream("POST", "/chat/reply", json=body) as response:
        assert response.status_code == 200, response.read()
        return events_of("".join(response.iter_text()))


def test_conversations_are_kept_listed_and_continued(
    owner: TestClient, settings: Settings, finished_run: Path
) -> None:
    fake = FakeTwin()
    owner.app.dependency_overrides[get_twin] = lambda: fake  # type: ignore[attr-defined]

    events = ask(owner, peer="Anna", text="are you coming?", temperature=0.3, top_k=0)
    names = [name for name, _ in events]
    assert names[0] == "conversation" and names[-1] == "done"
    assert set(names[1:-1]) == {"message"}  # pieces that come at once may share an event
    assert "".join(d["text"] for n, d in events if n == "message") == "ok, see you at 8"
    conversation_id = events[0][1]["id"]
    assert fake.calls[0]["temperature"] == 0.3 and fake.calls[0]["top_k"] is None
    stored = settings.data_dir / "conversations" / f"{conversation_id}.json"
    assert stored.stat().st_mode & 0o777 == 0o600

    # Listed, and reopened with both messages.
    page = owner.get("/chat").text
    assert "are you coming?" in page and f'href="/chat/{conversation_id}"' in page
    reopened = owner.get(f"/chat/{conversation_id}").text
    assert '<li class="theirs">are you coming?</li>' in reopened
    assert '<li class="mine">ok, see you at 8</li>' in reopened

    # Talk to the twin as someone else: every earlier message of the other side is re-tagged.
    ask(owner, conversation_id=conversation_id, peer="Dan Whitaker", text="sure?", top_k=7)
    context = fake.calls[-1]["context"]
    assert [(t.speaker, t.text) for t in context] == [
        ("Dan Whitaker", "are you coming?"), ("Me", "ok, see you at 8"), ("Dan Whitaker", "sure?"),
    ]  # fmt: skip
    assert fake.calls[-1]["peer"] == "Dan Whitaker" and fake.calls[-1]["top_k"] == 7

    # Regenerate: my last reply is taken back and written again, not added.
    fake.pieces = ["maybe"]
    ask(owner, conversation_id=conversation_id, peer="Dan Whitaker", regenerate=True)
    assert [t.text for t in fake.calls[-1]["context"]][-1] == "sure?"
    saved = json.loads(stored.read_text())
    assert [(t["text"], t["mine"]) for t in saved["turns"]] == [
        ("are you coming?", False), ("ok, see you at 8", True), ("sure?", False), ("maybe", True),
    ]  # fmt: skip

    assert owner.post(f"/chat/{conversation_id}/delete").status_code == 303
    assert not stored.exists()
    assert owner.get(f"/chat/{conversation_id}").status_code == 404


def test_bad_chat_requests_are_refused_clearly(owner: TestClient, finished_run: Path) -> None:
    owner.app.dependency_overrides[get_twin] = lambda: FakeTwin()  # type: ignore[attr-defined]
    empty = owner.post("/chat/reply", json={"peer": "Anna", "text": "   "})
    assert empty.status_code == 400 and "empty" in empty.json()["detail"]
    nothing = owner.post("/chat/reply", json={"peer": "Anna", "regenerate": True})
    assert nothing.status_code == 400 and "nothing to reply to" in nothing.json()["detail"]
    hot = owner.post("/chat/reply", json={"peer": "Anna", "text": "hi", "temperature": 5})
    assert hot.status_code == 422
    for bad_id in ("../../secret", "nope"):
        missing = owner.post(
            "/chat/reply", json={"conversation_id": bad_id, "peer": "A", "text": "x"}
        )
        assert missing.status_code == 404


def test_chat_without_a_finished_run_explains(owner: TestClient) -> None:
    assert "No training run has finished yet" in owner.get("/chat").text
    response = owner.post("/chat/reply", json={"peer": "Anna", "text": "hi"})
    assert response.status_code == 400
    assert (
        "No training run" in response.json()["detail"] and "twin train" in response.json()["hint"]
    )


def test_the_real_model_streams_a_reply_that_is_kept(
    owner: TestClient, settings: Settings, finished_run: Path
) -> None:
    events = ask(owner, peer="Anna", text="do you like tea?", temperature=0)
    assert events[-1][0] == "done"
    reply = "".join(d["text"] for n, d in events if n == "message")
    saved = json.loads(next((settings.data_dir / "conversations").glob("*.json")).read_text())
    assert saved["turns"][-1] == {"text": reply.strip(), "mine": True}
    assert saved["run_id"] == finished_run.name


class EndlessTwin:
    """Writes forever, holding a lock while it does, like the real model."""

    name = "endless"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.closed = threading.Event()

    def stream_reply(self, **_: object) -> Iterator[str]:
        def pieces() -> Iterator[str]:
            with self.lock:
                try:
                    while True:
                        time.sleep(0.01)
                        yield "la "
                finally:
                    self.closed.set()

        return pieces()


def test_a_client_that_leaves_stops_the_generation(served: tuple[str, object]) -> None:
    base_url, app = served
    endless = EndlessTwin()
    app.dependency_overrides[get_twin] = lambda: endless  # type: ignore[attr-defined]
    with httpx.Client(base_url=base_url, follow_redirects=False, timeout=10) as client:
        log_in(client)
        body = {"peer": "Anna", "text": "talk to me"}
        with client.stream("POST", "/chat/reply", json=body) as response:
            lines = response.iter_lines()
            assert any(line.startswith('data: {"text"') for line in lines)
        # The connection is closed: the generator is closed and the model's lock is free.
        assert endless.closed.wait(timeout=10)
        assert endless.lock.acquire(timeout=5)


def test_the_chat_samples_with_twins_defaults_until_told(
    owner: TestClient, finished_run: Path
) -> None:
    from twin.chat.defaults import DEFAULT_TEMPERATURE, DEFAULT_TOP_K

    fake = FakeTwin()
    owner.app.dependency_overrides[get_twin] = lambda: fake  # type: ignore[attr-defined]
    page = owner.get("/chat").text
    assert f'name="temperature" min="0" max="2" step="0.1" value="{DEFAULT_TEMPERATURE}"' in page
    assert f'name="top_k" min="0" max="1000" step="1" value="{DEFAULT_TOP_K}"' in page
    events = ask(owner, peer="Anna", text="hi")
    assert (fake.calls[0]["temperature"], fake.calls[0]["top_k"]) == (DEFAULT_TEMPERATURE, 50)
    reopened = owner.get(f"/chat/{events[0][1]['id']}").text
    assert f'step="0.1" value="{DEFAULT_TEMPERATURE}"' in reopened
    ask(owner, conversation_id=events[0][1]["id"], peer="Anna", text="ok?", temperature=0.4)
    assert 'step="0.1" value="0.4"' in owner.get(f"/chat/{events[0][1]['id']}").text
