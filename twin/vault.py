"""Secrets at rest: Fernet encryption with a key that never lives in the database.

The key is ``TWIN_SECRET_KEY`` if set, else a key file (mode 0600) in the data dir, created on
first use. Whoever copies the database alone gets ciphertext; the Telegram session (which is as
good as a logged-in phone) needs the key as well.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from twin.config import Settings
from twin.errors import ConfigError

_KEY_HINT = (
    "Generate one with: python -c 'from cryptography.fernet import Fernet; "
    "print(Fernet.generate_key().decode())'"
)


def _read_or_create_key_file(path: Path) -> bytes:
    """The key in ``path``, created (0600, atomically) when missing.

    Two processes starting at once must end up with the same key, and a reader must never see
    a half-written file: write a private temporary file, then hard-link it into place (link
    fails if the name exists, so exactly one writer wins).
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(Fernet.generate_key())
                f.flush()
                os.fsync(f.fileno())
            # If another process won the race, its key is the one to use.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_bytes().strip()


def _fernet(settings: Settings) -> Fernet:
    if settings.secret_key:
        key, where = settings.secret_key.encode(), "TWIN_SECRET_KEY"
    else:
        key, where = _read_or_create_key_file(settings.key_file), str(settings.key_file)
    try:
        return Fernet(key)
    except ValueError as exc:
        raise ConfigError(
            f"The encryption key in {where} is not a valid Fernet key.", hint=_KEY_HINT
        ) from exc


def encrypt(settings: Settings, plaintext: str) -> str:
    """Encrypt ``plaintext`` with the settings' key; return a URL-safe text token.

    Args:
        settings: whose key to use (``secret_key`` or the key file in ``data_dir``).
        plaintext: the secret to protect.
    """
    return _fernet(settings).encrypt(plaintext.encode()).decode()


def decrypt(settings: Settings, token: str) -> str:
    """Decrypt a token made by `encrypt`.

    Args:
        settings: whose key to use; it must be the key the token was made with.
        token: the text `encrypt` returned.

    Raises:
        ConfigError: the key is not the one the secret was stored with.
    """
    try:
        return _fernet(settings).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ConfigError(
            "A stored secret cannot be decrypted: the encryption key changed "
            f"(TWIN_SECRET_KEY or {settings.key_file}).",
            hint="Restore the previous key, or run `twin login` again to store a new session.",
        ) from exc
