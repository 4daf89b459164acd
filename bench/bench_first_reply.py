"""Time from a new user's first visit to the twin's first chat reply, per stage, for the sample
export, through the web app as a browser drives it: set the password, upload the export, press
"Train my twin" (dataset → demo base model → training), send a chat message.

The app runs under uvicorn in a child process on a throw-away data dir (as `bench_web.py` runs
it); this process is the browser, over HTTP. The pipeline's own stage timings come from its job.
Figures depend on the machine and its load; the last column gives each stage's share of the
total, which moves less between machines.

    python bench/bench_first_reply.py [--max-steps 30] [--base CHECKPOINT_DIR]

With ``--base`` (e.g. an already converted Gemma 3 270M) the app trains on that model
(``TWIN_BASE_MODEL_DIR``) instead of building the demo one; the conversion is not timed here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_web import PASSWORD, SAMPLE_EXPORT, start_server


def _csrf(client: httpx.Client, path: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert match, f"no form on {path}"
    return match.group(1)


def _follow(client: httpx.Client, url: str) -> dict:
    """Read a job's event stream to its end; return the last event."""
    last: dict = {}
    with client.stream("GET", f"{url}/events", timeout=None) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                last = json.loads(line.removeprefix("data: "))
    assert last.get("state") == "done", last
    return last


def _migrate(data_dir: Path) -> None:
    os.environ["TWIN_DATA_DIR"] = str(data_dir)
    from twin.config import get_settings
    from twin.db import upgrade_database

    upgrade_database(get_settings())


def run(max_steps: int) -> list[tuple[str, float]]:
    """The stages and their seconds, in order."""
    stages: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        _migrate(Path(tmp))  # as `twin serve` does before it serves
        server, base = start_server(Path(tmp))
        stages.append(("server start", time.perf_counter() - started))
        try:
            with httpx.Client(base_url=base, follow_redirects=False, timeout=600) as client:
                mark = time.perf_counter()
                form = {"password": PASSWORD, "confirm": PASSWORD}
                form["csrf_token"] = _csrf(client, "/setup")
                assert client.post("/setup", data=form).status_code == 303
                csrf = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text)
                assert csrf
                client.headers["X-CSRF-Token"] = csrf.group(1)
                stages.append(("first visit: password, dashboard", time.perf_counter() - mark))

                mark = time.perf_counter()
                upload = client.post(
                    "/import",
                    content=SAMPLE_EXPORT.read_bytes(),
                    headers={"Content-Type": "application/json"},
                )
                assert upload.status_code == 201, upload.text
                _follow(client, upload.json()["url"])
                stages.append(("upload + import the export", time.perf_counter() - mark))

                mark = time.perf_counter()
                started_job = client.post("/pipeline", data={"max_steps": str(max_steps)})
                assert started_job.status_code == 303, started_job.text
                job = _follow(client, started_job.headers["location"])
                total = time.perf_counter() - mark
                durations = job["result"]["durations"]
                for stage in job["progress"]["stages"]:
                    if stage["name"] in durations:
                        label = f"Train my twin: {stage['label'].lower()}"
                        stages.append((label, durations[stage["name"]]))
                stages.append(("Train my twin: between stages", total - sum(durations.values())))

                mark = time.perf_counter()
                first: float | None = None
                body = {"text": "привет! как дела?", "peer": "Маша", "temperature": 0.8}
                with client.stream("POST", "/chat/reply", json=body) as response:
                    assert response.status_code == 200
                    for line in response.iter_lines():
                        if line.startswith("data: ") and first is None:
                            first = time.perf_counter() - mark
                assert first is not None, "no reply"
                stages.append(("chat: first piece of the first reply", first))
        finally:
            server.terminate()
            server.wait(timeout=30)
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=30, help="training steps (default 30)")
    parser.add_argument("--base", type=Path, help="base model checkpoint dir (default: demo)")
    args = parser.parse_args()
    if args.base:
        os.environ["TWIN_BASE_MODEL_DIR"] = str(args.base.resolve())  # the server inherits it
    stages = run(args.max_steps)
    total = sum(seconds for _, seconds in stages)
    width = max(len(name) for name, _ in stages)
    print(f"{'stage':<{width}}  {'seconds':>8}  {'share':>6}")
    for name, seconds in stages:
        print(f"{name:<{width}}  {seconds:8.1f}  {seconds / total:6.1%}")
    print(f"{'first visit → first reply':<{width}}  {total:8.1f}")


if __name__ == "__main__":
    main()
