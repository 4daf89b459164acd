"""Helpers for tests that talk to a web app: the owner's login, a free port, and an ASGI app
under a real uvicorn in a thread (for streaming, disconnects and browsers, which TestClient
cannot show). Import them from any test (``from webhelpers import …``)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi.testclient import TestClient

PASSWORD = "correct horse battery"


def form_token(client: TestClient | httpx.Client, path: str) -> str:
    """The hidden CSRF field of the form on ``path``."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert match, f"no CSRF field on {path}"
    return match.group(1)


def set_password(client: TestClient | httpx.Client, password: str = PASSWORD) -> None:
    response = client.post(
        "/setup",
        data={
            "password": password,
            "confirm": password,
            "csrf_token": form_token(client, "/setup"),
        },
    )
    assert response.status_code == 303, response.text


def log_in(client: TestClient | httpx.Client, password: str = PASSWORD) -> None:
    """Set the owner password and keep the session's CSRF token in ``client.headers``."""
    set_password(client, password)
    match = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text)
    assert match
    client.headers["X-CSRF-Token"] = match.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def uvicorn_in_thread(config: uvicorn.Config) -> Iterator[uvicorn.Server]:
    """Serve ``config`` (its app, host and port) from a thread until the block ends."""
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=30)
