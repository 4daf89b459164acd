"""Logging in to Telegram (code, two-step password, or QR) and out again.

The same async functions serve the CLI and the web app. A login spans several user actions
(send code → type code → maybe type password), and Telegram binds the code to the connection
that asked for it, so the *same connected client* is kept between the steps in a registry
keyed by an unguessable login id, with an expiry. Nothing here logs codes, passwords or the
session string.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
from collections.abc import Awaitable
from dataclasses import dataclass

import phonenumbers
from pydantic import BaseModel
from telethon import TelegramClient, errors, events
from telethon.tl import functions, types
from telethon.tl.custom import QRLogin
from telethon.tl.types import User

from twin.config import Settings
from twin.db import session_scope
from twin.errors import TelegramError
from twin.models import AccountName
from twin.store import get_owner, now_unix, update_owner
from twin.telegram.client import (
    ClientFactory,
    connect_owner,
    connected_or_closed,
    default_factory,
    telegram_credentials,
    telegram_error,
)
from twin.vault import encrypt

LOGIN_TTL_SECONDS = 10 * 60
"""How long a started login waits for its code or password before it is dropped."""


class LoginTicket(BaseModel):
    """A code was sent; pass ``login_id`` and the code to `submit_code`."""

    login_id: str
    phone: str
    expires_unix: int


class QrTicket(BaseModel):
    """A QR code to show (``url``, valid until ``expires_unix``); then call `wait_qr`."""

    login_id: str
    url: str
    expires_unix: int


class OwnerInfo(AccountName):
    """Who logged in."""

    tg_user_id: int
    phone: str | None = None


class LoginResult(BaseModel):
    """The outcome of a login step: logged in (``owner``), a password is needed, or (QR only)
    the code was not scanned yet and ``qr`` is what to show now."""

    needs_password: bool = False
    password_hint: str | None = None
    owner: OwnerInfo | None = None
    qr: QrTicket | None = None


@dataclass
class _Pending:
    settings: Settings
    client: TelegramClient
    expires_monotonic: float
    phone: str | None = None
    phone_code_hash: str | None = None
    qr: QRLogin | None = None
    scanned: asyncio.Event | None = None


_pending: dict[str, _Pending] = {}


def normalize_phone(phone: str) -> str:
    """``"+44 7700-900 123"`` → ``"+447700900123"``; raise `TelegramError` if it is no number.

    Args:
        phone: the number as the user typed it, with its country code.
    """
    hint = "Type the number with its country code, e.g. +44 7911 123456."
    try:
        number = phonenumbers.parse(phone.strip(), None)
    except phonenumbers.NumberParseException as exc:
        raise TelegramError(
            f"{phone!r} is not a phone number in international form.", hint=hint
        ) from exc
    if not phonenumbers.is_valid_number(number):
        raise TelegramError(f"{phone!r} is not a valid phone number.", hint=hint)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


async def start_login(
    settings: Settings, *, phone: str, client_factory: ClientFactory | None = None
) -> LoginTicket:
    """Ask Telegram to send a login code to the account with ``phone``.

    Args:
        settings: API credentials and where the session will be stored.
        phone: the account's phone number in international form.
        client_factory: how to build the client (default: a real Telegram client).
    """
    telegram_credentials(settings)  # fail before connecting; saved credentials count
    phone = normalize_phone(phone)
    await _drop_expired()
    client = (client_factory or default_factory(settings))(session=None, receive_updates=False)
    async with connected_or_closed(client):
        sent = await client.send_code_request(phone)
    login_id = _register(
        _Pending(
            settings=settings,
            client=client,
            expires_monotonic=time.monotonic() + LOGIN_TTL_SECONDS,
            phone=phone,
            phone_code_hash=sent.phone_code_hash,
        )
    )
    return LoginTicket(login_id=login_id, phone=phone, expires_unix=now_unix() + LOGIN_TTL_SECONDS)


async def submit_code(login_id: str, code: str) -> LoginResult:
    """Sign in with the code Telegram sent; may answer that a 2FA password is needed.

    A wrong code can be retried with the same ``login_id``; an expired one cannot.

    Args:
        login_id: from `start_login`.
        code: the digits from the Telegram message.
    """
    pending = await _get(login_id)
    return await _sign_in(
        login_id,
        pending,
        pending.client.sign_in(
            pending.phone, code.strip(), phone_code_hash=pending.phone_code_hash
        ),
        retryable=(errors.PhoneCodeInvalidError, errors.FloodWaitError),
    )


async def submit_password(login_id: str, password: str) -> LoginResult:
    """Finish a login that needs the two-step verification (cloud) password.

    Args:
        login_id: from `start_login` or `start_qr_login`.
        password: the account's cloud password (checked with SRP; it never leaves in clear).
    """
    pending = await _get(login_id)
    return await _sign_in(
        login_id,
        pending,
        pending.client.sign_in(password=password),
        retryable=(errors.PasswordHashInvalidError, errors.FloodWaitError),
    )


async def start_qr_login(
    settings: Settings, *, client_factory: ClientFactory | None = None
) -> QrTicket:
    """Start a QR login: show the returned URL as a QR code, scan it in an official app.

    Args:
        settings: API credentials and where the session will be stored.
        client_factory: how to build the client (default: a real Telegram client).
    """
    telegram_credentials(settings)  # fail before connecting; saved credentials count
    await _drop_expired()
    # Telegram announces the scan with an update, so this client must receive updates.
    client = (client_factory or default_factory(settings))(session=None, receive_updates=True)
    async with connected_or_closed(client):
        qr = await client.qr_login()
    pending = _Pending(
        settings=settings,
        client=client,
        expires_monotonic=time.monotonic() + LOGIN_TTL_SECONDS,
        qr=qr,
        scanned=asyncio.Event(),
    )
    # `QRLogin.wait` only listens while it runs; a scan between two `wait_qr` calls (a web
    # page polling) would be lost, so listen for the whole life of the login instead.
    scanned = pending.scanned

    async def on_login_token(_update: types.UpdateLoginToken) -> None:
        scanned.set()

    client.add_event_handler(on_login_token, events.Raw(types.UpdateLoginToken))
    login_id = _register(pending)
    return _qr_ticket(login_id, qr)


async def wait_qr(login_id: str, timeout: float) -> LoginResult:
    """Wait up to ``timeout`` seconds for the QR code to be scanned.

    Returns the owner when logged in, ``needs_password`` for accounts with 2FA, or ``qr`` with
    the code to show next (a new one when the old one expired).

    Args:
        login_id: from `start_qr_login`.
        timeout: seconds to wait at most (the wait also ends when the code expires).
    """
    pending = await _get(login_id)
    if pending.qr is None or pending.scanned is None:
        raise TelegramError("This login was not started with a QR code.")
    qr, client = pending.qr, pending.client
    left = (qr.expires - dt.datetime.now(tz=dt.UTC)).total_seconds()
    try:
        try:
            await asyncio.wait_for(pending.scanned.wait(), timeout=max(0.0, min(timeout, left)))
        except TimeoutError:
            if qr.expires <= dt.datetime.now(tz=dt.UTC):
                await qr.recreate()
            return LoginResult(qr=_qr_ticket(login_id, qr))
        # Scanned: asking for the token again now answers with the authorization
        # (what `QRLogin.wait` does after the update).
        answer = await client(
            functions.auth.ExportLoginTokenRequest(client.api_id, client.api_hash, [])
        )
        if isinstance(answer, types.auth.LoginTokenMigrateTo):
            await client._switch_dc(answer.dc_id)  # as QRLogin.wait does; no public API
            answer = await client(functions.auth.ImportLoginTokenRequest(answer.token))
    except errors.SessionPasswordNeededError:
        return await _password_needed(pending)
    except errors.RPCError as exc:
        await _close(login_id)
        raise telegram_error(exc) from exc
    if not isinstance(answer, types.auth.LoginTokenSuccess):
        await _close(login_id)
        raise TelegramError(f"Telegram answered the QR login with {type(answer).__name__}.")
    user = answer.authorization.user
    await client._on_login(user)  # as QRLogin.wait does: marks the client logged in
    return await _finish(login_id, user)


async def cancel_login(login_id: str) -> None:
    """Forget a started login and disconnect its client (unknown ids are ignored).

    Args:
        login_id: from `start_login` or `start_qr_login`.
    """
    await _close(login_id)


async def logout(settings: Settings, *, client_factory: ClientFactory | None = None) -> bool:
    """End the session at Telegram, then delete it from the database.

    Returns whether Telegram confirmed; the stored session is deleted either way, and when
    Telegram could not be told the user should end it under Settings → Devices.

    Args:
        settings: whose stored session to end.
        client_factory: how to build the client (default: a real Telegram client).
    """
    revoked = False
    try:
        client = await connect_owner(settings, client_factory=client_factory)
    except TelegramError:
        client = None  # never logged in, or already revoked elsewhere: nothing to tell Telegram
    if client is not None:
        try:
            revoked = await client.log_out()  # disconnects too
        finally:
            if client.session is not None:
                await client.disconnect()
    with session_scope(settings) as db:
        update_owner(db, session_encrypted=None)
    return revoked


# -- the registry of started logins ------------------------------------------------------------


def _register(pending: _Pending) -> str:
    login_id = secrets.token_urlsafe(24)
    _pending[login_id] = pending
    return login_id


async def _get(login_id: str) -> _Pending:
    await _drop_expired()
    pending = _pending.get(login_id)
    if pending is None:
        raise TelegramError(
            "This login has expired or does not exist.", hint="Start the login again."
        )
    return pending


async def _close(login_id: str) -> None:
    pending = _pending.pop(login_id, None)
    if pending is not None:
        await pending.client.disconnect()


async def _drop_expired() -> None:
    now = time.monotonic()
    for login_id in [k for k, p in _pending.items() if p.expires_monotonic <= now]:
        await _close(login_id)


async def _sign_in(
    login_id: str,
    pending: _Pending,
    sign_in: Awaitable[User],
    *,
    retryable: tuple[type[errors.RPCError], ...],
) -> LoginResult:
    """Finish the login ``sign_in`` signs in, or answer that a 2FA password is needed.

    A ``retryable`` error (a mistyped code or password, a flood wait) keeps the login for
    another try; any other error from Telegram ends it.
    """
    try:
        user = await sign_in
    except errors.SessionPasswordNeededError:
        return await _password_needed(pending)
    except retryable as exc:
        raise telegram_error(exc) from exc
    except errors.RPCError as exc:
        await _close(login_id)
        raise telegram_error(exc) from exc
    return await _finish(login_id, user)


async def _password_needed(pending: _Pending) -> LoginResult:
    try:
        password = await pending.client(functions.account.GetPasswordRequest())
    except errors.RPCError:
        password = None  # the hint is a courtesy; signing in fetches this again anyway
    return LoginResult(needs_password=True, password_hint=getattr(password, "hint", None))


async def _finish(login_id: str, user: User) -> LoginResult:
    """Store the owner and the encrypted session, then let the client go."""
    pending = _pending[login_id]
    client = pending.client
    session = client.session.save()
    settings = pending.settings
    try:
        with session_scope(settings) as db:
            owner = get_owner(db)
            if owner.tg_user_id is not None and owner.tg_user_id != user.id:
                raise TelegramError(
                    f"This twin belongs to another Telegram account (id {owner.tg_user_id}).",
                    hint="Log in with that account; a second person needs a twin of their "
                    "own (its own data dir).",
                )
            account = OwnerInfo(
                tg_user_id=user.id,
                first_name=user.first_name,
                last_name=user.last_name,
                username=user.username,
                phone=user.phone,
            )
            update_owner(
                db,
                **account.model_dump(),
                session_encrypted=encrypt(settings, session),
                api_id=settings.api_id,
            )
    except TelegramError:
        # A session for the wrong account must not linger at Telegram either.
        await asyncio.shield(client.log_out())
        _pending.pop(login_id, None)
        raise
    await _close(login_id)
    return LoginResult(owner=account)


def _qr_ticket(login_id: str, qr: QRLogin) -> QrTicket:
    return QrTicket(login_id=login_id, url=qr.url, expires_unix=int(qr.expires.timestamp()))
