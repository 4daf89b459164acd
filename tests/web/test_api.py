"""The OpenAI-compatible API with a token from the Settings page, on the real tiny model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from twin.config import Settings
from twin.web.routers.openai_api import ChatMessage, messages_to_turns

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "name": "Anna", "content": "hey!"},
    {"role": "assistant", "content": "hi anna"},
    {"role": "user", "content": [{"type": "text", "text": "do you like tea?"}]},
]


def create_token(owner: TestClient, settings: Settings) -> str:
    made = owner.post("/settings/token")
    assert made.status_code == 303 and made.headers["location"] == "/settings/token"
    page = owner.get("/settings/token")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    token = re.search(r'<pre class="token" id="new-token">([^<]+)</pre>', page.text)
    assert token and 'data-copy="new-token"' in page.text
    # A reload does not make or show a token again.
    assert token.group(1) not in owner.get("/settings/token").text
    # Shown once: the file holds a digest, and the page never shows the token again.
    stored = (settings.data_dir / "api_token.sha256").read_text()
    assert token.group(1) not in stored
    assert token.group(1) not in owner.get("/settings").text
    return token.group(1)


@pytest.fixture
def api(owner: TestClient, settings: Settings, finished_run: Path) -> TestClient:
    """An API client: no cookies, only the bearer token."""
    token = create_token(owner, settings)
    client = TestClient(owner.app, base_url=str(owner.base_url))
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def sse_chunks(body: str) -> list[str]:
    return [line[6:] for line in body.splitlines() if line.startswith("data: ")]


def test_models_and_completions_streamed_and_not(api: TestClient, finished_run: Path) -> None:
    models = api.get("/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["twin", finished_run.name]

    request = {"model": "twin", "messages": MESSAGES, "temperature": 0, "max_tokens": 24}
    whole = api.post("/v1/chat/completions", json=request)
    assert whole.status_code == 200, whole.text
    completion = whole.json()
    assert completion["object"] == "chat.completion" and completion["model"] == finished_run.name
    assert completion["id"].startswith("chatcmpl-")
    message = completion["choices"][0]["message"]
    assert message["role"] == "assistant" and completion["choices"][0]["finish_reason"] == "stop"
    usage = completion["usage"]
    assert usage["prompt_tokens"] > 10
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    with api.stream(
        "POST", "/v1/chat/completions", json={**request, "model": finished_run.name, "stream": True}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        data = sse_chunks("".join(response.iter_text()))
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert streamed == message["content"]  # greedy: the same reply both ways


def test_errors_come_in_openai_shape(
    api: TestClient, owner: TestClient, settings: Settings
) -> None:
    def error(response: httpx.Response, status: int) -> dict:
        assert response.status_code == status, response.text
        body = response.json()["error"]
        assert set(body) == {"message", "type", "param", "code"}
        return body

    anonymous = TestClient(owner.app, base_url=str(owner.base_url))
    assert error(anonymous.get("/v1/models"), 401)["code"] == "invalid_api_key"
    wrong = anonymous.get("/v1/models", headers={"Authorization": "Bearer nope"})
    assert "Settings page" in error(wrong, 401)["message"]

    missing = api.post("/v1/chat/completions", json={"model": "gpt-4", "messages": MESSAGES})
    body = error(missing, 404)
    assert body["code"] == "model_not_found" and "Models: twin, " in body["message"]
    assert (
        error(api.post("/v1/chat/completions", json={"messages": []}), 400)["param"] == "messages"
    )
    system_only = [{"role": "system", "content": "hi"}]
    assert (
        "nothing to reply to"
        in error(api.post("/v1/chat/completions", json={"messages": system_only}), 400)["message"]
    )
    too_long = {"messages": MESSAGES, "max_tokens": 10**6}
    assert (
        "max_new_tokens" in error(api.post("/v1/chat/completions", json=too_long), 400)["message"]
    )

    # Revoked: the token stops working at once.
    assert owner.post("/settings/token/revoke").status_code == 303
    error(api.get("/v1/models"), 401)


def test_messages_map_to_turns_with_the_configured_peer(
    owner: TestClient, settings: Settings
) -> None:
    from twin.web.model import api_peer_name

    messages = [ChatMessage.model_validate(m) for m in MESSAGES]
    turns, peer = messages_to_turns(messages, me="Olga", default_peer="Friend")
    assert peer == "Anna"
    assert [(t.speaker, t.text, t.mine) for t in turns] == [
        ("Anna", "hey!", False), ("Olga", "hi anna", True), ("Anna", "do you like tea?", False),
    ]  # fmt: skip
    unnamed = [ChatMessage(role="user", content="yo")]
    assert owner.post("/settings/api", data={"peer": "Dan: W."}).status_code == 303
    _, peer = messages_to_turns(unnamed, me="Olga", default_peer=api_peer_name(settings))
    assert peer == "Dan W."


def test_the_official_openai_client_talks_to_the_twin(api: TestClient, finished_run: Path) -> None:
    openai = pytest.importorskip("openai")
    token = api.headers["Authorization"].removeprefix("Bearer ")
    client = openai.OpenAI(api_key=token, base_url=f"{api.base_url}/v1", http_client=api)
    assert [m.id for m in client.models.list()] == ["twin", finished_run.name]
    reply = client.chat.completions.create(
        model="twin", messages=MESSAGES, temperature=0, max_tokens=16
    )  # type: ignore[arg-type]
    stream = client.chat.completions.create(
        model="twin",
        messages=MESSAGES,
        temperature=0,
        max_tokens=16,
        stream=True,  # type: ignore[arg-type]
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert streamed == reply.choices[0].message.content
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=MESSAGES)  # type: ignore[arg-type]
