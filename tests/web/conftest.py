"""Web fixtures: the real app on a migrated database, anonymous and logged-in clients."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from twin.config import Settings
from twin.web import create_app

PASSWORD = "correct horse battery"


@pytest.fixture
def app(db: Settings) -> FastAPI:
    return create_app(db)


@pytest.fixture
def base_url(db: Settings) -> str:
    return f"http://127.0.0.1:{db.port}"


@pytest.fixture
def client(app: FastAPI, base_url: str) -> Iterator[TestClient]:
    """An anonymous browser (no owner password set yet)."""
    with TestClient(app, base_url=base_url, follow_redirects=False) as client:
        yield client


def form_token(client: TestClient, path: str) -> str:
    """The hidden CSRF field of the form on ``path``."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert match, f"no CSRF field on {path}"
    return match.group(1)


def set_password(client: TestClient, password: str = PASSWORD) -> None:
    response = client.post(
        "/setup",
        data={
            "password": password,
            "confirm": password,
            "csrf_token": form_token(client, "/setup"),
        },
    )
    assert response.status_code == 303, response.text


@pytest.fixture
def owner(client: TestClient) -> TestClient:
    """The owner's browser: password set, logged in; ``owner.headers`` carries the CSRF token."""
    set_password(client)
    match = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text)
    assert match
    client.headers["X-CSRF-Token"] = match.group(1)
    return client
