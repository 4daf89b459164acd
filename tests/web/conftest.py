"""Web fixtures: the real app on a migrated database, anonymous and logged-in clients."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
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


def log_in(client: httpx.Client) -> None:
    """Set the owner password and keep the session's CSRF token in ``client.headers``."""
    set_password(client)
    match = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text)
    assert match
    client.headers["X-CSRF-Token"] = match.group(1)


@pytest.fixture
def owner(client: TestClient) -> TestClient:
    """The owner's browser: password set, logged in; ``owner.headers`` carries the CSRF token."""
    log_in(client)
    return client


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real finished run (2 LoRA steps) on a tiny base model and the style dataset, built once.

    Tests copy it into their own data dir with `finished_run`; the base model and the dataset
    stay here (the run record points at them by absolute path).
    """
    from trainhelpers import make_dataset, make_tiny_model, train_here

    from twin.runs import TrainingConfig

    root = tmp_path_factory.mktemp("web-run")
    dataset = make_dataset(root / "dataset", train=32, val=8)
    base = make_tiny_model(root / "base", dataset_dir=dataset)
    config = TrainingConfig(max_steps=2, micro_batch_size=4, global_batch_size=4, warmup_steps=1)
    record = train_here(
        settings=Settings(data_dir=root / "data"),
        base_model_dir=base,
        dataset_dir=dataset,
        run_id="20240102-030405",
        config=config,
    )
    return root / "data" / "runs" / record.run_id


@pytest.fixture
def finished_run(db: Settings, trained_run: Path) -> Path:
    """The trained run, copied into this test's data dir (so chat and the API find it)."""
    target = db.data_dir / "runs" / trained_run.name
    shutil.copytree(trained_run, target)
    return target


@pytest.fixture
def served(db: Settings) -> Iterator[tuple[str, FastAPI]]:
    """A fresh app under a real uvicorn on 127.0.0.1 (a thread), for streaming and disconnects
    that TestClient cannot show: ``(base_url, app)``."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(db.model_copy(update={"port": port}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    thread.join(timeout=10)
