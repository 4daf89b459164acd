"""Browser sessions kept in the database: they survive a server restart, and logging out (or
a password change) revokes them at once.

The cookie carries a random 256-bit id; the database keeps its SHA-256, the session's CSRF
token and its expiry. Expired rows are deleted as they are met and whenever a session starts.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, Signer
from sqlmodel import Session, col, delete

from twin.config import Settings
from twin.db import get_engine
from twin.models import BrowserSession
from twin.web.security import SESSION_TTL_SECONDS, Clock, new_token, token_digest


@dataclass(frozen=True)
class WebSession:
    """One logged-in browser, as a request sees it."""

    session_id: str
    """The SHA-256 of the cookie's id: names the session in memory and in the database."""
    csrf_token: str
    expires_at: float


@dataclass
class SessionStore:
    """Create, look up and revoke browser sessions in ``settings``' database.

    Args:
        settings: whose database holds the sessions.
        ttl_seconds: how long a session lives after login.
        clock: the time source (seconds).
    """

    settings: Settings
    ttl_seconds: int = SESSION_TTL_SECONDS
    clock: Clock = time.time

    def create(self) -> tuple[WebSession, str]:
        """Start a session; return it and the cookie value to send."""
        cookie = new_token()
        now = int(self.clock())
        row = BrowserSession(
            id_sha256=token_digest(cookie),
            csrf_token=new_token(),
            created_unix=now,
            expires_unix=now + self.ttl_seconds,
        )
        with Session(get_engine(self.settings), expire_on_commit=False) as db:
            db.exec(delete(BrowserSession).where(col(BrowserSession.expires_unix) <= now))
            db.add(row)
            db.commit()
        return WebSession(row.id_sha256, row.csrf_token, row.expires_unix), cookie

    def get(self, cookie: str | None) -> WebSession | None:
        """The live session behind a cookie value, or None (unknown, expired or logged out)."""
        if not cookie or len(cookie) > 100:
            return None
        with Session(get_engine(self.settings)) as db:
            row = db.get(BrowserSession, token_digest(cookie))
            if row is None:
                return None
            if row.expires_unix <= self.clock():
                db.delete(row)
                db.commit()
                return None
            return WebSession(row.id_sha256, row.csrf_token, row.expires_unix)

    def revoke(self, session_id: str) -> None:
        """Log one session out.

        Args:
            session_id: `WebSession.session_id`.
        """
        with Session(get_engine(self.settings)) as db:
            db.exec(delete(BrowserSession).where(col(BrowserSession.id_sha256) == session_id))
            db.commit()

    def revoke_all(self) -> None:
        """Log every browser out (after a password change)."""
        with Session(get_engine(self.settings)) as db:
            db.exec(delete(BrowserSession))
            db.commit()


DEVICE_COOKIE = "twin_device"
"""Marks a browser that logged in before: it keeps its own login throttle (see `LoginThrottle`)."""
DEVICE_TTL_SECONDS = 365 * 24 * 3600


@dataclass
class DeviceCookies:
    """Signed device ids: a browser that once logged in proves it with one.

    The signing key lives in ``data_dir/web_device.key`` (0600), so devices survive restarts.

    Args:
        settings: whose data dir holds the key.
    """

    settings: Settings

    def _signer(self) -> Signer:
        path = self.settings.ensure_data_dir() / "web_device.key"
        if not path.is_file():
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
            try:
                os.link(tmp, path)  # atomic, and never replaces a key another request made
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return Signer(path.read_text().strip(), salt="twin.device")

    def issue(self) -> str:
        """A new device cookie value."""
        return self._signer().sign(new_token()).decode()

    def device_id(self, cookie: str | None) -> str | None:
        """The device id behind a cookie value, or None when it is missing or forged."""
        if not cookie or len(cookie) > 200:
            return None
        try:
            return self._signer().unsign(cookie).decode()
        except BadSignature:
            return None
