"""The container's entrypoint outside Docker, and the web server killed in the middle of a job.

``docker/entrypoint.sh`` runs here exactly as the image runs it (with a temp data dir and a free
port on 127.0.0.1): it must migrate the database and serve the login page. Then the server is
SIGKILLed while it runs an import (a thread of the server: the job dies with it and must show as
failed, not resumable, after a restart, with nothing half-imported and its upload removed) and
while a training job runs (its own process: it survives the server and finishes; the restarted
server shows it running).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import connect, db_file, integrity, make_export, write_export

from twin.config import Settings
from twin.jobs import get_job
from twin.models import JobState

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
PASSWORD = "correct horse battery"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``docker/entrypoint.sh`` in a subprocess, with a client that can log in."""

    def __init__(self, data_dir: Path, port: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
        env.update(
            TWIN_DATA_DIR=str(data_dir),
            TWIN_PORT=str(port),
            TWIN_HOST="127.0.0.1",  # the image says 0.0.0.0; a test stays on loopback
            HF_HUB_OFFLINE="1",
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        )
        self.log = data_dir.parent / f"server-{port}-{time.monotonic_ns()}.log"
        self.log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            ["/bin/sh", str(ENTRYPOINT)],
            env=env,
            cwd=data_dir.parent,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.url, timeout=30)
        try:
            self._wait_until_up(deadline=time.monotonic() + 120)
        except BaseException:
            # A server that never came up is still a process: don't leave it running.
            if self.process.poll() is None:
                self.kill()
            raise

    def _wait_until_up(self, *, deadline: float) -> None:
        while True:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if self.http.get("/login").status_code in (200, 303):
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)

    def log_in(self) -> None:
        first = self.http.get("/login", follow_redirects=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', first.text)
        assert token, first.text
        path = "/setup" if first.url.path == "/setup" else "/login"
        form = {"password": PASSWORD, "confirm": PASSWORD, "csrf_token": token.group(1)}
        assert self.http.post(path, data=form).status_code == 303
        meta = re.search(r'name="csrf-token" content="([^"]+)"', self.http.get("/").text)
        assert meta
        self.http.headers["X-CSRF-Token"] = meta.group(1)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.close()

    def stop(self) -> bool:
        """SIGTERM (what ``docker stop`` sends); True when uvicorn shut down cleanly."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.close()
        # uvicorn re-raises the signal after its graceful shutdown, so -15 is a clean stop too.
        return code in (0, -signal.SIGTERM) and "Finished server process" in self.log.read_text()

    def close(self) -> None:
        self.http.close()
        self.log_file.close()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[type[Server]]:
    started: list[Server] = []
    port = _free_port()

    class Started(Server):
        def __init__(self, data_dir: Path = tmp_path / "data") -> None:
            super().__init__(data_dir, port)
            started.append(self)

    yield Started
    for server in started:
        if server.process.poll() is None:
            server.kill()


def test_entrypoint_migrates_and_serves_the_login_page(
    start_server: type[Server], tmp_path: Path
) -> None:
    server = start_server()
    first = server.http.get("/login", follow_redirects=True)
    assert first.status_code == 200 and first.url.path == "/setup"
    database = db_file(tmp_path / "data")
    with connect(database) as connection:
        (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision
    assert database.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
    assert server.stop()


def _one_job(data_dir: Path) -> int:
    with connect(db_file(data_dir)) as connection:
        (job_id,) = connection.execute("SELECT max(id) FROM job").fetchone()
    return int(job_id)


def test_server_killed_mid_import_leaves_a_failed_job_and_no_upload(
    start_server: type[Server], tmp_path: Path
) -> None:
    server = start_server()
    server.log_in()
    export = make_export(chats=8, messages=15_000, seed=4)
    body = write_export(tmp_path / "big.json", export).read_bytes()
    started = server.http.post("/import", content=body)
    assert started.status_code == 201, started.text
    data_dir = tmp_path / "data"
    job_id = _one_job(data_dir)
    settings = Settings(data_dir=data_dir)
    assert get_job(settings=settings, job_id=job_id).state == JobState.running
    server.kill()  # the import is one transaction and takes a few seconds: it is mid-way

    assert integrity(db_file(data_dir)) == "ok"
    with connect(db_file(data_dir)) as connection:
        (messages,) = connection.execute("SELECT count(*) FROM message").fetchone()
    assert messages == 0, "a killed import left part of itself"
    assert list((data_dir / "uploads").iterdir()), "the upload should still be there"
    server = start_server()
    server.log_in()
    assert server.http.get(f"/jobs/{job_id}").status_code == 200
    assert list((data_dir / "uploads").iterdir()) == []  # the restart removed the stale upload

    # Nothing blocks a second attempt: it marks the dead job failed, then imports everything.
    again = server.http.post("/import", content=body)
    assert again.status_code == 201, again.text
    job = get_job(settings=settings, job_id=job_id)
    assert job.state == JobState.failed and "stopped without finishing" in (job.error or "")
    # An import is all or nothing and its upload is gone: it is not called resumable.
    assert "Upload the export again" in (job.error or "")
    assert json.loads(job.result_json or "{}")["resumable"] is False
    deadline = time.monotonic() + 120
    while get_job(settings=settings, job_id=job_id + 1).state == JobState.running:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert get_job(settings=settings, job_id=job_id + 1).state == JobState.done
    with connect(db_file(data_dir)) as connection:
        (messages,) = connection.execute("SELECT count(*) FROM message").fetchone()
    assert messages == 8 * 15_000
    assert server.stop()


def test_training_worker_survives_a_killed_server(
    start_server: type[Server], tmp_path: Path
) -> None:
    from trainhelpers import make_dataset, make_tiny_model

    data_dir = tmp_path / "data"
    dataset = make_dataset(data_dir / "dataset", train=64, val=8)
    make_tiny_model(data_dir / "checkpoints" / "twin-tiny", dataset_dir=dataset)
    server = start_server()
    server.log_in()
    assert server.http.post("/train").status_code == 303
    settings = Settings(data_dir=data_dir)
    job_id = _one_job(data_dir)
    server.kill()

    server = start_server()
    server.log_in()
    assert server.http.get(f"/jobs/{job_id}").status_code == 200
    job = get_job(settings=settings, job_id=job_id)
    # The worker lives on: still starting (queued until it has loaded torch), running or done.
    working = (JobState.queued, JobState.running)
    assert job.state in (*working, JobState.done), job.error
    deadline = time.monotonic() + 240
    while job.state in working:
        assert time.monotonic() < deadline, (data_dir / "jobs" / f"{job_id}.log").read_text()
        time.sleep(0.5)
        job = get_job(settings=settings, job_id=job_id)
    assert job.state == JobState.done, job.error
    assert (data_dir / "jobs" / f"{job_id}.log").stat().st_mode & 0o777 == 0o600
    assert server.stop()


def test_a_dead_import_job_shows_as_failed_after_a_restart(
    owner: object, settings: Settings
) -> None:
    from fastapi.testclient import TestClient

    from twin.jobs import start_job

    assert isinstance(owner, TestClient)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    job = start_job(settings=settings, kind="import", pid=int(gone.stdout))
    with owner.stream("GET", f"/jobs/{job.id}/events") as response:
        first = next(line for line in response.iter_lines() if line.startswith("data: "))
    assert json.loads(first.removeprefix("data: "))["state"] == "failed"
