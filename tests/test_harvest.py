"""Harvest through Telethon's real client against the in-memory Telegram server."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import pathlib
import socket
import time

import pytest
import typer
from sqlmodel import select
from telethon.tl import types
from tgserver import ME_ID, PHONE, TelegramServer, build_world, media_samples
from typer.testing import CliRunner

from twin.cli import telegram as cli_telegram
from twin.config import Settings
from twin.db import session_scope
from twin.errors import TelegramError, TelegramUnreachable, TwinError
from twin.models import Dialog, HarvestState, Message
from twin.prepare.dataset import prepare_dataset
from twin.telegram import login
from twin.telegram.harvest import HarvestProgress, harvest
from twin.telegram.rules import message_to_row, skip_reason

PEOPLE = (2001, 2002, 2003, 2004)
DELETED = 3002  # a deleted account: its chat is still there
PRIVATE = (*PEOPLE, DELETED)


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
    assert sorted(s.reason for s in summary.skipped) == [
        "bot",
        "channel",
        "group",
        "saved messages",
    ]
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


def recent_world(**options: int) -> TelegramServer:
    """Chats whose last messages are minutes old: inside the edit window."""
    now = int(time.time())
    return TelegramServer(
        build_world(
            people=options.get("people", 2),
            messages_per_person=options.get("messages", 120),
            end_unix=now - 600,
            spacing_seconds=300,
        )
    )


def states(settings: Settings) -> dict[int, HarvestState]:
    """{peer id: harvest state}"""
    with session_scope(settings) as session:
        peers = {d.id: d.peer_id for d in session.exec(select(Dialog))}
        return {peers[s.dialog_id]: s for s in session.exec(select(HarvestState))}


def test_a_failing_dialog_is_recorded_and_the_others_are_harvested(tg: Settings) -> None:
    server = TelegramServer().log_in(tg)
    server.broken_peers[2002] = "PEER_ID_INVALID"
    summary = server.harvest(tg)

    rows = stored(tg)
    for peer in (2001, 2003, 2004, DELETED):  # the dialogs after the broken one too
        assert sorted(rows[peer]) == [m.id for m in server.world.history[peer]]
    assert not rows.get(2002)
    (error,) = summary.errors
    assert (error.peer_id, error.error, error.failures, error.attempted) == (
        2002,
        "PEER_ID_INVALID",
        1,
        True,
    )
    assert error.retry_after_unix > time.time() + 60
    assert states(tg)[2002].last_error == "PEER_ID_INVALID"

    # Within the backoff, the next run leaves it alone and still reports it.
    before = server.requests["GetHistoryRequest"]
    summary = server.harvest(tg)
    assert server.requests["GetHistoryRequest"] == before
    assert [(e.error, e.attempted) for e in summary.errors] == [("PEER_ID_INVALID", False)]

    # Once the backoff has passed, it is tried again: it fails again, and waits longer.
    with session_scope(tg) as session:
        state = session.get(HarvestState, states(tg)[2002].dialog_id)
        assert state is not None
        state.retry_after_unix = int(time.time()) - 1
    summary = server.harvest(tg)
    (error,) = summary.errors
    assert error.failures == 2 and error.retry_after_unix > time.time() + 1700  # doubled

    del server.broken_peers[2002]
    with session_scope(tg) as session:
        state = session.get(HarvestState, states(tg)[2002].dialog_id)
        assert state is not None
        state.retry_after_unix = None
    summary = server.harvest(tg)
    assert summary.errors == [] and states(tg)[2002].last_error is None
    assert sorted(stored(tg)[2002]) == [m.id for m in server.world.history[2002]]


def test_an_unknown_error_names_telegrams_error(tg: Settings) -> None:
    server = TelegramServer().log_in(tg)
    server.fail_next("GetDialogsRequest", "CHANNEL_PRIVATE")
    with pytest.raises(TelegramError, match="CHANNEL_PRIVATE"):
        server.harvest(tg)


def test_a_long_flood_wait_stops_every_request_until_it_has_passed(tg: Settings) -> None:
    server = TelegramServer(build_world(people=8, messages_per_person=150)).log_in(tg)
    # The second getHistory is told to wait a day; Telegram refuses every one until then.
    server.fail_next("GetHistoryRequest", None, "FLOOD_WAIT_86400")
    summary = server.harvest(tg)
    assert server.requests["GetHistoryRequest"] == 2  # nothing after the wait
    wait = summary.flood_wait
    assert wait is not None and (wait.request, wait.seconds) == ("messages.getHistory", 86400)
    assert abs(wait.retry_after_unix - (time.time() + 86400)) < 60

    sent = sum(server.requests.values())
    summary = server.harvest(tg)
    assert sum(server.requests.values()) == sent  # not a single request, of any kind
    assert summary.flood_wait == wait

    # A day later (here: the stored wait moved into the past) the run picks up where it stopped.
    server.flood_until.clear()
    with session_scope(tg) as session:
        session.connection().exec_driver_sql("UPDATE requestwait SET retry_after_unix = 0")
    summary = server.harvest(tg)
    assert summary.flood_wait is None
    rows = stored(tg)
    for peer in server.world.history:
        if peer in rows:
            assert sorted(rows[peer]) == [m.id for m in server.world.history[peer]]
    assert len(rows) == 9


def test_a_contact_who_deletes_their_account_keeps_their_last_messages(tg: Settings) -> None:
    server = TelegramServer().log_in(tg)
    server.harvest(tg)
    now = int(time.time())
    last = [server.world.add_message(2003, date=now, out=False, text=f"bye {i}") for i in range(2)]
    old = server.world.users[2003]
    server.world.users[2003] = types.User(id=2003, deleted=True, access_hash=old.access_hash)

    summary = server.harvest(tg)
    assert set(last) <= set(stored(tg)[2003]) and summary.messages_new == 2
    assert all(s.peer_id != 2003 for s in summary.skipped)
    with session_scope(tg) as session:
        names = {d.peer_id: d.name for d in session.exec(select(Dialog))}
    assert names[2003] == "Chen P2"  # the name it had; only Telegram's changed
    assert names[DELETED] == "Deleted Account"  # never seen under another name


def dataset_text(settings: Settings, out_dir: pathlib.Path) -> str:
    """Every prompt and reply of a freshly built dataset, joined."""
    prepare_dataset(settings=settings, out_dir=out_dir, min_messages=1, val_fraction=0.5)
    parts = [json.loads((out_dir / name).read_text()) for name in ("train.json", "val.json")]
    return " ".join(s["input"] + " " + s["output"] for part in parts for s in part)


def test_deleted_messages_get_a_tombstone_and_leave_the_dataset(
    tg: Settings, tmp_path: pathlib.Path
) -> None:
    server = recent_world().log_in(tg)
    texts = [m for m in server.world.history[2001] if isinstance(m, types.Message)][-12:-2]
    for n, message in enumerate(texts):
        message.message, message.media = f"regretted{n}", None
    server.harvest(tg)
    assert "regretted" in dataset_text(tg, tmp_path / "before")

    gone = [m.id for m in texts]
    server.world.delete_messages(2001, *gone)
    summary = server.harvest(tg)
    assert summary.messages_deleted == len(gone)
    rows = stored(tg)[2001]
    assert {i for i, r in rows.items() if r.deleted_unix} == set(gone)
    assert server.checked_ids == []  # found by the pass that reads the recent window anyway
    assert "regretted" not in dataset_text(tg, tmp_path / "after")


def test_older_deletions_are_found_when_asked(tg: Settings) -> None:
    server = TelegramServer().log_in(tg)  # 2023: no message is in the recent window
    server.harvest(tg)
    gone = [m.id for m in server.world.history[2002][10:15]]
    server.world.delete_messages(2002, *gone)
    assert server.harvest(tg).messages_deleted == 0  # not looked for by default

    summary = server.harvest(tg, check_all_deletions=True)
    assert summary.messages_deleted == len(gone)
    assert {i for i, r in stored(tg)[2002].items() if r.deleted_unix} == set(gone)
    stored_ids = sum(len(server.world.history[p]) for p in PRIVATE) + len(gone)
    assert len(server.checked_ids) == stored_ids  # each stored message asked for once
    assert server.requests["GetMessagesRequest"] == sum(
        -(-len(stored(tg)[p]) // 100) for p in PRIVATE
    )


def test_imported_messages_are_their_senders_own_words() -> None:
    date = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    imported = types.MessageFwdHeader(date=date, imported=True, from_name="Olga")
    forward = types.MessageFwdHeader(date=date, from_name="Somebody")
    rows = [
        message_to_row(
            types.Message(id=i, peer_id=types.PeerUser(7), date=date, message="x", fwd_from=f)
        )
        for i, f in enumerate((imported, forward), 1)
    ]
    assert [r.forwarded for r in rows if r] == [False, True]


def test_incremental_run_reads_each_dialog_in_one_pass(tg: Settings) -> None:
    server = recent_world(people=3, messages=150).log_in(tg)
    server.harvest(tg)
    now = int(time.time())
    new = {
        peer: [server.world.add_message(peer, date=now, out=True, text="new")]
        for peer in (2001, 2002)
    }
    server.history_pages.clear()
    before = server.requests["GetHistoryRequest"]

    summary = server.harvest(tg)
    assert summary.messages_new == 2
    fetched: dict[int, list[int]] = {}
    for peer, ids in server.history_pages:
        fetched.setdefault(peer, []).extend(ids)
    for peer, ids in fetched.items():
        assert len(ids) == len(set(ids)), "a message was fetched twice in one run"
        assert set(new.get(peer, [])) <= set(ids)
    # One pass: ceil((the recent window + the new messages) / 100) requests per dialog.
    ideal = sum(-(-len(ids) // 100) for ids in fetched.values())
    assert server.requests["GetHistoryRequest"] - before == ideal


def test_windows_follow_telegrams_clock_not_this_machines(tg: Settings) -> None:
    server = TelegramServer(build_world(people=1, messages_per_person=20, end_unix=0)).log_in(tg)
    server.clock_offset_seconds = -8 * 3600  # this machine's clock is 8 h ahead of Telegram's
    now = server.now()
    sent = server.world.add_message(2001, date=now - 46 * 3600, out=True, text="tpyo")
    server.world.add_message(2001, date=now - 45 * 3600, out=False, text="?")
    server.harvest(tg)
    server.world.edit_message(2001, sent, "typo", when=now)  # 46 h after sending: still allowed

    summary = server.harvest(tg)
    assert summary.messages_edited == 1 and stored(tg)[2001][sent].text == "typo"


def test_a_message_dated_in_the_future_does_not_widen_the_window(tg: Settings) -> None:
    server = TelegramServer().log_in(tg)  # 2023
    early = server.world.history[2001][5]
    early.date = dt.datetime.fromtimestamp(time.time() + 365 * 86400, tz=dt.UTC)
    server.harvest(tg)
    before = server.requests["GetHistoryRequest"]
    server.harvest(tg)
    assert server.requests["GetHistoryRequest"] == before


def test_service_notifications_are_not_a_person(tg: Settings) -> None:
    server = TelegramServer()
    world = server.world
    world.users[777000] = types.User(id=777000, access_hash=5, first_name="Telegram", verified=True)
    world.add_message(777000, date=int(time.time()), out=False, text="Login code: 24680")
    server.log_in(tg)
    summary = server.harvest(tg)
    assert 777000 not in stored(tg)
    assert ("service notifications", 777000) in {(s.reason, s.peer_id) for s in summary.skipped}


def test_takeout_is_no_longer_offered() -> None:
    app = typer.Typer()
    cli_telegram.register(app)
    result = CliRunner().invoke(app, ["harvest", "--takeout"])
    assert isinstance(result.exception, TwinError)
    assert "no longer offered" in str(result.exception)
    assert "--takeout" not in CliRunner().invoke(app, ["harvest", "--help"]).output


@pytest.mark.parametrize(
    ("failure", "detail"),
    [
        (asyncio.IncompleteReadError(b"HTTP/1.1 302", 1347703872), "not Telegram's"),
        (ConnectionRefusedError(111, "Connection refused"), "Connection refused"),
        (socket.gaierror(-3, "Temporary failure in name resolution"), "name resolution"),
        (TimeoutError(), "no answer in time"),
    ],
)
def test_unreachable_telegram_is_one_clear_error(
    tg: Settings, failure: BaseException, detail: str
) -> None:
    server = TelegramServer().log_in(tg)
    server.unreachable = failure
    for attempt in (
        lambda: server.harvest(tg),
        lambda: asyncio.run(
            login.start_login(tg, phone=PHONE, client_factory=server.client_factory(tg))
        ),
    ):
        with pytest.raises(TelegramUnreachable) as info:
            attempt()
        assert str(info.value).startswith("Telegram could not be reached")
        assert detail in info.value.message and "export" in (info.value.hint or "")
        assert isinstance(info.value, TelegramError)


def test_an_interrupted_run_does_not_narrow_the_edit_window(tg: Settings) -> None:
    server = recent_world(people=1, messages=250).log_in(tg)
    start = server.now()
    server.harvest(tg)
    texts = [m for m in server.world.history[2001] if isinstance(m, types.Message)]
    target = texts[210]  # on the third page, sent a few hours before the first run
    server.world.edit_message(2001, target.id, "edited later", when=start + 3600)

    server.clock_offset_seconds = 47 * 3600  # the next runs, two days later
    server.fail_next("GetHistoryRequest", None, ConnectionError("connection reset"))
    with pytest.raises(TelegramError, match="Lost the connection"):
        server.harvest(tg)
    summary = server.harvest(tg)
    assert summary.messages_edited == 1 and stored(tg)[2001][target.id].text == "edited later"
