"""Settings: one object, read from the environment (prefix ``TWIN_``) and an optional ``.env``.

Everything has a working default except the Telegram API credentials, which are checked only
when something needs them (`Settings.require_telegram_credentials`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from twin.errors import ConfigError

# Values people paste from tutorials instead of their own credentials.
_PLACEHOLDER_API_IDS = {0, 12345, 123456}
_PLACEHOLDER_API_HASHES = {"", "your_api_hash", "0123456789abcdef0123456789abcdef"}


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "twin"


class Settings(BaseSettings):
    """twin's settings. Every field can be set as ``TWIN_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="TWIN_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    """Where the database, the encryption key file, datasets and runs live."""
    database_url: str | None = None
    """SQLAlchemy URL; default: a SQLite file ``twin.sqlite3`` in ``data_dir``."""
    api_id: int | None = None
    """Telegram API id from https://my.telegram.org (Apps)."""
    api_hash: str | None = None
    """Telegram API hash that goes with ``api_id``."""
    secret_key: str | None = None
    """Fernet key for secrets at rest; default: a key file (mode 0600) in ``data_dir``."""
    base_model_dir: Path | None = None
    """litgpt checkpoint dir of the base model.

    Default: ``data_dir/checkpoints/tiiuae/falcon-7b``."""
    host: str = "127.0.0.1"
    port: int = 8765
    allowed_hosts: list[str] = Field(default_factory=list)
    """Extra host names the web app answers to besides localhost, 127.0.0.1 and [::1]."""
    auto_base_model: Literal["gemma-3-270m", "demo"] = "gemma-3-270m"
    """What "Train my twin" builds when no base model is present: Gemma 3 270M (a real small
    model, from its package) or the offline demo model (seconds to build, cannot really talk)."""
    max_upload_bytes: int = 4 * 1024**3
    """Largest Telegram export (result.json) the web app accepts, in bytes."""
    max_request_bytes: int = 4 * 1024**2
    """Largest body of any other web request (forms, chat, the API), in bytes."""
    remote_url: str | None = None
    """An OpenAI-compatible server (e.g. vLLM, ``http://host:8000/v1``) that answers instead of
    the local model: see `twin.chat.remote`."""
    remote_api_key: str | None = None
    """Bearer token for ``remote_url``, if it needs one."""
    remote_model: str = "twin"
    """The model name the remote server serves the twin under."""
    web_dir: Path | None = None
    """Folder with the web app's ``templates/`` and ``static/``; default: the copy that ships
    with twin (``web/`` of a source checkout)."""
    phone_regions: list[str] = Field(default_factory=lambda: ["RU", "UA", "US", "GB", "PL", "DE"])
    """Regions whose local phone-number formats the scrubber recognizes."""

    @field_validator("data_dir", "base_model_dir", "web_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        # litgpt treats relative checkpoint paths that don't resolve as hub repo ids.
        return value.expanduser().resolve() if value is not None else None

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'twin.sqlite3'}"

    @property
    def base_model_path(self) -> Path:
        return self.base_model_dir or self.data_dir / "checkpoints" / "tiiuae" / "falcon-7b"

    @property
    def dataset_dir(self) -> Path:
        """Where `twin prepare` writes the dataset and `twin train` reads it by default."""
        return self.data_dir / "dataset"

    @property
    def key_file(self) -> Path:
        return self.data_dir / "secret.key"

    def ensure_data_dir(self) -> Path:
        """Create the data dir (mode 0700) if it does not exist and return it."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.data_dir

    def require_telegram_credentials(self) -> tuple[int, str]:
        """Return ``(api_id, api_hash)`` or raise a `ConfigError` that says how to get them."""
        problem = telegram_credentials_problem(self.api_id, self.api_hash)
        if problem is not None:
            raise ConfigError(
                problem,
                hint="Create an app at https://my.telegram.org → API development tools, then "
                "set TWIN_API_ID and TWIN_API_HASH (or import a Telegram Desktop export "
                "instead).",
            )
        assert self.api_id is not None and self.api_hash is not None
        return self.api_id, self.api_hash


def telegram_credentials_problem(api_id: int | None, api_hash: str | None) -> str | None:
    """What is wrong with a Telegram API id and hash, in words for any front door (the
    environment, the web form); None when they look right.

    Args:
        api_id: the app's id from my.telegram.org.
        api_hash: the app's hash (32 hex characters).
    """
    if api_id is None or not api_hash:
        return "Telegram API credentials are not set."
    if api_id in _PLACEHOLDER_API_IDS or api_hash in _PLACEHOLDER_API_HASHES:
        return "Telegram API credentials look like placeholders (the examples from the docs)."
    if len(api_hash) != 32 or any(c not in "0123456789abcdef" for c in api_hash):
        return "The API hash must be 32 hex characters (0–9, a–f)."
    return None


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests clear the cache after changing the environment)."""
    return Settings()
