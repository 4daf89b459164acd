"""Every test gets its own data dir, database and settings; nothing touches the user's home."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")
# "Train my twin" builds the demo model in tests (seconds); tests/test_gemma.py covers Gemma.
os.environ["TWIN_AUTO_BASE_MODEL"] = "demo"

from twin.config import Settings, get_settings
from twin.db import _cached_engine, upgrade_database

DATA = Path(__file__).parent / "data"

# CI explores the same examples every run (a red build names a reproducible case); locally,
# property tests keep drawing new ones.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@pytest.fixture(autouse=True)
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings pointing at a fresh data dir under tmp_path (also for `get_settings()`)."""
    for key in list(os.environ):
        if key.startswith("TWIN_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TWIN_AUTO_BASE_MODEL", "demo")
    monkeypatch.chdir(tmp_path)  # keep a stray .env in the checkout from leaking in
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
    _cached_engine.cache_clear()


@pytest.fixture
def db(settings: Settings) -> Settings:
    """A migrated database in the test's data dir."""
    upgrade_database(settings)
    return settings


@pytest.fixture
def tg(db: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The migrated database, with (made-up) Telegram API credentials in the environment."""
    from tgserver import with_api_credentials

    return with_api_credentials(monkeypatch)


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dir shared by all xdist workers of this session (and kept between local runs)."""
    return tmp_path_factory.getbasetemp().parent


@pytest.fixture(scope="session")
def gemma(shared_dir: Path) -> Path:
    """Gemma 3 270M built from its package once per test session, shared by xdist workers."""
    from filelock import FileLock

    from twin.basemodel.gemma import get_gemma

    with FileLock(str(shared_dir / "gemma.lock")):
        return get_gemma(checkpoint_dir=shared_dir / "gemma-3-270m")
