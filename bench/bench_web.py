"""Web latency under load: p50/p95 per route at 50 concurrent clients on loopback, idle and
while a real (tiny) training job runs in the background.

The app runs under uvicorn (one worker, as `twin serve` runs it) in a child process on a
throw-away data dir holding the sample export; this process drives it with httpx's async
client. Figures depend on the machine's load, so each route is also given as a ratio to a
static file served in the same run, and the second table as a ratio to the idle figures.

    python bench/bench_web.py [--clients 50] [--requests 2000] [--seconds 60] [--no-training]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_EXPORT = ROOT / "samples" / "sample_export" / "result.json"
PASSWORD = "benchmark password"
SERVER = """
import sys, uvicorn
from twin.config import get_settings
from twin.web import create_app
settings = get_settings()
uvicorn.run(create_app(settings), host="127.0.0.1", port=settings.port, log_level="warning")
"""
ROUTES = [
    ("static css", "/static/twin.css", False),
    ("login page (public)", "/login", False),
    ("anonymous API → 401", "/contacts", False),
    ("dashboard", "/", True),
    ("contacts", "/contacts", True),
    ("import page", "/import", True),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare_data(data_dir: Path) -> None:
    os.environ["TWIN_DATA_DIR"] = str(data_dir)
    from twin.config import get_settings
    from twin.db import upgrade_database
    from twin.importer import import_export

    settings = get_settings()
    upgrade_database(settings)
    import_export(settings=settings, path=SAMPLE_EXPORT)


def start_server(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The app under uvicorn in a child process on ``data_dir``; returns it and its base URL."""
    port = _free_port()
    env = {**os.environ, "TWIN_DATA_DIR": str(data_dir), "TWIN_PORT": str(port)}
    server = subprocess.Popen([sys.executable, "-c", SERVER], env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(base + "/static/twin.css", timeout=1)
            return server, base
        except httpx.TransportError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.terminate()
                raise RuntimeError("the server did not start") from None
            time.sleep(0.2)


def _log_in(base: str) -> dict[str, str]:
    with httpx.Client(base_url=base, follow_redirects=False) as client:
        page = client.get("/setup").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token, "no setup form"
        form = {"password": PASSWORD, "confirm": PASSWORD, "csrf_token": token.group(1)}
        response = client.post("/setup", data=form)
        assert response.status_code == 303, response.text
        return dict(client.cookies)


async def _measure(
    base: str, path: str, cookies: dict[str, str], *, clients: int, requests: int, seconds: float
) -> tuple[list[float], float, int]:
    """Latencies (ms) of ``requests`` GETs spread over ``clients`` workers, and the wall time."""
    latencies: list[float] = []
    errors = 0
    remaining = requests
    deadline = time.perf_counter() + seconds
    headers = {"Accept": "application/json" if not cookies and path == "/contacts" else "text/html"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=base, cookies=cookies, headers=headers, limits=limits, timeout=30
    ) as client:

        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                started = time.perf_counter()
                response = await client.get(path)
                latencies.append((time.perf_counter() - started) * 1000)
                errors += response.status_code >= 500

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - started
    return latencies, wall, errors


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _table(
    base: str, cookies: dict[str, str], args: argparse.Namespace, *, against: dict[str, float]
) -> dict[str, float]:
    """Measure every route; print p50/p95, req/s and ratios; return the p50s by route."""
    ratio_label = "p50 × idle" if against else "p50 × static"
    header = f"{'route':<22}{'p50 ms':>9}{'p95 ms':>9}{'req/s':>9}{ratio_label:>14}"
    print(header)
    print("-" * len(header))
    p50s: dict[str, float] = {}
    for name, path, authenticated in ROUTES:
        latencies, wall, errors = asyncio.run(
            _measure(
                base,
                path,
                cookies if authenticated else {},
                clients=args.clients,
                requests=args.requests,
                seconds=args.seconds,
            )
        )
        p50, p95 = _percentile(latencies, 50), _percentile(latencies, 95)
        p50s[name] = p50
        reference = against.get(name) if against else p50s[ROUTES[0][0]]
        note = f"  ({errors} errors)" if errors else ""
        print(
            f"{name:<22}{p50:>9.1f}{p95:>9.1f}{len(latencies) / wall:>9.0f}"
            f"{p50 / (reference or p50):>14.2f}{note}"
        )
    return p50s


def start_background_training(data_dir: Path) -> int:
    """Build the dataset and the demo model, then start a long training job (its own process,
    as the web app starts it); return the job id."""
    from twin.config import get_settings
    from twin.prepare import prepare_dataset
    from twin.runs import TrainingConfig
    from twin.train.tiny import corpus_from_dataset, init_tiny_model
    from twin.train.trainer import TrainingRequest, train

    settings = get_settings()
    assert settings.data_dir == data_dir
    prepare_dataset(settings=settings, out_dir=settings.dataset_dir, min_messages=1)
    base = init_tiny_model(
        out_dir=data_dir / "checkpoints" / "twin-tiny",
        corpus=corpus_from_dataset(settings.dataset_dir),
        pretrain_steps=20,
    )
    config = TrainingConfig(max_steps=100_000, checkpoint_interval=100_000, eval_interval=100_000)
    request = TrainingRequest(base_model_dir=base, dataset_dir=settings.dataset_dir, config=config)
    return train(request, settings=settings, detach=True).job_id or 0


def _wait_until_training(data_dir: Path, job_id: int, *, timeout_s: float = 180) -> None:
    from twin.config import get_settings
    from twin.jobs import get_job

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = get_job(settings=get_settings(), job_id=job_id)
        if job.state.value in ("failed", "cancelled", "done"):
            raise RuntimeError(f"the training job ended early: {job.error}")
        if '"step"' in (job.progress_json or "") and '"step": 0' not in job.progress_json:
            return
        time.sleep(0.5)
    raise RuntimeError("the training job did not start stepping")


def _stop_training(job_id: int) -> None:
    from twin.config import get_settings
    from twin.jobs import get_job, request_cancel

    settings = get_settings()
    request_cancel(settings=settings, job_id=job_id)
    deadline = time.monotonic() + 60
    while get_job(settings=settings, job_id=job_id).state.value in ("queued", "running"):
        if time.monotonic() > deadline:
            pid = get_job(settings=settings, job_id=job_id).pid
            if pid:
                os.kill(pid, 9)
            break
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000, help="per route")
    parser.add_argument("--seconds", type=float, default=60, help="cap per route")
    parser.add_argument("--no-training", action="store_true", help="skip the table under training")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="twin-bench-web-") as tmp:
        data_dir = Path(tmp) / "data"
        _prepare_data(data_dir)
        server, base = start_server(data_dir)
        job_id: int | None = None
        try:
            cookies = _log_in(base)
            print(
                f"{args.clients} concurrent clients, ≤{args.requests} requests per route, "
                f"one uvicorn worker, {os.cpu_count()} CPUs (shared)\n"
            )
            print("Idle:")
            idle = _table(base, cookies, args, against={})
            if not args.no_training:
                job_id = start_background_training(data_dir)
                _wait_until_training(data_dir, job_id)
                print(f"\nWhile training job {job_id} runs (tiny model, its own process):")
                _table(base, cookies, args, against=idle)
        finally:
            if job_id is not None:
                _stop_training(job_id)
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
