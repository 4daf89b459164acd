"""Web fixtures: the real app on a migrated database, anonymous and logged-in clients."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

# Re-exported: the web tests import the login helpers from here.
from webhelpers import PASSWORD, form_token, free_port, log_in, set_password, uvicorn_in_thread

from twin.config import Settings
from twin.jobs import ACTIVE_STATES, get_job
from twin.models import JobState
from twin.web import create_app

__all__ = ["PASSWORD", "form_token", "log_in", "set_password"]


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


def wait_for_job(settings: Settings, job_id: int, timeout: float = 120) -> JobState:
    """The job's final state, once it has one."""
    deadline = time.monotonic() + timeout
    while (state := get_job(settings=settings, job_id=job_id).state) in ACTIVE_STATES:
        assert time.monotonic() < deadline, f"job {job_id} still {state.value}"
        time.sleep(0.05)
    return state


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
    from trainhelpers import two_step_run

    return two_step_run(tmp_path_factory.mktemp("web-run"), train=32, val=8)


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
    port = free_port()
    app = create_app(db.model_copy(update={"port": port}))
    with uvicorn_in_thread(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")):
        yield f"http://127.0.0.1:{port}", app
