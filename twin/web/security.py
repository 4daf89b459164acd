"""The vault's locks, as pure logic: password hashing, browser sessions, CSRF tokens, login
throttling and the Host/Origin checks that stop DNS rebinding and cross-site requests.

Nothing here does HTTP or touches the database; `twin.web.deps` and `twin.web.auth` wire these
pieces into requests; `twin.web.sessions` keeps the browser sessions in the database.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

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
class _Failures:
    count: int = 0
    blocked_until: float = 0.0


@dataclass
class LoginThrottle:
    """Wrong-password backoff per browser, plus a global rate for clients not known yet.

    Every password check is reserved under a lock before the (slow) hash is verified, and
    counted as a failure until `succeed` gives it back: concurrent guesses cannot slip through
    one free slot together. The first ``free_attempts`` failures of a client cost nothing; each
    further one doubles its wait, from ``base_delay_s`` up to ``max_delay_s``.

    A client is a browser: the device cookie of an earlier login (``trusted``), else the form
    cookie of the login page. Call `begin` before checking a password, then always `succeed`
    or `fail`. Untrusted checks also draw from one token bucket shared by all
    (``global_burst`` checks, refilled one per ``global_interval_s``): a guesser who changes
    cookies at every try gets no more than that rate, and never a wait longer than one
    interval for others once it stops. A trusted browser does not draw from the bucket, so no
    other local process can keep the owner's own browser out.

    Args:
        free_attempts: failures per client before waits begin.
        base_delay_s: the first wait, in seconds.
        max_delay_s: the longest wait, in seconds.
        global_burst: checks untrusted clients may make at once.
        global_interval_s: seconds to regain one untrusted check.
        clock: the time source (seconds).
    """

    free_attempts: int = 3
    base_delay_s: float = 2.0
    max_delay_s: float = 15 * 60
    global_burst: int = 10
    global_interval_s: float = 6.0
    clock: Clock = time.monotonic
    _clients: dict[str, _Failures] = field(default_factory=dict)
    _tokens: float | None = None
    _tokens_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self, client: str, *, trusted: bool) -> int:
        """Reserve one password check for ``client``: 0 means go ahead (then call `succeed`
        if the password was right), else the whole seconds to wait.

        Args:
            client: who is trying (a browser's cookie, see the class).
            trusted: the client is a browser that logged in before.
        """
        with self._lock:
            now = self.clock()
            known = self._clients.get(client)
            wait = known.blocked_until - now if known else 0.0
            if wait <= 0 and not trusted:
                wait = self._take_token(now)
            if math.isinf(wait):  # a check of this client is in flight
                wait = self.base_delay_s
            if wait > 0:
                return max(1, math.ceil(wait))
            # Only a check that happens is remembered, so refused tries cannot grow this dict.
            failures = self._clients.setdefault(client, _Failures())
            failures.count += 1  # counted as wrong until `succeed` says otherwise
            if failures.count > self.free_attempts:
                # Past the free attempts, one check at a time: `fail` sets the real wait.
                failures.blocked_until = math.inf
            return 0

    def fail(self, client: str) -> int:
        """The password was wrong: start ``client``'s wait from now (the check itself took a
        while); return the whole seconds to wait (0: none).

        Args:
            client: who tried.
        """
        with self._lock:
            failures = self._clients.setdefault(client, _Failures(count=1))
            if failures.count <= self.free_attempts:
                return 0
            delay = self.base_delay_s * 2 ** (failures.count - self.free_attempts - 1)
            failures.blocked_until = self.clock() + min(delay, self.max_delay_s)
            return math.ceil(min(delay, self.max_delay_s))

    def succeed(self, client: str) -> None:
        """The password was right: forget ``client``'s failures.

        Args:
            client: who logged in.
        """
        with self._lock:
            self._clients.pop(client, None)

    def _take_token(self, now: float) -> float:
        """Take one untrusted check from the bucket; return 0, or the seconds until one."""
        if self._tokens is None:
            self._tokens, self._tokens_at = float(self.global_burst), now
        refill = (now - self._tokens_at) / self.global_interval_s
        self._tokens = min(float(self.global_burst), self._tokens + refill)
        self._tokens_at = now
        if self._tokens < 1:
            return (1 - self._tokens) * self.global_interval_s
        self._tokens -= 1
        return 0.0


# A Host header: a name or a bracketed IPv6 address, then optionally a port without leading
# zeros. Anything else ("[::1]evil", "127.0.0.1:018801", spaces) is malformed.
_HOST_RE = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)(?::([1-9][0-9]{0,4}))?")


def split_host(host_header: str) -> tuple[str, int | None] | None:
    """``"[::1]:8765"`` → ``("[::1]", 8765)``, ``"localhost"`` → ``("localhost", None)``;
    None when the value is not a well-formed host.

    Args:
        host_header: the Host header value.
    """
    match = _HOST_RE.fullmatch(host_header.lower())
    if match is None:
        return None
    return match.group(1), int(match.group(2)) if match.group(2) else None


def is_allowed_host(host_header: str | None, *, allowed: Iterable[str], port: int) -> bool:
    """True when a request's Host names this app: a local name (or one of ``allowed``), with no
    port or the port we listen on. Anything else is a DNS-rebinding attempt or a wrong address.

    Args:
        host_header: the Host header value (None when missing).
        allowed: extra host names accepted besides the local ones.
        port: the port the server listens on.
    """
    parsed = split_host(host_header) if host_header else None
    if parsed is None:
        return False
    name, host_port = parsed
    names = {*LOCAL_HOSTS, *(a.lower() for a in allowed)}
    return name in names and host_port in (None, port)


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
