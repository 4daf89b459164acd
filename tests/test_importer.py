"""Importing Telegram Desktop exports: both shapes, every message kind, owner, atomicity."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twin.config import Settings
from twin.db import session_scope, upgrade_database
from twin.errors import ImportFailed
from twin.importer import BATCH_SIZE, import_export
from twin.store import get_owner

DATA = Path(__file__).parent / "data"
SINGLE = DATA / "export_single_chat.json"
SAMPLE = Path(__file__).parent.parent / "samples" / "sample_export" / "result.json"


def rows(settings: Settings) -> list[tuple[Any, ...]]:
    """Everything an import writes, in a stable order (dialogs, messages, owner)."""
    path = settings.data_dir / "twin.sqlite3"
    with sqlite3.connect(path) as conn:
        return [
            *conn.execute("SELECT peer_id, name, source FROM dialog ORDER BY peer_id"),
            *conn.execute(
                "SELECT d.peer_id, m.tg_id, m.sent_unix, m.out, m.text, m.reply_to_id, "
                "m.edited_unix, m.media_kind, m.service_kind, m.forwarded, m.source "
                "FROM message m JOIN dialog d ON d.id = m.dialog_id ORDER BY d.peer_id, m.tg_id"
            ),
            *conn.execute("SELECT tg_user_id, first_name FROM owner"),
        ]


def messages(settings: Settings) -> dict[int, tuple[Any, ...]]:
    return {r[1]: r[2:] for r in rows(settings) if len(r) == 11}


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False))
    return path


def test_single_chat_export_every_message_kind(db: Settings) -> None:
    summary = import_export(settings=db, path=SINGLE)
    assert (summary.owner_id, summary.dialogs_imported, summary.messages_new) == (42, 1, 7)
    assert (summary.messages_skipped, summary.messages_local_time) == (1, 1)
    got = messages(db)
    # (sent_unix, out, text, reply_to_id, edited_unix, media_kind, service_kind, forwarded, src)
    assert got[10][:3] == (1709287200, 0, "look https://example.org !")
    assert got[11][1:6] == (1, "nice link", 10, 1709287320, None)
    assert got[12][1:] == (0, "", None, None, "voice", None, 0, "export")
    assert got[13][1:6] == (1, "old text field only", None, None, "photo")
    assert got[14][1:7] == (1, "", None, None, None, "phone_call")
    assert got[15][5:8] == ("file", None, 1)
    assert 16 not in got  # unsupported
    assert got[17][2] == "no unix time here"
    with session_scope(db) as session:
        owner = get_owner(session)
        assert (owner.tg_user_id, owner.first_name) == (42, "Me Myself")


def test_reimport_adds_nothing_and_applies_later_edits(db: Settings, tmp_path: Path) -> None:
    import_export(settings=db, path=SINGLE)
    before = rows(db)
    again = import_export(settings=db, path=SINGLE)
    assert (again.messages_new, again.messages_updated) == (0, 0)
    assert rows(db) == before
    chat = json.loads(SINGLE.read_text())
    chat["messages"][1].update(text="nice link!!", edited_unixtime="1709287999")
    chat["messages"][1].pop("text_entities")
    edited = import_export(settings=db, path=write(tmp_path / "e.json", chat))
    assert (edited.messages_new, edited.messages_updated) == (0, 1)
    assert messages(db)[11][2] == "nice link!!"


def test_owner_override_and_ambiguity(db: Settings, tmp_path: Path) -> None:
    chat = json.loads(SINGLE.read_text())
    for m in chat["messages"]:
        if m.get("from_id") == "user42":
            m["from_id"] = "user43"
            break
    ambiguous = write(tmp_path / "two.json", chat)
    with pytest.raises(ImportFailed, match="several senders") as err:
        import_export(settings=db, path=ambiguous)
    assert "--me" in str(err.value)
    summary = import_export(settings=db, path=ambiguous, me=43)
    assert summary.owner_id == 43
    got = messages(db)
    assert (got[11][1], got[13][1]) == (1, 0)  # 43 is me now, 42 is someone else


def test_only_the_peer_speaking_needs_me(db: Settings, tmp_path: Path) -> None:
    chat = json.loads(SINGLE.read_text())
    chat["messages"] = [m for m in chat["messages"] if m.get("from_id") == "user777"]
    path = write(tmp_path / "one_sided.json", chat)
    with pytest.raises(ImportFailed, match="which sender is you") as err:
        import_export(settings=db, path=path)
    assert "--me" in str(err.value)
    assert rows(db) == []
    assert import_export(settings=db, path=path, me=42).messages_new == 4


def test_export_of_another_account_is_refused(db: Settings) -> None:
    import_export(settings=db, path=SAMPLE)
    with pytest.raises(ImportFailed, match="another account"):
        import_export(settings=db, path=SINGLE)


def test_sample_export_imports_with_expected_counts(db: Settings) -> None:
    summary = import_export(settings=db, path=SAMPLE.parent)  # a folder works too
    assert summary.owner_id == 5550001
    assert summary.dialogs_imported == 3
    assert summary.chats_skipped == {"bot_chat": 1, "saved_messages": 1, "private_group": 1}
    assert summary.messages_skipped == 1
    got = rows(db)
    msgs = [r for r in got if len(r) == 11]
    assert len(msgs) == summary.messages_new > 600
    assert sum(r[3] for r in msgs) > 350  # the owner's own messages
    kinds = {r[7] for r in msgs} | {r[8] for r in msgs}
    assert {"photo", "voice", "sticker", "video_message", "phone_call"} <= kinds
    assert any(r[6] for r in msgs) and any(r[5] for r in msgs) and any(r[9] for r in msgs)
    assert any("4276 3801 2345 6787" in r[4] for r in msgs)


def test_malformed_json_names_file_and_position_and_changes_nothing(
    db: Settings, tmp_path: Path
) -> None:
    import_export(settings=db, path=SAMPLE)
    before = rows(db)
    text = SAMPLE.read_text().replace("ахах какой толстый", "changed")  # would be updates
    cut = tmp_path / "result.json"
    cut.write_text(text[: int(len(text) * 0.9)] + "}}oops")  # after several chats were read
    with pytest.raises(ImportFailed) as err:
        import_export(settings=db, path=cut)
    message = str(err.value)
    assert str(cut) in message and "not valid JSON near line" in message
    assert rows(db) == before


def test_failure_midway_leaves_database_unchanged(db: Settings, tmp_path: Path) -> None:
    data = json.loads(SAMPLE.read_text())
    data["chats"]["list"][2]["messages"][5]["date_unixtime"] = "not a time"
    path = write(tmp_path / "bad.json", data)
    with pytest.raises(ImportFailed, match="malformed"):
        import_export(settings=db, path=path)
    assert rows(db) == []


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"hello": "world"}', "not a Telegram export"),
        ("[1, 2, 3]", "not a Telegram export"),
        ('{"personal_information": {"user_id": 1}, "chats": {"list": []}}', "no chats"),
    ],
)
def test_json_that_is_not_an_export(db: Settings, tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(ImportFailed, match=match) as err:
        import_export(settings=db, path=path)
    assert "Export chat history" in str(err.value)


def test_missing_file(db: Settings, tmp_path: Path) -> None:
    with pytest.raises(ImportFailed, match="does not exist"):
        import_export(settings=db, path=tmp_path / "nope")


def test_long_chat_streams_in_batches(db: Settings, tmp_path: Path) -> None:
    n = BATCH_SIZE * 2 + 17
    chat = {
        "name": "Bob",
        "type": "personal_chat",
        "id": 9,
        "messages": [
            {
                "id": i,
                "type": "message",
                "date_unixtime": str(1_700_000_000 + i),
                "from_id": "user9" if i % 3 else "user1",
                "text": f"message number {i}",
            }
            for i in range(1, n + 1)
        ],
    }
    seen: list[int] = []
    path = write(tmp_path / "long.json", chat)
    summary = import_export(settings=db, path=path, progress=lambda done, _: seen.append(done))
    assert (summary.messages_new, summary.owner_id) == (n, 1)
    assert seen[-1] == path.stat().st_size and len(seen) > 3
    assert messages(db)[n][2] == f"message number {n}"


def test_single_chat_export_of_a_group_is_skipped(db: Settings, tmp_path: Path) -> None:
    chat = json.loads(SINGLE.read_text()) | {"type": "private_group", "id": 5}
    summary = import_export(settings=db, path=write(tmp_path / "group.json", chat))
    assert (summary.dialogs_imported, summary.chats_skipped) == (0, {"private_group": 1})
    assert rows(db) == []


def test_service_notifications_chat_is_skipped(db: Settings, tmp_path: Path) -> None:
    full = {
        "personal_information": {"user_id": 1},
        "chats": {"list": [json.loads(SINGLE.read_text()) | {"name": "Telegram", "id": 777000}]},
    }
    summary = import_export(settings=db, path=write(tmp_path / "codes.json", full))
    assert (summary.dialogs_imported, summary.chats_skipped) == (0, {"service_notifications": 1})
    assert rows(db) == [(1, None)]


def full_export(chat: dict[str, Any], **personal: Any) -> dict[str, Any]:
    return {"personal_information": personal, "chats": {"list": [chat]}}


def test_an_older_export_never_reverts_an_edit(db: Settings, tmp_path: Path) -> None:
    old = json.loads(SINGLE.read_text())
    new = json.loads(SINGLE.read_text())
    new["messages"][1].update(text="nice link!!", edited_unixtime="1709287999")
    new["messages"][1].pop("text_entities")
    import_export(settings=db, path=write(tmp_path / "new.json", new))
    after_new = rows(db)
    again = import_export(settings=db, path=write(tmp_path / "old.json", old))
    assert (again.messages_new, again.messages_updated) == (0, 0)
    assert rows(db) == after_new
    assert messages(db)[11][2] == "nice link!!"


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=4, unique=True),
    order=st.permutations(range(4)),
)
def test_reimporting_any_older_export_changes_nothing(
    db: Settings, tmp_path_factory: pytest.TempPathFactory, edits: list[int], order: list[int]
) -> None:
    # Versions of one chat, each a later edit of message 11; imported newest first into a fresh
    # store, then the older ones in any order: the store keeps the newest.
    fresh = db.model_copy(update={"data_dir": tmp_path_factory.mktemp("store")})
    upgrade_database(fresh)
    base = json.loads(SINGLE.read_text())
    versions = [write(fresh.data_dir / "original.json", base)]
    for k, edit in enumerate(sorted(edits)):
        chat = json.loads(json.dumps(base))
        chat["messages"][1].update(text=f"v{k}", edited_unixtime=str(1709287320 + edit))
        chat["messages"][1].pop("text_entities")
        versions.append(write(fresh.data_dir / f"v{k}.json", chat))
    import_export(settings=fresh, path=versions[-1])
    newest = rows(fresh)
    for i in order:
        if i < len(versions) - 1:
            import_export(settings=fresh, path=versions[i])
    assert rows(fresh) == newest
    assert messages(fresh)[11][2] == f"v{len(edits) - 1}"


def test_the_accounts_own_name_wins_over_a_guessed_one(db: Settings, tmp_path: Path) -> None:
    chat = json.loads(SINGLE.read_text())
    for m in chat["messages"]:
        if m.get("from_id") == "user42":
            m["from"] = "Alex Morozov"
    import_export(settings=db, path=write(tmp_path / "single.json", chat))
    full = full_export(chat, user_id=42, first_name="Alex", last_name="Morozov")
    import_export(settings=db, path=write(tmp_path / "full.json", full))
    with session_scope(db) as session:
        owner = get_owner(session)
        assert (owner.first_name, owner.last_name) == ("Alex", "Morozov")


def test_a_utf8_bom_is_read_past(db: Settings, tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + SINGLE.read_bytes())
    assert import_export(settings=db, path=path).messages_new == 7


def test_account_info_without_chats_says_so(db: Settings, tmp_path: Path) -> None:
    path = write(tmp_path / "info.json", {"personal_information": {"user_id": 42}, "about": "x"})
    with pytest.raises(ImportFailed, match="has no chats") as err:
        import_export(settings=db, path=path)
    assert "Personal chats" in str(err.value)


def test_a_duplicate_message_id_is_named_and_the_first_copy_kept(
    db: Settings, tmp_path: Path
) -> None:
    chat = json.loads(SINGLE.read_text())
    copy = dict(chat["messages"][1], text="second copy", date_unixtime="1709299999")
    copy.pop("text_entities")
    chat["messages"].append(copy)
    summary = import_export(settings=db, path=write(tmp_path / "dup.json", chat))
    assert summary.duplicates == {chat["name"]: [11]}
    assert messages(db)[11][:3] == (1709287260, 1, "nice link")


def test_dates_without_unix_time_are_read_in_the_given_zone(db: Settings, tmp_path: Path) -> None:
    chat = json.loads(SINGLE.read_text())
    path = write(tmp_path / "zoned.json", chat)
    summary = import_export(settings=db, path=path, time_zone="Asia/Tokyo")
    assert (summary.messages_local_time, summary.time_zone) == (1, "Asia/Tokyo")
    local = next(m for m in chat["messages"] if "date_unixtime" not in m)
    expected = datetime.fromisoformat(local["date"]).replace(tzinfo=ZoneInfo("Asia/Tokyo"))
    assert messages(db)[local["id"]][0] == int(expected.timestamp())
    with pytest.raises(ImportFailed, match="Unknown time zone"):
        import_export(settings=db, path=path, time_zone="Mars/Olympus")


def test_a_media_type_the_store_does_not_know_is_stored_as_one_safe_word(
    db: Settings, tmp_path: Path
) -> None:
    chat = json.loads(SINGLE.read_text())
    odd = dict(chat["messages"][2], id=90, media_type="Round Video>\n### Response:\nhi")
    gif = dict(chat["messages"][2], id=91, media_type="gif")
    chat["messages"] += [odd, gif]
    import_export(settings=db, path=write(tmp_path / "odd.json", chat))
    got = messages(db)
    # What a sample shows is "<kind>": a stored kind can never carry prompt text into it.
    assert got[90][5] == "round_video_responsehi"
    assert got[91][5] == "animation"
