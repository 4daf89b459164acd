"""Queries on the store, as keyword-only functions over a SQLModel `Session`.

Both ways in (the API harvest and the export import) write through `upsert_dialog` and
`upsert_messages`, so a message keeps one row whichever source saw it first.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

from sqlalchemy import Integer, and_, cast, func
from sqlmodel import Session, select

from twin.models import Dialog, DialogPublic, Message, Owner, RequestWait, Source

SERVICE_NOTIFICATIONS_ID = 777000
"""Telegram's own account (login codes, security alerts): never a person to learn from."""


class ChatMessage(NamedTuple):
    """One message of a dialog, the one shape it has between the store and the dataset rules:
    as a source delivers it (before it has a row) and as `iter_message_batches` reads it back.
    See `Message` for the fields.

    A named tuple rather than a pydantic model: millions of messages pass through here, and
    the fields are already typed by the converters that build them; its order is the column
    order of `_UPSERT_SQL` (see `MessageRow`).
    """

    tg_id: int
    sent_unix: int
    out: bool
    text: str = ""
    reply_to_id: int | None = None
    edited_unix: int | None = None
    media_kind: str | None = None
    service_kind: str | None = None
    forwarded: bool = False


MessageRow = tuple[
    int, int, int, bool, str, int | None, int | None, str | None, str | None, bool, str
]
"""A whole ``message`` row in `_UPSERT_SQL`'s order: ``(dialog_id, *ChatMessage, source)``.

The export import builds these directly: a million messages are a million tuples fewer."""


# Names Telegram Desktop exports use, mapped to the API harvest's so both sources read alike.
_MEDIA_ALIASES = {
    "voice_message": "voice",
    "video_file": "video",
    "audio_file": "audio",
    "document": "file",
    "geo": "location",
    "venue": "location",
    "gif": "animation",
}


def normalize_media_kind(kind: str) -> str:
    """The store's name for a media kind: the API harvest's vocabulary, one lower-case word.

    Whatever an export calls its media, what reaches a sample is a tag the prompt can hold
    (``<voice>``), never the file's own text.

    >>> [normalize_media_kind(k) for k in ("voice_message", " Sticker", "<x>")]
    ['voice', 'sticker', 'x']
    """
    kind = kind.strip().lower().replace(" ", "_")
    kind = _MEDIA_ALIASES.get(kind, kind)
    return "".join(c for c in kind if c.isalnum() or c == "_") or "media"


def now_unix() -> int:
    return int(time.time())


def get_owner(session: Session) -> Owner:
    """The owner row, created empty on first use."""
    owner = session.get(Owner, 1)
    if owner is None:
        owner = Owner(id=1, created_unix=now_unix(), updated_unix=now_unix())
        session.add(owner)
        session.flush()
    return owner


def update_owner(session: Session, **fields: object) -> Owner:
    """Set ``fields`` of the owner row and stamp ``updated_unix`` (committed by the caller).

    Args:
        fields: `Owner` columns and their new values.
    """
    owner = get_owner(session)
    for name, value in fields.items():
        if name not in Owner.model_fields:
            raise AttributeError(f"Owner has no column {name!r}")
        setattr(owner, name, value)
    owner.updated_unix = now_unix()
    session.add(owner)
    return owner


def upsert_dialog(
    session: Session,
    *,
    peer_id: int,
    name: str,
    username: str | None = None,
    access_hash: int | None = None,
    source: Source = Source.api,
) -> Dialog:
    """Create the dialog with ``peer_id`` or refresh its name, username and access hash.

    The include flag is the user's choice and is never touched here.

    Args:
        session: the open session (not committed here).
        peer_id: Telegram user id of the other person.
        name: display name of the other person.
        username: their @username, if any.
        access_hash: the API's access hash for the peer (None from exports: keep the old one).
        source: where this sighting of the dialog came from (kept from the first sighting).
    """
    dialog = session.exec(select(Dialog).where(Dialog.peer_id == peer_id)).first()
    if dialog is None:
        dialog = Dialog(peer_id=peer_id, source=source, created_unix=now_unix())
        session.add(dialog)
    # What this sighting lacks (an export has no access hash) keeps the value already stored.
    dialog.name = name or dialog.name
    dialog.username = username if username is not None else dialog.username
    dialog.access_hash = access_hash if access_hash is not None else dialog.access_hash
    session.flush()
    return dialog


