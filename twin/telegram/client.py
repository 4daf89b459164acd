"""Building Telethon clients from the settings and the owner's stored session, and turning
Telethon's errors into `TelegramError`s a person can act on.

Login and harvest take a `ClientFactory` so that the same code runs against Telegram and, in
tests, against an in-memory server that replaces the client's network sender.
"""

from __future__ import annotations

import asyncio
import functools
import platform
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

from sqlalchemy.exc import OperationalError
from telethon import TelegramClient, errors
from telethon.errors.rpcerrorlist import rpc_errors_dict, rpc_errors_re
from telethon.sessions import StringSession

from twin import __version__
from twin.config import Settings
from twin.db import session_scope
from twin.errors import ConfigError, TelegramError, TelegramUnreachable
from twin.store import get_owner
from twin.vault import decrypt

# Shown to the user in Telegram → Settings → Devices, so they can recognize (and end) it.
DEVICE_MODEL = "twin"
APP_VERSION = f"twin {__version__}"
LOGIN_HINT = "Run `twin login` (or log in from the web app) first."

UNREACHABLE = (ConnectionError, OSError, TimeoutError, asyncio.IncompleteReadError)
"""What Telethon raises when Telegram cannot be reached or something else answers: a refused or
reset connection, a DNS failure, a timeout, or a foreign answer cut short (a captive portal or
a proxy speaking HTTP ends the stream mid-packet: `asyncio.IncompleteReadError`)."""

# Telethon raises one class per documented error, but its ``message`` is the generic
# BAD_REQUEST/FORBIDDEN…; the class → Telegram's own name.
_ERROR_NAMES = {cls: name for name, cls in rpc_errors_dict.items()}
_ERROR_NAMES.update({cls: pattern.removesuffix("_(\\d+)") for pattern, cls in rpc_errors_re})


class ClientFactory(Protocol):
    """Makes a (not yet connected) client for a StringSession, or a fresh one for ``None``."""

    def __call__(self, *, session: str | None, receive_updates: bool) -> TelegramClient: ...


def telegram_credentials(settings: Settings) -> tuple[int, str]:
    """``(api_id, api_hash)``: from the settings (environment) first, else the ones saved
    (encrypted) from the web app, so both front doors use the same account.

    Raises `ConfigError` saying how to get credentials when neither has them.

    Args:
        settings: the environment's credentials, and whose database holds the saved ones.
    """
    if settings.api_id is not None or settings.api_hash:
        return settings.require_telegram_credentials()
    try:
        with session_scope(settings) as db:
            owner = get_owner(db)
            api_id, api_hash_encrypted = owner.api_id, owner.api_hash_encrypted
    except OperationalError:  # no database yet: nothing was saved
        api_id, api_hash_encrypted = None, None
    if api_id is None or api_hash_encrypted is None:
        return settings.require_telegram_credentials()  # raises with the how-to hint
    stored = settings.model_copy(
        update={"api_id": api_id, "api_hash": decrypt(settings, api_hash_encrypted)}
    )
    return stored.require_telegram_credentials()


def with_telegram_credentials(settings: Settings) -> Settings | None:
    """``settings`` carrying the credentials `telegram_credentials` finds, or None when none.

    Args:
        settings: as for `telegram_credentials`.
    """
    try:
        api_id, api_hash = telegram_credentials(settings)
    except ConfigError:
        return None
    return settings.model_copy(update={"api_id": api_id, "api_hash": api_hash})


def make_client(
    *,
    settings: Settings,
    session: str | None = None,
    receive_updates: bool = False,
    flood_sleep_threshold: int = 60,
) -> TelegramClient:
    """A Telethon client for the API credentials (not connected yet).

    Args:
        settings: the API id and hash (else the ones saved from the web app, see
            `telegram_credentials`).
        session: a decrypted StringSession, or None for a new (logged-out) session.
        receive_updates: let Telegram push updates (QR login needs them; harvest does not).
        flood_sleep_threshold: FLOOD_WAITs up to this many seconds are slept through by
            Telethon; longer ones raise `FloodWaitError`.
    """
    api_id, api_hash = telegram_credentials(settings)
    return TelegramClient(
        StringSession(session),
        api_id,
        api_hash,
        device_model=DEVICE_MODEL,
        system_version=f"{platform.system()} {platform.release()}".strip() or "unknown",
        app_version=APP_VERSION,
        receive_updates=receive_updates,
        flood_sleep_threshold=flood_sleep_threshold,
    )


def default_factory(settings: Settings) -> ClientFactory:
    """The factory that talks to Telegram itself."""
    return functools.partial(make_client, settings=settings)


def load_session(settings: Settings) -> str | None:
    """The owner's decrypted StringSession, or None when nobody is logged in."""
    with session_scope(settings) as db:
        token = get_owner(db).session_encrypted
    return decrypt(settings, token) if token else None


