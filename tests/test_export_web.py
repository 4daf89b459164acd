"""The run page offers a run's exports as downloads: owner only, streamed, with sizes."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from test_export import finished_run
from trainhelpers import make_tiny_model
from web.conftest import log_in

from twin.config import Settings
from twin.export.run import export_run
from twin.web import create_app


def test_exports_are_listed_and_downloaded_by_the_owner_only(db: Settings, tmp_path: Path) -> None:
    base = make_tiny_model(tmp_path / "base")
    run_dir = finished_run(db.data_dir / "runs", "20240101-000000", base)
    gguf_dir = export_run(settings=db, run=run_dir.name, fmt="gguf", quant="q8_0")
    weights = (gguf_dir / "twin.gguf").read_bytes()
    url = f"/runs/{run_dir.name}/exports/gguf-q8_0/twin.gguf"
    base_url = f"http://127.0.0.1:{db.port}"
    with TestClient(create_app(db), base_url=base_url, follow_redirects=False) as browser:
        log_in(browser)
        page = browser.get(f"/runs/{run_dir.name}").text
        assert f'href="{url}"' in page
        assert f"{len(weights):,} bytes" in page
        download = browser.get(url)
        assert download.status_code == 200
        assert download.content == weights
        assert download.headers["content-length"] == str(len(weights))
        assert "attachment" in download.headers["content-disposition"]
        assert f"{run_dir.name}-gguf-q8_0-twin.gguf" in download.headers["content-disposition"]
        # Only listed export files: not the adapter, not another run, not a path outside.
        for wrong in (
            f"/runs/{run_dir.name}/exports/gguf-q8_0/missing.gguf",
            f"/runs/{run_dir.name}/exports/..%2Ffinal/lit_model.pth.lora",
            f"/runs/{run_dir.name}/exports/gguf-q8_0/..%2F..%2Frun.json",
            "/runs/nope/exports/gguf-q8_0/twin.gguf",
        ):
            assert browser.get(wrong).status_code == 404, wrong
    with TestClient(create_app(db), base_url=base_url, follow_redirects=False) as stranger:
        refused = stranger.get(url)
        assert refused.status_code in (303, 401)
        assert refused.content != weights
