"""A remote OpenAI-compatible backend (``TWIN_REMOTE_URL``) answers for twin's /v1 and chat.

The remote is a stand-in server that speaks OpenAI's ``/v1/completions`` protocol (streamed
server-sent events, bearer key, errors in OpenAI's shape) under uvicorn on 127.0.0.1. Like a
model, it keeps writing past my turn (into the other person's next tag), and it ignores
``stop``: twin must cut the reply itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.testclient import TestClient
from test_export import finished_run
from trainhelpers import make_tiny_model
from webhelpers import free_port, log_in, uvicorn_in_thread

from twin.chat.remote import RemoteClient
from twin.config import Settings
from twin.errors import ChatError
from twin.prepare.format import (
    Turn,
    render_context,
    render_instruction,
    render_prompt,
    stop_sequences,
)
from twin.web import create_app

KEY = "sekret-key"
REPLY = "yes tea, love it :)"
MODEL_OUTPUT = ["ye", "s tea,", " love it", " :)\nAn", "na: and you?", "\nMe: me too"]


class StandIn:
    """The stand-in server: records each request's body, streams ``MODEL_OUTPUT``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.output = MODEL_OUTPUT
        self.app = FastAPI()

        @self.app.post("/v1/completions")
        async def completions(request: Request) -> Any:
            if request.headers.get("authorization") != f"Bearer {KEY}":
                error = {"message": "Invalid API key.", "type": "authentication_error"}
                return JSONResponse({"error": error}, status_code=401)
            body = await request.json()
            self.requests.append(body)

            def events() -> Iterator[str]:
                for piece in self.output:
                    chunk = {"object": "text_completion", "choices": [{"index": 0, "text": piece}]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def stand_in() -> Iterator[tuple[str, StandIn]]:
    server_app = StandIn()
    port = free_port()
    config = uvicorn.Config(server_app.app, host="127.0.0.1", port=port, log_level="warning")
    with uvicorn_in_thread(config):
        yield f"http://127.0.0.1:{port}/v1", server_app


@pytest.fixture(scope="module")
def base_without_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A base model dir with tokenizer and config but no weights: the remote has them."""
    base = make_tiny_model(tmp_path_factory.mktemp("remote") / "base")
    (base / "lit_model.pth").unlink()
    return base


def test_client_streams_pieces_with_the_key(stand_in: tuple[str, StandIn]) -> None:
    url, server = stand_in
    pieces = list(RemoteClient(url, api_key=KEY).stream_completion(prompt="hi", model="twin"))
    assert pieces == MODEL_OUTPUT
    assert server.requests[-1] == {"prompt": "hi", "model": "twin", "stream": True}


def test_client_names_a_refused_key_and_an_unreachable_server(
    stand_in: tuple[str, StandIn],
) -> None:
    url, _ = stand_in
    with pytest.raises(ChatError, match="answered 401: Invalid API key") as refused:
        list(RemoteClient(url, api_key="wrong").stream_completion(prompt="hi"))
    assert "TWIN_REMOTE_API_KEY" in (refused.value.hint or "")
    closed = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ChatError, match="Cannot reach the remote model"):
        list(RemoteClient(closed).stream_completion(prompt="hi"))


def _browser(settings: Settings) -> TestClient:
    base_url = f"http://127.0.0.1:{settings.port}"
    return TestClient(create_app(settings), base_url=base_url, follow_redirects=False)


@pytest.fixture
def owner_with_remote(
    db: Settings, stand_in: tuple[str, StandIn], base_without_weights: Path
) -> Iterator[TestClient]:
    finished_run(db.data_dir / "runs", "20240101-000000", base_without_weights)
    settings = db.model_copy(update={"remote_url": stand_in[0], "remote_api_key": KEY})
    with TestClient(
        create_app(settings), base_url=f"http://127.0.0.1:{db.port}", follow_redirects=False
    ) as client:
        log_in(client)
        yield client


def test_v1_answers_from_the_remote_with_twins_prompt(
    owner_with_remote: TestClient, stand_in: tuple[str, StandIn]
) -> None:
    messages = [
        {"role": "user", "content": "hey!", "name": "Anna"},
        {"role": "assistant", "content": "hi anna"},
        {"role": "user", "content": "do you like tea?"},
    ]
    request = {"messages": messages, "temperature": 0, "max_tokens": 24, "seed": 3}
    answer = owner_with_remote.post("/v1/chat/completions", json=request)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == REPLY  # cut before "\nAnna: "
    sent = stand_in[1].requests[-1]
    turns = [
        Turn(speaker="Anna", text="hey!", mine=False),
        Turn(speaker="Me", text="hi anna", mine=True),
        Turn(speaker="Anna", text="do you like tea?", mine=False),
    ]
    instruction = render_instruction(me="Me", peer="Anna")
    assert sent["prompt"] == render_prompt(instruction=instruction, input=render_context(turns))
    assert sent["stop"] == stop_sequences(me="Me", peer="Anna")
    assert (sent["model"], sent["max_tokens"], sent["temperature"], sent["seed"]) == (
        "twin", 24, 0, 3,
    )  # fmt: skip

    streamed = owner_with_remote.post("/v1/chat/completions", json={**request, "stream": True})
    chunks = [
        json.loads(line.removeprefix("data: "))
        for line in streamed.text.splitlines()
        if line.startswith("data: {")
    ]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == REPLY


@pytest.mark.parametrize(
    ("output", "reply"),
    [
        # A small model glues the next speaker's tag to its last word, with no line break.
        (["sure", " thingAnna: see", " you"], "sure thing"),
        # It repeats my own tag, writes a stray byte and ends on a tag cut after its colon.
        (["Me: ", "ok\ufffd, 8", " it is", "Anna:"], "ok, 8 it is"),
        # The prompt's scaffolding after the reply.
        (["fine\n\n### Response:", " more"], "fine"),
    ],
)
def test_remote_replies_are_cut_like_local_ones(
    owner_with_remote: TestClient, stand_in: tuple[str, StandIn], output: list[str], reply: str
) -> None:
    server = stand_in[1]
    server.output = output
    try:
        message = {"role": "user", "content": "see you at 8?", "name": "Anna"}
        request = {"messages": [message], "max_tokens": 24}
        answer = owner_with_remote.post("/v1/chat/completions", json=request)
        streamed = owner_with_remote.post("/v1/chat/completions", json={**request, "stream": True})
    finally:
        server.output = MODEL_OUTPUT
    assert answer.json()["choices"][0]["message"]["content"] == reply
    chunks = [
        json.loads(line.removeprefix("data: "))
        for line in streamed.text.splitlines()
        if line.startswith("data: {")
    ]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == reply


def test_v1_reports_a_remote_failure_in_openai_shape(
    db: Settings, base_without_weights: Path, stand_in: tuple[str, StandIn]
) -> None:
    finished_run(db.data_dir / "runs", "20240101-000000", base_without_weights)
    settings = db.model_copy(update={"remote_url": stand_in[0], "remote_api_key": "wrong"})
    with TestClient(
        create_app(settings), base_url=f"http://127.0.0.1:{db.port}", follow_redirects=False
    ) as client:
        log_in(client)
        answer = client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
        )
    assert answer.status_code == 400
    assert "answered 401: Invalid API key" in answer.json()["error"]["message"]
