"""Login and logout through Telethon's real client against the in-memory Telegram server."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from tgserver import CODE, PHONE, TelegramServer

from twin.config import Settings
from twin.db import session_scope
from twin.errors import ConfigError, TelegramError
from twin.store import get_owner
from twin.telegram import login
from twin.telegram.client import load_session

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def stored_owner(settings: Settings) -> Any:
    with session_scope(settings) as session:
        return get_owner(session)


def assert_session_works(server: TelegramServer, settings: Settings) -> None:
    """The stored session opens a logged-in client (what harvest will do)."""

    async def check() -> bool:
        client = server.client_factory(settings)(
            session=load_session(settings), receive_updates=False
        )
        await client.connect()
        try:
            return await client.is_user_authorized()
        finally:
            await client.disconnect()

    assert run(check())


def test_login_with_code_stores_owner_and_encrypted_session(tg: Settings) -> None:
    server = TelegramServer()

    async def flow() -> login.LoginResult:
        ticket = await login.start_login(
            tg, phone="+44 7911 123456", client_factory=server.client_factory(tg)
        )
        assert ticket.phone == PHONE
        return await login.submit_code(ticket.login_id, CODE)

    result = run(flow())
    assert not result.needs_password
    assert result.owner is not None and result.owner.tg_user_id == 1000
    owner = stored_owner(tg)
    assert (owner.tg_user_id, owner.first_name, owner.username) == (1000, "Olga", "olga")
    assert owner.session_encrypted and load_session(tg) not in owner.session_encrypted
    assert_session_works(server, tg)


def test_wrong_code_can_be_retried(tg: Settings) -> None:
    server = TelegramServer()

    async def flow() -> login.LoginResult:
        ticket = await login.start_login(tg, phone=PHONE, client_factory=server.client_factory(tg))
        with pytest.raises(TelegramError, match="code is wrong"):
            await login.submit_code(ticket.login_id, "11111")
        return await login.submit_code(ticket.login_id, CODE)

    assert run(flow()).owner is not None


def test_expired_code_ends_the_login(tg: Settings) -> None:
    server = TelegramServer()

    async def flow() -> None:
        ticket = await login.start_login(tg, phone=PHONE, client_factory=server.client_factory(tg))
        server.expire_codes()
        with pytest.raises(TelegramError, match="expired") as info:
            await login.submit_code(ticket.login_id, CODE)
        assert "new code" in (info.value.hint or "")
        with pytest.raises(TelegramError, match="expired or does not exist"):
            await login.submit_code(ticket.login_id, CODE)

    run(flow())
    assert stored_owner(tg).session_encrypted is None


def test_two_step_password_wrong_then_right(tg: Settings) -> None:
    server = TelegramServer(password="correct horse", password_hint="horse")

    async def flow() -> login.LoginResult:
        ticket = await login.start_login(tg, phone=PHONE, client_factory=server.client_factory(tg))
        step = await login.submit_code(ticket.login_id, CODE)
        assert step.needs_password and step.password_hint == "horse" and step.owner is None
        with pytest.raises(TelegramError, match="password is wrong"):
            await login.submit_password(ticket.login_id, "battery staple")
        return await login.submit_password(ticket.login_id, "correct horse")

    assert run(flow()).owner is not None
    assert server.requests["CheckPasswordRequest"] == 2
    assert_session_works(server, tg)


def test_invalid_phone_is_rejected_before_and_by_telegram(tg: Settings) -> None:
    server = TelegramServer()
    server.invalid_phones.add("+12025550143")
    factory = server.client_factory(tg)
    with pytest.raises(TelegramError, match="not a phone number"):
        run(login.start_login(tg, phone="12345", client_factory=factory))
    assert server.requests["SendCodeRequest"] == 0
    with pytest.raises(TelegramError, match="rejected the phone number"):
        run(login.start_login(tg, phone="+1 202 555 0143", client_factory=factory))


def test_flood_wait_is_reported_with_the_wait(tg: Settings) -> None:
    server = TelegramServer()
    server.fail_next("SendCodeRequest", "FLOOD_WAIT_7260")
    with pytest.raises(TelegramError, match="2 hours 1 minute") as info:
        run(login.start_login(tg, phone=PHONE, client_factory=server.client_factory(tg)))
    assert info.value.retry_after == 7260


def test_sign_up_is_not_supported(tg: Settings) -> None:
    server = TelegramServer()

    async def flow() -> None:
        ticket = await login.start_login(
            tg, phone="+4915123456789", client_factory=server.client_factory(tg)
        )
        await login.submit_code(ticket.login_id, CODE)

    with pytest.raises(TelegramError, match="no Telegram account") as info:
        run(flow())
    assert "official Telegram app" in (info.value.hint or "")


def test_missing_api_credentials(db: Settings) -> None:
    with pytest.raises(ConfigError, match="credentials are not set"):
        run(login.start_login(db, phone=PHONE))


def test_qr_login_recreates_an_expired_code_then_logs_in(tg: Settings) -> None:
    server = TelegramServer(qr_ttl_seconds=0)

    async def flow() -> login.LoginResult:
        ticket = await login.start_qr_login(tg, client_factory=server.client_factory(tg))
        assert ticket.url.startswith("tg://login?token=")
        server.qr_ttl_seconds = 60
        assert not server.scan_qr(ticket.url)  # too late: expired
        waited = await login.wait_qr(ticket.login_id, timeout=1)
        assert waited.qr is not None and waited.qr.url != ticket.url and waited.owner is None
        assert server.scan_qr(waited.qr.url)
        return await login.wait_qr(ticket.login_id, timeout=5)

    result = run(flow())
    assert result.owner is not None and result.owner.tg_user_id == 1000
    assert_session_works(server, tg)


def test_qr_login_with_two_step_password(tg: Settings) -> None:
    server = TelegramServer(password="pw")

    async def flow() -> login.LoginResult:
        ticket = await login.start_qr_login(tg, client_factory=server.client_factory(tg))
        assert server.scan_qr(ticket.url)  # scanned before anyone waits: not lost
        step = await login.wait_qr(ticket.login_id, timeout=5)
        assert step.needs_password
        return await login.submit_password(ticket.login_id, "pw")

    assert run(flow()).owner is not None


def test_logout_revokes_at_telegram_and_deletes_the_session(tg: Settings) -> None:
    server = TelegramServer()
    factory = server.client_factory(tg)

    async def flow() -> bool:
        ticket = await login.start_login(tg, phone=PHONE, client_factory=factory)
        await login.submit_code(ticket.login_id, CODE)
        return await login.logout(tg, client_factory=factory)

    assert run(flow())
    assert server.requests["LogOutRequest"] == 1
    assert not any(auth.authorized for auth in server.auths.values())
    assert stored_owner(tg).session_encrypted is None and load_session(tg) is None
    # Logging out again has nothing to revoke and says so.
    assert run(login.logout(tg, client_factory=factory)) is False


def test_a_second_account_is_refused_without_naming_a_setting(tg: Settings) -> None:
    """The message reaches the Telegram page too: it says what to do, not what to configure."""
    with session_scope(tg) as session:
        get_owner(session).tg_user_id = 77
    server = TelegramServer()

    async def flow() -> login.LoginResult:
        ticket = await login.start_login(
            tg, phone="+44 7911 123456", client_factory=server.client_factory(tg)
        )
        return await login.submit_code(ticket.login_id, CODE)

    with pytest.raises(TelegramError, match="another Telegram account") as refused:
        run(flow())
    assert "TWIN_" not in f"{refused.value.message} {refused.value.hint}"
