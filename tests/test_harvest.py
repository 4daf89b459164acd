"""Harvest through Telethon's real client against the in-memory Telegram server."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest
from sqlmodel import select
from telethon.tl import types
from tgserver import ME_ID, TelegramServer, build_world, media_samples

from twin.config import Settings, get_settings
from twin.db import session_scope
from twin.errors import TelegramError
from twin.models import Dialog, HarvestState, Message
from twin.telegram.harvest import (
    HarvestProgress,
    harvest,
    message_to_row,
    skip_reason,
)

PEOPLE = (2001, 2002, 2003, 2004)
DELETED = 3002  # a deleted account: its chat is still there
PRIVATE = (*PEOPLE, DELETED)


@pytest.fixture
def tg(db: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("TWIN_API_ID", "1234567")
    monkeypatch.setenv("TWIN_API_HASH", "0f" * 16)
    get_settings.cache_clear()
    return get_settings()


def stored(settings: Settings) -> dict[int, dict[int, Message]]:
    """{peer id: {tg id: row}}"""
    with session_scope(settings) as session:
        dialogs = {d.id: d.peer_id for d in session.exec(select(Dialog))}
        out: dict[int, dict[int, Message]] = {peer: {} for peer in dialogs.values()}
        for m in session.exec(select(Message)):
            out[dialogs[m.dialog_id]][m.tg_id] = m
    return out


def test_harvest_stores_exactly_the_private_chats(tg: Settings) -> None:
    server = TelegramServer().log_in(tg)
    seen: list[HarvestProgress] = []
    summary = server.harvest(tg, progress=lambda p: seen.append(p.model_copy()))

    rows = stored(tg)
    history = server.world.history
    assert sorted(rows) == list(PRIVATE)
    for peer in PRIVATE:
        assert sorted(rows[peer]) == [m.id for m in history[peer]]
        for m in history[peer]:
            row = rows[peer][m.id]
            assert row.out == bool(m.out)
            assert row.forwarded == (getattr(m, "fwd_from", None) is not None)
            reply = getattr(m, "reply_to", None)
            assert row.reply_to_id == (reply.reply_to_msg_id if reply else None)
            if isinstance(m, types.MessageService):
                assert (row.service_kind, row.text) == ("phone_call", "")
            else:
                assert row.text == m.message and row.service_kind is None
    all_rows = [r for peer in PRIVATE for r in rows[peer].values()]
    assert any(r.service_kind == "phone_call" for r in all_rows)
    assert any(r.edited_unix for r in all_rows) and any(r.forwarded for r in all_rows)
    kinds = {r.media_kind for r in all_rows}
    assert kinds >= {k for k in media_samples(__import__("random").Random(0)) if k} | {None}

    assert summary.messages_new == len(all_rows) and summary.dialogs_harvested == 5
    assert sorted(s.reason for s in summary.skipped) == ["bot", "channel", "group", "saved messages"]
    # One request per 100 messages and no extra request to find the end.
    assert server.requests["GetHistoryRequest"] == sum(-(-len(history[p]) // 100) for p in PRIVATE)
    assert seen[-1].dialogs_done == seen[-1].dialogs_total == 5
    assert seen[-1].messages_new == len(all_rows)


def test_message_conversion_rules() -> None:
    date = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    samples = media_samples(__import__("random").Random(1))
    for kind, media in samples.items():
        m = types.Message(id=5, peer_id=types.PeerUser(7), date=date, message="x", media=media)
        assert message_to_row(m).media_kind == kind  # type: ignore[union-attr]
    call = types.MessageService(
        id=6,
        peer_id=types.PeerUser(7),
        date=date,
        out=True,
        action=types.MessageActionPhoneCall(call_id=1),
    )
    row = message_to_row(call)
    assert row is not None and (row.service_kind, row.text, row.out) == ("phone_call", "", True)
    assert message_to_row(types.MessageEmpty(id=7, peer_id=types.PeerUser(7))) is None


def test_skip_rules() -> None:
    assert skip_reason(types.User(id=1, first_name="A")) is None
    assert skip_reason(types.User(id=1, is_self=True)) == "saved messages"
    assert skip_reason(types.User(id=1, bot=True)) == "bot"
    assert skip_reason(types.User(id=1, deleted=True)) is None  # its chat is still there
    assert skip_reason(types.User(id=777000, first_name="Telegram")) == "service notifications"
    photo = types.ChatPhotoEmpty()
    assert skip_reason(types.Chat(1, "g", photo, 3, None, 1)) == "group"
    assert skip_reason(types.Channel(1, "c", photo, None, broadcast=True)) == "channel"
    assert skip_reason(types.Channel(1, "s", photo, None, megagroup=True)) == "group"


def test_second_run_fetches_only_new_messages(tg: Settings) -> None:
    server = TelegramServer().log_in(tg)
    server.harvest(tg)
    now = int(time.time())
    new_ids = [
        server.world.add_message(2002, date=now, out=i % 2 == 0, text=f"new {i}") for i in range(3)
    ]
    server.history_pages.clear()
    before = server.requests["GetHistoryRequest"]

    summary = server.harvest(tg)
    assert summary.messages_new == 3
    assert server.requests["GetHistoryRequest"] - before == 1
    assert [sorted(ids) for _, ids in server.history_pages] == [new_ids]


def test_kill_and_resume_loses_nothing_and_refetches_nothing(tg: Settings) -> None:
    server = TelegramServer().log_in(tg)
    # The connection dies while asking for the 5th page.
    server.fail_next(
        "GetHistoryRequest", None, None, None, None, ConnectionError("connection reset")
    )
    with pytest.raises(TelegramError, match="Lost the connection") as info:
        server.harvest(tg)
    assert "resumes" in (info.value.hint or "")
    first = stored(tg)
    stored_ids = {(p, i) for p, rows in first.items() for i in rows}
    answered = {(p, i) for p, ids in server.history_pages for i in ids}
    assert stored_ids == answered and len(server.history_pages) == 4  # each page was committed

    server.history_pages.clear()
    summary = server.harvest(tg)
    refetched = {(p, i) for p, ids in server.history_pages for i in ids}
    assert not refetched & stored_ids
    rows = stored(tg)
    for peer in PRIVATE:
        assert sorted(rows[peer]) == [m.id for m in server.world.history[peer]]
    assert summary.messages_new == sum(len(r) for r in rows.values()) - len(stored_ids)


def test_short_flood_wait_is_slept_through(tg: Settings) -> None:
    server = TelegramServer().log_in(tg)
    server.fail_next("GetHistoryRequest", "FLOOD_WAIT_1")
    started = time.monotonic()
    summary = server.harvest(tg)
    assert time.monotonic() - started >= 1
    assert summary.flood_wait is None and summary.dialogs_harvested == 5


def test_edit_within_the_window_is_picked_up(tg: Settings) -> None:
    now = int(time.time())
    server = TelegramServer(
        build_world(people=2, messages_per_person=120, end_unix=now - 600, spacing_seconds=300)
    ).log_in(tg)
    server.harvest(tg)
    target = next(
        m for m in server.world.history[2001] if isinstance(m, types.Message) and not m.edit_date
    )
    server.world.edit_message(2001, target.id, "fixed typo", when=now)

    summary = server.harvest(tg)
    assert summary.messages_edited == 1 and summary.messages_new == 0
    row = stored(tg)[2001][target.id]
    assert (row.text, row.edited_unix) == ("fixed typo", now)


def test_old_history_is_not_rescanned(tg: Settings) -> None:
    server = TelegramServer().log_in(tg)  # messages from 2023: long past editing
    server.harvest(tg)
    before = server.requests["GetHistoryRequest"]
    summary = server.harvest(tg)
    assert server.requests["GetHistoryRequest"] == before and summary.messages_rescanned == 0


def test_harvest_without_login_says_to_log_in(tg: Settings) -> None:
    with pytest.raises(TelegramError, match="Not logged in") as info:
        asyncio.run(harvest(settings=tg))
    assert "twin login" in (info.value.hint or "")
    assert ME_ID  # the server's owner id is what login stores
