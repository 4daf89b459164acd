"""Import a Telegram Desktop export (``result.json``) into the store.

Two shapes are accepted: the full-account export (Settings → Advanced → Export Telegram data)
and a single chat's export (⋮ → Export chat history), both in JSON format. Only personal chats
are imported; every other chat is counted by type and skipped.

The file is streamed with ijson's C backend so a multi-GB export imports in bounded memory.
ijson builds each chat object for us; to keep a long chat from piling up in memory, every map
is created through `ChatStream.new_map` and, each time the parser asks for more bytes, the
finished messages of the chat being built are taken out of its ``messages`` list and written.
Everything is written in one transaction: a failure anywhere leaves the database as it was.
The price of that guarantee: the import holds SQLite's write lock from its first row to its
commit, which for a multi-million-message export is tens of seconds. Readers are never blocked
(WAL), but every other writer waits: a web request or a harvest that writes meanwhile blocks for
up to the 30 s busy timeout (`twin.db.BUSY_TIMEOUT_MS`) and then fails with "database is
locked". That is why the web app keeps an import's progress in memory instead of the job row,
and why a large import should not run alongside a harvest.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import ijson
import sqlalchemy.exc
from pydantic import BaseModel, Field
from sqlmodel import Session

from twin.config import Settings
from twin.db import session_scope
from twin.errors import ImportFailed
from twin.export_stream import READ_SIZE, ChatStream, Progress
from twin.models import Source
from twin.store import (
    SERVICE_NOTIFICATIONS_ID,
    MessageRow,
    get_owner,
    normalize_media_kind,
    upsert_dialog,
    upsert_message_rows,
)

try:  # the C backend is ~10x faster; the pure-Python one still works, slowly
    _ijson: Any = ijson.get_backend("yajl2_c")
except ImportError:  # pragma: no cover
    _ijson = ijson

EXPECTED = (
    "a result.json from Telegram Desktop → Export chat history / Export Telegram data, JSON format"
)
BATCH_SIZE = 5000

# Keys that mark a media message when there is no media_type, checked in this order.
MEDIA_KEYS: tuple[tuple[str, str], ...] = (
    ("photo", "photo"),
    ("contact_information", "contact"),
    ("location_information", "location"),
    ("place_name", "location"),
    ("poll", "poll"),
    ("game_title", "game"),
    ("invoice_information", "invoice"),
    ("file", "file"),
)
_MEDIA_KEY_NAMES = frozenset(key for key, _ in MEDIA_KEYS)
_EXPORT = Source.export.value
SERVICE_CHAT = "service_notifications"
"""How the chat with Telegram's own account (777000) is counted among the skipped chats."""


class ImportSummary(BaseModel):
    """What an import did."""

    path: Path
    owner_id: int | None
    """None when nothing was imported and the export does not say."""
    dialogs_imported: int = 0
    messages_new: int = 0
    messages_updated: int = 0
    """Already stored, changed by this import (an edit seen later)."""
    messages_skipped: int = 0
    """``unsupported`` messages the exporter could not render."""
    messages_local_time: int = 0
    """Messages without ``date_unixtime`` whose time was read from the local-time ``date``."""
    time_zone: str | None = None
    """The zone such ``date`` values were read in (None: this machine's)."""
    duplicates: dict[str, list[int]] = Field(default_factory=dict)
    """Message ids found more than once in one chat, by chat name (the first copy is kept)."""
    chats_skipped: dict[str, int] = Field(default_factory=dict)
    """Chats not imported, by export type (bot_chat, saved_messages, private_group, …)."""


# ---------------------------------------------------------------------------------------------
# Pure conversion of one exported message


