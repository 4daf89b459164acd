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


@pytest.mark.parametrize(
    ("api_id", "api_hash", "problem"),
    [
        ("12x", API_HASH, "The API id is a number"),
        ("1234567", "nope", "The API hash must be 32 hex characters"),
        ("123456", "0123456789abcdef0123456789abcdef", "look like placeholders"),
    ],
)
def test_refused_credentials_say_what_to_do_in_the_page_and_keep_the_id(
    owner: TestClient, api_id: str, api_hash: str, problem: str
) -> None:
    refused = owner.post("/telegram/credentials", data={"api_id": api_id, "api_hash": api_hash})
    assert refused.status_code == 400
    assert problem in refused.text and "my.telegram.org → API development tools" in refused.text
    assert "TWIN_" not in refused.text  # the page has no environment to set
    assert f'name="api_id" inputmode="numeric" autocomplete="off" value="{api_id}"' in refused.text
