"""Secrets at rest: the key stays out of the database, and so does every plaintext."""

from __future__ import annotations

import stat

import pytest
from cryptography.fernet import Fernet

from twin.config import Settings
from twin.db import session_scope
from twin.errors import ConfigError
from twin.store import get_owner
from twin.vault import decrypt, encrypt


def test_round_trip_with_a_key_file_created_private(settings: Settings) -> None:
    token = encrypt(settings, "1BVtsOKABu0secret-session")
    assert "secret-session" not in token
    assert decrypt(settings, token) == "1BVtsOKABu0secret-session"
    assert stat.S_IMODE(settings.key_file.stat().st_mode) == 0o600
    # The same key file serves later calls (another process, a restart).
    assert decrypt(settings, encrypt(settings, "x")) == "x"


def test_secret_key_setting_is_used_instead_of_a_file(settings: Settings) -> None:
    keyed = settings.model_copy(update={"secret_key": Fernet.generate_key().decode()})
    assert decrypt(keyed, encrypt(keyed, "abc")) == "abc"
    assert not settings.key_file.exists()


def test_a_changed_key_is_a_clear_error(settings: Settings) -> None:
    token = encrypt(settings, "abc")
    other = settings.model_copy(update={"secret_key": Fernet.generate_key().decode()})
    with pytest.raises(ConfigError, match="key changed") as info:
        decrypt(other, token)
    assert "twin login" in (info.value.hint or "")


def test_an_invalid_secret_key_is_a_clear_error(settings: Settings) -> None:
    bad = settings.model_copy(update={"secret_key": "not-a-key"})
    with pytest.raises(ConfigError, match="not a valid Fernet key"):
        encrypt(bad, "abc")


def test_stored_session_is_not_in_the_database_bytes(db: Settings) -> None:
    secret = "1ApWapzMBu3VERY-SECRET-AUTH-KEY-MATERIAL"
    with session_scope(db) as session:
        get_owner(session).session_encrypted = encrypt(db, secret)
    files = [p for p in db.data_dir.iterdir() if p.name.startswith("twin.sqlite3")]
    assert files
    for path in files:  # the database and its WAL
        assert secret.encode() not in path.read_bytes()
    key = db.key_file.read_bytes()
    for path in files:
        assert key not in path.read_bytes()
