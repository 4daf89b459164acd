"""The database: engine, sessions and migrations.

SQLite runs in WAL mode (readers don't block the writer), with foreign keys on and a busy
timeout so that a web request and a background job can write without "database is locked".
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from twin.config import Settings, get_settings
from twin.errors import StoreError

# A wheel carries migrations/ inside the package (setup.py); a checkout has it at the top.
_PACKAGED_MIGRATIONS = Path(__file__).resolve().parent / "db_migrations"
MIGRATIONS_DIR = (
    _PACKAGED_MIGRATIONS
    if _PACKAGED_MIGRATIONS.is_dir()
    else Path(__file__).resolve().parent.parent / "migrations"
)
BUSY_TIMEOUT_MS = 30_000


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def make_engine(url: str) -> Engine:
    """Create an engine for ``url``; a SQLite file gets its directory (0700) and file (0600).

    Args:
        url: SQLAlchemy database URL.
    """
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            # Create it private before SQLite does (SQLite would use the umask).
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000}
    )
    event.listen(engine, "connect", _on_connect)
    return engine


@lru_cache
def _cached_engine(url: str) -> Engine:
    return make_engine(url)


def get_engine(settings: Settings | None = None) -> Engine:
    """The process-wide engine for the settings' database."""
    return _cached_engine((settings or get_settings()).db_url)


# SQLite's primary result codes for a write the disk refused (the low byte of the extended code).
_SQLITE_IOERR, _SQLITE_FULL = 10, 13


def _disk_error(exc: BaseException, settings: Settings) -> StoreError | None:
    """A `StoreError` saying the disk is full (or failing) if ``exc`` is SQLite saying so.

    Args:
        exc: an exception raised while writing the database.
        settings: for the data dir named in the message.
    """
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlite_errorcode", None)
    if not isinstance(orig, sqlite3.OperationalError) or code is None:
        return None
    if code & 0xFF == _SQLITE_FULL:
        problem = "the disk is full"
    elif code & 0xFF == _SQLITE_IOERR:
        problem = f"the disk refused a write ({orig})"
    else:
        return None
    return StoreError(
        f"Could not write the database in {settings.data_dir}: {problem}. Nothing of this "
        "step was saved; what was stored before is unchanged.",
        hint="Free some disk space (or move TWIN_DATA_DIR to a larger disk), then run it again.",
    )


@contextmanager
def session_scope(settings: Settings | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error.

    A full disk turns into a `StoreError` that says so (the transaction is rolled back, so the
    database keeps its previous state).

    Args:
        settings: whose database to open; default: the process settings.
    """
    settings = settings or get_settings()
    with Session(get_engine(settings), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException as exc:
            session.rollback()
            full = _disk_error(exc, settings)
            if full is not None:
                raise full from exc
            raise


def get_session() -> Iterator[Session]:
    """FastAPI dependency: one session per request."""
    with Session(get_engine(), expire_on_commit=False) as session:
        yield session


def alembic_config(url: str) -> AlembicConfig:
    """An Alembic config pointing at ``migrations/`` and ``url`` (no alembic.ini needed)."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url)
    return config


_MIGRATION_LOCK = threading.Lock()


def upgrade_database(settings: Settings | None = None, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (idempotent; run on every start).

    Args:
        settings: whose database to migrate; default: the process settings.
        revision: the Alembic revision to reach.
    """
    settings = settings or get_settings()
    settings.ensure_data_dir()
    if not MIGRATIONS_DIR.is_dir():
        raise StoreError(
            f"Migrations not found at {MIGRATIONS_DIR}.",
            hint="Run twin from its source checkout (pip install -e .).",
        )
    engine = get_engine(settings)
    config = alembic_config(settings.db_url)
    try:
        # Alembic keeps the running migration in module globals (`alembic.context`), so two
        # threads migrating at once (two "Train" clicks, each entry function migrating) break
        # each other; one at a time per process. Other processes are kept apart by SQLite.
        with _MIGRATION_LOCK, engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except Exception as exc:  # sqlite3 / SQLAlchemy errors: corrupt file, read-only dir, …
        raise StoreError(
            f"Could not migrate the database at {settings.db_url}: {exc}",
            hint="Check that the data dir is writable and the file is a twin database.",
        ) from exc
