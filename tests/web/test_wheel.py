"""A built wheel carries the web pages and the migrations: installed into a fresh venv (not an
editable install of this checkout), ``twin serve`` serves every page."""

from __future__ import annotations

import os
import site
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from .conftest import log_in

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["/", "/telegram", "/import", "/contacts", "/dataset", "/train", "/chat", "/fidelity",
         "/assist", "/settings"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.xdist_group("wheel")
@pytest.mark.timeout(300)
def test_an_installed_wheel_serves_every_page(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True, cwd=tmp_path, capture_output=True,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("twin-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, package in (("web", "twin/web/assets"), ("migrations", "twin/db_migrations")):
        for source in (ROOT / folder).glob("**/*.*"):
            shipped = f"{package}/{source.relative_to(ROOT / folder).as_posix()}"
            if source.suffix != ".pyc":
                assert shipped in names, f"{source.relative_to(ROOT)} is not in the wheel"

    # The venv gets twin only from the wheel (installed while the venv sees nothing else), then
    # this environment's dependencies through a path line: none of their .pth hooks run, so
    # neither does the editable install of this checkout.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWIN_", "PYTHON"))}
    env.update(TWIN_DATA_DIR=str(tmp_path / "data"), HF_HUB_OFFLINE="1")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
         str(wheel)],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    (site_packages,) = venv.glob("lib/python*/site-packages")
    assert (site_packages / "twin" / "web" / "assets" / "templates" / "base.html").is_file()
    (site_packages / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    where = subprocess.run(
        [str(python), "-c", "import twin, twin.web.templating as t; print(twin.__file__);"
         "print(t.web_dir(__import__('twin.config').config.Settings()))"],
        check=True, cwd=tmp_path, env=env, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert all(Path(p).is_relative_to(venv) for p in where), where

    port = _free_port()
    server = subprocess.Popen(
        [str(venv / "bin" / "twin"), "serve", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=False) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    client.get("/healthz")
                    break
                except httpx.TransportError:
                    assert server.poll() is None, server.stdout.read()  # type: ignore[union-attr]
                    assert time.monotonic() < deadline, "twin serve did not start"
                    time.sleep(0.2)
            log_in(client)
            for page in PAGES:
                response = client.get(page)
                assert response.status_code == 200, (page, response.text[:500])
                assert "<title>" in response.text and "/static/twin.css" in response.text
            assert "body" in client.get("/static/twin.css").text
    finally:
        server.terminate()
        server.wait(timeout=30)
