"""The vault's locks, as pure logic: password hashing, browser sessions, CSRF tokens, login
throttling and the Host/Origin checks that stop DNS rebinding and cross-site requests.

Nothing here does HTTP or touches the database; `twin.web.deps` and `twin.web.auth` wire these
pieces into requests. Sessions live in the memory of the one server process: a restart logs the
browser out, which is the safe default for an app holding a Telegram account.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer

MIN_PASSWORD_LENGTH = 10
SESSION_COOKIE = "twin_session"
PRELOGIN_COOKIE = "twin_csrf"
"""Double-submit CSRF cookie for the forms shown before there is a session (setup, login)."""
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SESSION_TTL_SECONDS = 12 * 3600
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Clock = Callable[[], float]

_hasher = PasswordHasher()


def check_new_password(password: str, confirm: str) -> str | None:
    """Why a new owner password is unacceptable, or None when it is fine.

    Args:
        password: the password typed.
        confirm: the same password typed again.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Choose a password of at least {MIN_PASSWORD_LENGTH} characters."
    if password != confirm:
        return "The two passwords differ; type the same password twice."
    return None


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (salted; slow on purpose)."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches ``password_hash``."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    """An unguessable URL-safe token (256 bits)."""
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison that treats a missing token as a mismatch."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def token_digest(token: str) -> str:
    """SHA-256 of an API token: what is stored, so the token itself never rests on disk."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class WebSession:
    """One logged-in browser."""

    session_id: str
    csrf_token: str
    expires_at: float


@dataclass
class SessionStore:
    """Live browser sessions, keyed by id; the cookie carries the id, signed and timed.

    Args:
        ttl_seconds: how long a session lives after login.
        clock: the time source (seconds).
    """

    ttl_seconds: int = SESSION_TTL_SECONDS
    clock: Clock = time.time
    # A fresh key per process: sessions do not survive a restart anyway.
    _serializer: URLSafeTimedSerializer = field(
        default_factory=lambda: URLSafeTimedSerializer(secrets.token_bytes(32), salt="twin.session")
    )
    _sessions: dict[str, WebSession] = field(default_factory=dict)

    def create(self) -> tuple[WebSession, str]:
        """Start a session; return it and the cookie value to send."""
        session = WebSession(new_token(), new_token(), self.clock() + self.ttl_seconds)
        self._sessions[session.session_id] = session
        return session, self._serializer.dumps(session.session_id)

    def get(self, cookie: str | None) -> WebSession | None:
        """The live session behind a cookie value, or None (forged, expired or logged out)."""
        if not cookie:
            return None
        try:
            session_id = self._serializer.loads(cookie, max_age=self.ttl_seconds)
        except BadSignature:
            return None
        session = self._sessions.get(session_id)
        if session is None or session.expires_at <= self.clock():
            self._sessions.pop(session_id, None)
            return None
        return session

    def revoke(self, session_id: str) -> None:
        """Log one session out."""
        self._sessions.pop(session_id, None)

    def revoke_all(self) -> None:
        """Log every browser out (after a password change)."""
        self._sessions.clear()


@dataclass
class _Failures:
    count: int = 0
    blocked_until: float = 0.0


@dataclass
class LoginThrottle:
    """Exponential backoff after wrong passwords, per client and for all clients together.

    The first ``free_attempts`` failures of a client cost nothing; each further one doubles the
    wait, from ``base_delay_s`` up to ``max_delay_s``. The global counter does the same with a
    larger allowance, so spreading guesses over many addresses does not help.

    Args:
        free_attempts: failures per client before waits begin.
        global_free_attempts: failures over all clients before everyone waits.
        base_delay_s: the first wait, in seconds.
        max_delay_s: the longest wait, in seconds.
        clock: the time source (seconds).
    """

    free_attempts: int = 3
    global_free_attempts: int = 20
    base_delay_s: float = 2.0
    max_delay_s: float = 15 * 60
    clock: Clock = time.monotonic
    _clients: dict[str, _Failures] = field(default_factory=dict)
    _global: _Failures = field(default_factory=_Failures)

    def retry_after(self, client: str) -> int:
        """Whole seconds ``client`` must wait before trying again (0: go ahead).

        Args:
            client: the client's address.
        """
        now = self.clock()
        client_failures = self._clients.get(client, _Failures())
        wait = max(client_failures.blocked_until, self._global.blocked_until) - now
        return max(0, int(wait + 0.999))

    def record_failure(self, client: str) -> int:
        """Count a wrong password; return the seconds to wait before the next attempt.

        Args:
            client: the client's address.
        """
        now = self.clock()
        client_failures = self._clients.setdefault(client, _Failures())
        for failures, free in (
            (client_failures, self.free_attempts),
            (self._global, self.global_free_attempts),
        ):
            failures.count += 1
            if failures.count > free:
                delay = self.base_delay_s * 2 ** (failures.count - free - 1)
                failures.blocked_until = now + min(delay, self.max_delay_s)
        return self.retry_after(client)

    def record_success(self, client: str) -> None:
        """Forget a client's failures (and the global ones: the owner is back).

        Args:
            client: the client's address.
        """
        self._clients.pop(client, None)
        self._global = _Failures()


def split_host(host_header: str) -> tuple[str, int | None]:
    """``"[::1]:8765"`` → ``("[::1]", 8765)``; a missing or bad port gives None.

    Args:
        host_header: the Host header value.
    """
    host = host_header.strip().lower()
    if host.startswith("["):
        name, _, rest = host.partition("]")
        name += "]"
        port_text = rest.removeprefix(":") if rest.startswith(":") else ""
    else:
        name, _, port_text = host.partition(":")
    port = int(port_text) if port_text.isdigit() else None
    return name, port


def is_allowed_host(host_header: str | None, *, allowed: Iterable[str], port: int) -> bool:
    """True when a request's Host names this app: a local name (or one of ``allowed``), with no
    port or the port we listen on. Anything else is a DNS-rebinding attempt or a wrong address.

    Args:
        host_header: the Host header value (None when missing).
        allowed: extra host names accepted besides the local ones.
        port: the port the server listens on.
    """
    if not host_header:
        return False
    name, host_port = split_host(host_header)
    names = {*LOCAL_HOSTS, *(a.lower() for a in allowed)}
    if name not in names:
        return False
    has_port = ":" in host_header.rsplit("]", 1)[-1]
    return not has_port or host_port == port


def is_same_origin(
    origin: str | None, *, scheme: str, host_header: str | None, fetch_site: str | None
) -> bool:
    """True unless the browser says a request comes from another origin.

    ``Sec-Fetch-Site`` (set by the browser, never by a page) must not name another site, nor
    another port of this machine (``same-site``). ``Origin`` must name this server; it is
    ``null`` under our no-referrer policy for our own forms, so then ``Sec-Fetch-Site`` must
    say ``same-origin``. A client that sends neither (curl with a bearer token) passes here,
    and CSRF tokens still guard cookie sessions.

    Args:
        origin: the Origin header value (None when missing).
        scheme: the request's scheme (http or https).
        host_header: the request's Host header.
        fetch_site: the Sec-Fetch-Site header value (None when missing).
    """
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    if origin is None:
        return True
    if origin == "null":
        return fetch_site == "same-origin"
    if not host_header:
        return False
    parts = urlsplit(origin)
    return parts.scheme == scheme and parts.netloc.lower() == host_header.strip().lower()
