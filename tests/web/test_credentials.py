"""Telegram API credentials saved in the web page work for the CLI too (environment first)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from twin.config import Settings, get_settings
from twin.errors import ConfigError
from twin.telegram.client import make_client, telegram_credentials

API_HASH = "0f" * 16


def test_saved_credentials_are_used_when_the_environment_has_none(
    owner: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="not set") as refused:
        telegram_credentials(settings)
    assert "my.telegram.org" in (refused.value.hint or "")

    saved = owner.post("/telegram/credentials", data={"api_id": "1234567", "api_hash": API_HASH})
    assert saved.status_code == 303
    # What a CLI command does: fresh settings from the environment, then a client.
    cli_settings = get_settings()
    assert telegram_credentials(cli_settings) == (1234567, API_HASH)
    client = make_client(settings=cli_settings)
    assert (client.api_id, client.api_hash) == (1234567, API_HASH)

    # The environment wins over what was saved.
    monkeypatch.setenv("TWIN_API_ID", "7654321")
    monkeypatch.setenv("TWIN_API_HASH", "ab" * 16)
    get_settings.cache_clear()
    assert telegram_credentials(get_settings()) == (7654321, "ab" * 16)


def test_no_database_yet_means_no_saved_credentials(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="not set"):
        telegram_credentials(settings)