def message_text(raw: dict[str, Any]) -> str:
    """The plain text of an exported message: ``text_entities`` joined, else ``text`` flattened.

    Args:
        raw: the message object from the export.
    """
    entities = raw.get("text_entities")
    if isinstance(entities, list):
        if len(entities) == 1 and isinstance(entities[0], dict):  # the common plain message
            return entities[0].get("text", "")
        return "".join(e.get("text", "") for e in entities if isinstance(e, dict))
    text = raw.get("text", "")
    if isinstance(text, list):
        return "".join(p if isinstance(p, str) else p.get("text", "") for p in text)
    return text if isinstance(text, str) else ""


def media_kind(raw: dict[str, Any]) -> str | None:
    """The media kind of an exported message (the API harvest's vocabulary), or None.

    Args:
        raw: the message object from the export.
    """
    media_type = raw.get("media_type")
    if media_type:
        return normalize_media_kind(str(media_type))
    if raw.keys().isdisjoint(_MEDIA_KEY_NAMES):  # one C-level test for the common text message
        return None
    for key, kind in MEDIA_KEYS:
        if key in raw:
            return kind
    return None


def sender_id(raw: dict[str, Any]) -> str | None:
    """``"user123"`` for whoever sent the message (``actor_id`` on service messages)."""
    return raw.get("from_id") or raw.get("actor_id")