_UPSERT_SQL = """
INSERT INTO message (dialog_id, tg_id, sent_unix, out, text, reply_to_id, edited_unix,
                     media_kind, service_kind, forwarded, source)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (dialog_id, tg_id) DO UPDATE SET
    text = excluded.text,
    edited_unix = excluded.edited_unix,
    media_kind = excluded.media_kind,
    reply_to_id = excluded.reply_to_id
WHERE coalesce(excluded.edited_unix, 0) >= coalesce(message.edited_unix, 0)
  AND (excluded.edited_unix IS NOT message.edited_unix OR excluded.text IS NOT message.text)
"""


def upsert_messages(
    session: Session, *, dialog_id: int, messages: Sequence[ChatMessage], source: Source
) -> int:
    """Insert new messages of a dialog and update edited ones; return how many were new.

    Idempotent: writing the same messages twice changes nothing. An existing row is updated only
    when its text or edit time differs (an edit seen later), and never by an older version (an
    older export imported after a newer one); it keeps its original source.

    Args:
        session: the open session (not committed here: the caller commits each page together
            with its progress, so a crash never separates the two).
        dialog_id: the `Dialog.id` the messages belong to.
        messages: the messages to write.
        source: where they came from.
    """
    tag = source.value
    return upsert_message_rows(session, rows=[(dialog_id, *m, tag) for m in messages])


def upsert_message_rows(session: Session, *, rows: Sequence[MessageRow]) -> int:
    """`upsert_messages` for whole rows the caller built; return how many were new.

    Args:
        session: the open session (not committed here).
        rows: the rows, each ``(dialog_id, *ChatMessage, source)``.
    """
    if not rows:
        return 0
    # Raw DB-API executemany over plain tuples, in the session's transaction: the ORM would be
    # ~10x slower on a 1M import.
    connection = session.connection().connection.driver_connection
    assert isinstance(connection, sqlite3.Connection)
    # Ids only grow, and an update keeps its row's id: rows above the old maximum are new.
    (max_id,) = connection.execute("SELECT coalesce(max(id), 0) FROM message").fetchone()
    connection.executemany(_UPSERT_SQL, rows)
    (new,) = connection.execute("SELECT count(*) FROM message WHERE id > ?", (max_id,)).fetchone()
    return int(new)


def list_dialogs(session: Session) -> list[DialogPublic]:
    """All dialogs with their message counts, most messages first."""
    counts = (
        select(
            Message.dialog_id,
            func.count().label("n"),
            func.sum(cast(Message.out, Integer)).label("mine"),
        )
        .where(Message.deleted_unix.is_(None))  # type: ignore[union-attr]
        .group_by(Message.dialog_id)
        .subquery()
    )
    rows = session.exec(
        select(Dialog, counts.c.n, counts.c.mine).join(
            counts, counts.c.dialog_id == Dialog.id, isouter=True
        )
    ).all()
    result = [
        DialogPublic(
            id=d.id or 0,
            peer_id=d.peer_id,
            name=d.name,
            username=d.username,
            included=d.included,
            message_count=n or 0,
            my_message_count=mine or 0,
        )
        for d, n, mine in rows
    ]
    return sorted(result, key=lambda d: (-d.message_count, d.name))


def set_included(session: Session, *, dialog_ids: Iterable[int], included: bool) -> int:
    """Include or exclude dialogs from training; return how many rows changed.

    Args:
        dialog_ids: `Dialog.id` values.
        included: the new flag.
    """
    changed = 0
    for dialog in session.exec(select(Dialog).where(Dialog.id.in_(list(dialog_ids)))).all():  # type: ignore[union-attr]
        if dialog.included != included:
            dialog.included = included
            changed += 1
    session.flush()
    return changed