def unreachable_error(exc: BaseException) -> TelegramUnreachable:
    """The `TelegramUnreachable` for a low-level connection failure (one of `UNREACHABLE`)."""
    if isinstance(exc, asyncio.IncompleteReadError):
        detail = "the answer was not Telegram's: a captive portal or a proxy may be in the way"
    elif isinstance(exc, TimeoutError):
        detail = "no answer in time"
    else:
        detail = str(exc) or type(exc).__name__
    return TelegramUnreachable(detail)


async def connect_client(client: TelegramClient) -> None:
    """Connect ``client``; raises `TelegramUnreachable` when Telegram cannot be reached.

    Login and harvest both connect through here, so the CLI and the web show one message.

    Args:
        client: a client that is not connected yet.
    """
    try:
        await client.connect()
    except UNREACHABLE as exc:
        await client.disconnect()
        raise unreachable_error(exc) from exc


async def connect_owner(
    settings: Settings, *, client_factory: ClientFactory | None = None
) -> TelegramClient:
    """A connected client logged in as the owner; raises `TelegramError` when not logged in.

    Args:
        settings: whose stored session to use.
        client_factory: how to build the client (default: a real Telegram client).
    """
    session = load_session(settings)
    if session is None:
        raise TelegramError("Not logged in to Telegram.", hint=LOGIN_HINT)
    client = (client_factory or default_factory(settings))(session=session, receive_updates=False)
    async with connected_or_closed(client):
        if not await client.is_user_authorized():
            raise TelegramError(
                "The stored Telegram session is no longer valid (it was ended on another "
                "device or by Telegram).",
                hint=LOGIN_HINT,
            )
    return client


@asynccontextmanager
async def connected_or_closed(client: TelegramClient) -> AsyncIterator[None]:
    """Connect ``client`` for the first calls in the block; should any of them fail, disconnect
    it again (a lost session or a login that never registered must keep no connection open),
    with Telegram's errors turned into twin's."""
    await connect_client(client)
    try:
        yield
    except errors.RPCError as exc:
        await client.disconnect()
        raise telegram_error(exc) from exc
    except UNREACHABLE as exc:
        await client.disconnect()
        raise unreachable_error(exc) from exc
    except BaseException:
        await client.disconnect()
        raise


def format_wait(seconds: int) -> str:
    """``3725`` → ``"1 hour 2 minutes"``: a wait in the two largest units that matter."""
    if seconds < 60:
        return f"{seconds} second{'s' * (seconds != 1)}"
    parts = []
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {name}{'s' * (count != 1)}")
    return " ".join(parts[:2])


_EXPLAINED: dict[type[errors.RPCError], tuple[str, str | None]] = {
    errors.PhoneNumberInvalidError: (
        "Telegram rejected the phone number.",
        "Enter the number of your Telegram account with its country code, e.g. +44 7911 123456.",
    ),
    errors.PhoneNumberBannedError: ("This phone number is banned by Telegram.", None),
    errors.PhoneNumberUnoccupiedError: (
        "There is no Telegram account with this phone number.",
        "twin cannot sign up: create the account in an official Telegram app first.",
    ),
    errors.PhoneCodeInvalidError: (
        "The login code is wrong.",
        "Type the code Telegram just sent you again.",
    ),
    errors.PhoneCodeExpiredError: (
        "The login code has expired.",
        "Start the login again for a new code. Never send the code to anyone: "
        "a code pasted into any chat expires at once.",
    ),
    errors.PasswordHashInvalidError: (
        "The two-step verification password is wrong.",
        "Type your Telegram cloud password again (it is not the login code).",
    ),
    errors.UnauthorizedError: ("Telegram says this session is not logged in.", LOGIN_HINT),
}
"""Telegram's errors a user can act on: the message and the hint for each kind (and its
subclasses), checked in this order."""


def telegram_error(exc: errors.RPCError) -> TelegramError:
    """The `TelegramError` that explains a Telethon RPC error to the user."""
    if isinstance(exc, errors.FloodWaitError | errors.FloodPremiumWaitError):
        return TelegramError(
            f"Telegram asks to wait {format_wait(exc.seconds)} before this request.",
            hint="Try again after that; twin resumes where it stopped.",
            retry_after=exc.seconds,
        )
    for kind, (message, hint) in _EXPLAINED.items():
        if isinstance(exc, kind):
            return TelegramError(message, hint=hint)
    return TelegramError(f"Telegram refused the request: {rpc_error_name(exc)}.")


def rpc_error_name(exc: errors.RPCError) -> str:
    """Telegram's name for an error: ``PEER_ID_INVALID``, ``FLOOD_WAIT`` (Telethon's
    ``message`` is only the class of error, e.g. ``BAD_REQUEST``)."""
    return _ERROR_NAMES.get(type(exc), exc.message or type(exc).__name__)


def request_name(request: Any) -> str:
    """Telegram's method name of a request, unwrapped: ``messages.getHistory``."""
    while hasattr(request, "query"):  # invokeWithoutUpdates, invokeWithLayer, …
        request = request.query
    name = type(request).__name__.removesuffix("Request")
    namespace = type(request).__module__.rsplit(".", 1)[-1]
    method = name[:1].lower() + name[1:]
    return method if namespace == "functions" else f"{namespace}.{method}"