def _unix(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


def convert_message(
    raw: dict[str, Any], *, me: str, dialog_id: int, zone: tzinfo | None = None
) -> tuple[MessageRow, bool]:
    """Turn an exported message into its ``message`` row; also say whether its time is local.

    The row is built positionally (`twin.store.MessageRow`): this runs once per message of a
    possibly multi-million-message export.

    Args:
        raw: a message object of type ``message`` or ``service``.
        me: the owner's ``from_id`` (``"user<id>"``).
        dialog_id: the `Dialog.id` the message belongs to.
        zone: the zone of ``date`` when ``date_unixtime`` is missing (None: this machine's).
    """
    get = raw.get
    sent = _unix(get("date_unixtime"))
    local = sent is None
    if sent is None:
        # Last resort: `date` is the exporting machine's local time without an offset.
        sent = int(datetime.fromisoformat(raw["date"]).replace(tzinfo=zone).timestamp())
    edited = get("edited_unixtime")
    service = get("type") == "service"
    return (
        (
            dialog_id,
            raw["id"],
            sent,
            (get("from_id") or get("actor_id")) == me,  # sender_id(raw), inlined
            "" if service else message_text(raw),
            get("reply_to_message_id"),
            None if edited is None else _unix(edited),
            None if service else media_kind(raw),
            (get("action") or "service") if service else None,
            "forwarded_from" in raw,
            _EXPORT,
        ),
        local,
    )


# ---------------------------------------------------------------------------------------------
# Streaming


def _open(path: Path) -> tuple[Path, int]:
    if path.is_dir():
        path = path / "result.json"
    if not path.is_file():
        raise ImportFailed(f"{path} does not exist.", hint=f"Give the path of {EXPECTED}.")
    return path, path.stat().st_size


# What a value of the wrong type (null text, a list as an id, an id beyond 64 bits, …) raises
# on its way from the parser to SQLite. Operational errors (disk full, locked) are not here.
_MALFORMED = (
    TypeError,
    ValueError,  # also pydantic's ValidationError and UnicodeDecodeError
    AttributeError,
    KeyError,
    IndexError,
    OverflowError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.IntegrityError,
    sqlalchemy.exc.IntegrityError,
    sqlalchemy.exc.ProgrammingError,
    sqlalchemy.exc.InterfaceError,
)


def _malformed(path: Path, exc: BaseException, where: str) -> ImportFailed:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return ImportFailed(
        f"{path} holds a value twin cannot read {where} ({type(exc).__name__}: {detail[:200]}).",
        hint=f"twin expects {EXPECTED}; export the chats again from Telegram Desktop.",
    )


def _parse_error(path: Path, stream: ChatStream, exc: Exception) -> ImportFailed:
    start = stream.position - stream.last_read
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ImportFailed(
        f"{path} is not valid JSON near line {stream.lines} "
        f"(bytes {start}–{stream.position}): {detail}",
        hint=f"Export again; twin expects {EXPECTED}. A file cut short by a full disk or an "
        "interrupted copy looks like this.",
    )


class _ExportHead(BaseModel):
    """What the top of the file says: its shape and the account it belongs to."""

    full: bool
    user_id: int | None = None
    first_name: str | None = None
    last_name: str | None = None
    username: str | None = None


def _read_head(path: Path, size: int) -> _ExportHead:
    """Scan the top-level keys up to ``chats`` (full export) or ``messages`` (one chat)."""
    info: dict[str, Any] = {}
    with path.open("rb") as f:
        stream = ChatStream(f, size=size, progress=None)
        try:
            for prefix, event, value in _ijson.parse(stream, use_float=True):
                if prefix == "" and event not in ("start_map", "map_key"):
                    break  # not an object, or an object without chats/messages
                if prefix == "" and event == "map_key" and value in ("chats", "messages"):
                    return _ExportHead(full=value == "chats", **info)
                if prefix.startswith("personal_information.") and event in ("number", "string"):
                    key = prefix.removeprefix("personal_information.")
                    if key in _ExportHead.model_fields:
                        info[key] = value
        except ijson.JSONError as exc:
            raise _parse_error(path, stream, exc) from exc
    if info:
        raise ImportFailed(
            f"{path} has no chats: it holds the account's information only.",
            hint="Export again with 'Personal chats' ticked (Settings → Advanced → Export "
            "Telegram data), in JSON format.",
        )
    raise ImportFailed(f"{path} is not a Telegram export.", hint=f"twin expects {EXPECTED}.")


def _chats(path: Path, stream: ChatStream, *, full: bool) -> Iterator[dict[str, Any]]:
    prefix = "chats.list.item" if full else ""
    try:
        yield from _ijson.items(
            stream, prefix, map_type=stream.new_map, use_float=True, buf_size=READ_SIZE
        )
    except ijson.JSONError as exc:
        raise _parse_error(path, stream, exc) from exc


# ---------------------------------------------------------------------------------------------
# Writing


class _Writer:
    """Turns chats and their messages into rows, in the open session."""

    def __init__(
        self, session: Session, *, head: _ExportHead, me: int | None, zone: tzinfo | None
    ) -> None:
        self.session = session
        self.head = head
        self.zone = zone
        self.seen: dict[int, set[int]] = {}  # peer → message ids of this export
        self.duplicates: dict[str, list[int]] = {}
        self.me = me if me is not None else head.user_id
        self.summary_counts: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.dialog_ids: dict[int, int] = {}
        self.pending: dict[int, list[MessageRow]] = {}
        self.unresolved: list[dict[str, Any]] = []  # single chat, owner not known yet
        self.connection = session.connection().connection.driver_connection
        if self.me is not None:
            self._claim_owner(self.me)

    def _claim_owner(self, owner_id: int, name: str | None = None) -> None:
        owner = get_owner(self.session)
        if owner.tg_user_id is not None and owner.tg_user_id != owner_id:
            raise ImportFailed(
                f"This export belongs to another account (user {owner_id}); twin's owner is "
                f"user {owner.tg_user_id}.",
                hint="Import an export made from your own account, or pass --me with your id.",
            )
        owner.tg_user_id = owner_id
        head = self.head
        if head.first_name or head.last_name:
            # The account's own personal_information wins over a name guessed from `from`
            # by an earlier single-chat import ("Alex Morozov" + "Morozov" would double up).
            owner.first_name, owner.last_name = head.first_name, head.last_name
        elif not (owner.first_name or owner.last_name):
            owner.first_name = name
        owner.username = head.username or owner.username
        self.me = owner_id

    def chat_type(self, chat: dict[str, Any]) -> str | None:
        """The chat's type once its id is known too (None while its head is still parsing)."""
        if "type" in chat and "id" in chat:
            return str(chat["type"])
        return None

    def importable(self, chat: dict[str, Any]) -> bool:
        # Telegram's own account (login codes) is a personal chat too, but nobody to learn from.
        return chat.get("type") == "personal_chat" and chat.get("id") not in (
            self.me,
            SERVICE_NOTIFICATIONS_ID,
        )

    def on_messages(self, chat: dict[str, Any], raws: list[dict[str, Any]]) -> None:
        """Messages finished while the chat is still being parsed."""
        if self.chat_type(chat) is None:
            chat["messages"][:0] = raws  # head not parsed yet: put them back for later
        elif self.importable(chat):
            self.add(chat, raws)
        else:
            self.summary_counts["dropped"] += len(raws)

    def end_chat(self, chat: dict[str, Any]) -> None:
        """The chat is complete: write what is left of it."""
        kind = self.chat_type(chat)
        if kind is None:
            raise ImportFailed(
                "A chat in the export has no type or id.", hint=f"twin expects {EXPECTED}."
            )
        if not self.importable(chat):
            self.skipped[SERVICE_CHAT if chat.get("id") == SERVICE_NOTIFICATIONS_ID else kind] += 1
            return
        self.add(chat, chat.get("messages") or [])
        if self.unresolved:
            raise ImportFailed(
                f"Cannot tell which sender is you in the chat with {chat.get('name')!r}.",
                hint="Pass --me with your Telegram user id (the from_id of your messages "
                "without the 'user' prefix).",
            )
        self.flush(chat)
        self.summary_counts["dialogs"] += 1

    def add(self, chat: dict[str, Any], raws: list[dict[str, Any]]) -> None:
        peer = int(chat["id"])
        if self.me is None:
            self.unresolved.extend(raws)
            self._derive_owner(chat, raws)
            if self.me is None:
                return
            raws, self.unresolved = self.unresolved, []
        me = f"user{self.me}"
        dialog_id = self.dialog_id(chat)
        batch = self.pending.setdefault(peer, [])
        append = batch.append
        seen = self.seen.setdefault(peer, set())
        skipped = local_time = 0
        zone = self.zone
        for raw in raws:
            if raw.get("type") not in ("message", "service"):
                skipped += 1
                continue
            tg_id = raw.get("id")
            if tg_id in seen:
                # Two copies of one id would merge into a row of neither (the first's time,
                # the second's text): keep the first, and say so.
                self.duplicates.setdefault(str(chat.get("name") or peer), []).append(tg_id)
                continue
            seen.add(tg_id)
            try:
                row, local = convert_message(raw, me=me, dialog_id=dialog_id, zone=zone)
            except (KeyError, ValueError, TypeError) as exc:
                raise ImportFailed(
                    f"Message {raw.get('id')!r} in the chat with {chat.get('name')!r} is "
                    f"malformed ({type(exc).__name__}: {exc}).",
                    hint=f"twin expects {EXPECTED}.",
                ) from exc
            append(row)
            local_time += local
        self.summary_counts["skipped"] += skipped
        self.summary_counts["local_time"] += local_time
        if len(batch) >= BATCH_SIZE:
            self.flush(chat)

    def _derive_owner(self, chat: dict[str, Any], raws: list[dict[str, Any]]) -> None:
        """In a single-chat export, the one sender who is not the peer is me."""
        peer = f"user{chat['id']}"
        others = {s for s in map(sender_id, raws) if s and s != peer}
        if len(others) > 1:
            raise ImportFailed(
                f"The chat with {chat.get('name')!r} has several senders besides the peer: "
                f"{', '.join(sorted(others))}.",
                hint="Pass --me with your Telegram user id to say which one is you.",
            )
        if others:
            sender = others.pop()
            if not sender.removeprefix("user").isdigit():
                raise ImportFailed(f"Unexpected sender id {sender!r}.", hint="Pass --me.")
            name = next((r.get("from") for r in raws if r.get("from_id") == sender), None)
            self._claim_owner(int(sender.removeprefix("user")), name)

    def dialog_id(self, chat: dict[str, Any]) -> int:
        """The chat's `Dialog.id`, creating or refreshing the dialog on first sight."""
        peer = int(chat["id"])
        dialog_id = self.dialog_ids.get(peer)
        if dialog_id is None:
            dialog = upsert_dialog(
                self.session, peer_id=peer, name=str(chat.get("name") or ""), source=Source.export
            )
            dialog_id = self.dialog_ids[peer] = dialog.id or 0
        return dialog_id

    def flush(self, chat: dict[str, Any]) -> None:
        self.dialog_id(chat)
        batch = self.pending.pop(int(chat["id"]), [])
        if not batch:
            return
        changes = self.connection.total_changes
        new = upsert_message_rows(self.session, rows=batch)
        self.summary_counts["new"] += new
        self.summary_counts["updated"] += self.connection.total_changes - changes - new


def import_export(
    *,
    settings: Settings,
    path: Path,
    me: int | None = None,
    time_zone: str | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    """Import a Telegram Desktop JSON export; all of it or nothing.

    Importing the same export again adds nothing; messages already harvested through the API
    are matched by their Telegram ids and keep one row.

    Args:
        settings: whose database to write (migrated already).
        path: the export's ``result.json``, or the folder holding it.
        me: the owner's Telegram user id, for a single-chat export where it cannot be told
            from the senders (a full export names its account itself).
        time_zone: the IANA zone of the machine that made the export (``Europe/Moscow``),
            for messages without ``date_unixtime``, whose ``date`` has no offset; default:
            this machine's zone.
        progress: called with (bytes read, file size) as the file is read.
    """
    path, size = _open(Path(path))
    zone = _zone(time_zone)
    try:
        head = _read_head(path, size)
    except _MALFORMED as exc:
        raise _malformed(path, exc, "at its top") from exc
    if head.user_id is not None and me is not None and head.user_id != me:
        raise ImportFailed(
            f"--me {me} disagrees with the export, which belongs to user {head.user_id}.",
            hint="Leave --me out for a full-account export.",
        )
    if head.full and head.user_id is None and me is None:
        raise ImportFailed(
            f"{path} does not say whose account it is (no personal_information.user_id).",
            hint="Pass --me with your Telegram user id.",
        )
    with session_scope(settings) as session, path.open("rb") as f:
        writer = _Writer(session, head=head, me=me, zone=zone)
        stream = ChatStream(f, size=size, progress=progress)
        stream.on_messages = writer.on_messages
        chats = 0
        try:
            for chat in _chats(path, stream, full=head.full):
                if not isinstance(chat, dict):
                    raise ImportFailed(
                        f"{path} is not a Telegram export.", hint=f"Expected {EXPECTED}."
                    )
                writer.end_chat(chat)
                chat.clear()
                chats += 1
        except _MALFORMED as exc:
            # A value of the wrong type deep inside an otherwise valid export: name the place;
            # the transaction rolls back, so nothing of this import stays.
            raise _malformed(path, exc, f"near line {stream.lines}") from exc
        if chats == 0:
            raise ImportFailed(f"{path} holds no chats.", hint=f"Expected {EXPECTED}.")
        counts = writer.summary_counts
        summary = ImportSummary(
            path=path,
            owner_id=writer.me,
            dialogs_imported=counts["dialogs"],
            messages_new=counts["new"],
            messages_updated=counts["updated"],
            messages_skipped=counts["skipped"],
            messages_local_time=counts["local_time"],
            time_zone=time_zone,
            duplicates=writer.duplicates,
            chats_skipped=dict(writer.skipped),
        )
    return summary


def _zone(name: str | None) -> tzinfo | None:
    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ImportFailed(
            f"Unknown time zone {name!r}.",
            hint="Give an IANA zone name such as Europe/Moscow, America/New_York or UTC.",
        ) from exc