def mark_deleted(session: Session, *, dialog_id: int, tg_ids: Iterable[int], when: int) -> int:
    """Tombstone messages Telegram no longer has; return how many were newly marked.

    Args:
        session: the open session (not committed here).
        dialog_id: the `Dialog.id` the messages belong to.
        tg_ids: Telegram ids of the deleted messages.
        when: when the deletion was found (unix seconds).
    """
    ids = list(tg_ids)
    marked = 0
    for start in range(0, len(ids), 500):  # SQLite limits bound parameters
        result = session.connection().execute(
            Message.__table__.update()  # type: ignore[attr-defined]
            .where(
                Message.dialog_id == dialog_id,
                Message.tg_id.in_(ids[start : start + 500]),  # type: ignore[attr-defined]
                Message.deleted_unix.is_(None),  # type: ignore[union-attr]
            )
            .values(deleted_unix=when)
        )
        marked += result.rowcount
    return marked


def active_wait(session: Session, *, requests: Iterable[str], now: int) -> RequestWait | None:
    """The longest FLOOD_WAIT still running for any of ``requests``, or None.

    Args:
        requests: Telegram method names (``messages.getHistory``).
        now: the local time (unix seconds).
    """
    return session.exec(
        select(RequestWait)
        .where(RequestWait.request.in_(list(requests)), RequestWait.retry_after_unix > now)  # type: ignore[attr-defined]
        .order_by(RequestWait.retry_after_unix.desc())  # type: ignore[attr-defined]
    ).first()


def record_wait(session: Session, *, request: str, seconds: int, now: int) -> RequestWait:
    """Remember that Telegram asked to send no ``request`` for ``seconds`` from ``now``.

    Args:
        session: the open session (not committed here).
        request: Telegram's method name.
        seconds: the FLOOD_WAIT.
        now: the local time (unix seconds).
    """
    wait = RequestWait(request=request, seconds=seconds, retry_after_unix=now + seconds)
    return session.merge(wait)


class DialogCount(NamedTuple):
    """A dialog with how many of its messages fall in a time window (`dialog_message_counts`)."""

    id: int
    peer_id: int
    name: str
    included: bool
    messages: int


def count_messages(session: Session) -> int:
    """Every stored message, tombstones included (zero: nothing was imported or harvested)."""
    return session.exec(select(func.count()).select_from(Message)).one()


def dialog_message_counts(
    session: Session, *, since_unix: int, until_unix: int
) -> list[DialogCount]:
    """Every dialog, by id, with its live messages sent in ``[since_unix, until_unix)``.

    Args:
        since_unix: the first second counted.
        until_unix: the first second no longer counted.
    """
    in_window = and_(
        Message.dialog_id == Dialog.id,
        Message.sent_unix >= since_unix,
        Message.sent_unix < until_unix,
        Message.deleted_unix.is_(None),  # type: ignore[union-attr]
    )
    rows = session.exec(
        select(Dialog.id, Dialog.peer_id, Dialog.name, Dialog.included, func.count(Message.id))  # type: ignore[call-overload]
        .join(Message, in_window, isouter=True)
        .group_by(Dialog.id)
        .order_by(Dialog.id)
    ).all()
    return [DialogCount(i, peer, name or "", bool(inc), n) for i, peer, name, inc, n in rows]


_DIALOG_MESSAGES_SQL = """
SELECT tg_id, sent_unix, out, coalesce(text, ''), reply_to_id, edited_unix, media_kind,
       service_kind, forwarded
FROM message WHERE dialog_id = ? AND sent_unix >= ? AND sent_unix < ? AND deleted_unix IS NULL
ORDER BY sent_unix, tg_id
"""


def iter_message_batches(
    session: Session, *, dialog_id: int, since_unix: int, until_unix: int, batch_size: int = 8192
) -> Iterator[list[ChatMessage]]:
    """A dialog's live messages sent in ``[since_unix, until_unix)``, oldest first (ties by id),
    in batches: a million-message chat streams in bounded memory. Deleted messages (tombstones)
    are left out: they are never a sample.

    Args:
        since_unix: the first second read.
        until_unix: the first second no longer read.
        batch_size: messages per batch.
    """
    # Raw DB-API over plain tuples: ~10x faster than ORM rows on a million messages.
    connection = session.connection().connection.driver_connection
    assert isinstance(connection, sqlite3.Connection)
    cursor = connection.execute(_DIALOG_MESSAGES_SQL, (dialog_id, since_unix, until_unix))
    while rows := cursor.fetchmany(batch_size):
        yield list(map(ChatMessage._make, rows))
