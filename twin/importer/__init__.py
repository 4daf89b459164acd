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

The parts: `twin.importer.stream` feeds ijson, `twin.importer.read` finds the file and its
chats, `twin.importer.convert` turns one message into a row (pure), `twin.importer.write`
puts chats and rows into the session; `import_export` here ties them together.
"""

from __future__ import annotations

from datetime import tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field

from twin.config import Settings
from twin.db import session_scope
from twin.errors import ImportFailed
from twin.importer.convert import EXPECTED
from twin.importer.read import (
    MALFORMED,
    iter_chats,
    malformed_error,
    open_export,
    read_head,
)
from twin.importer.stream import ChatStream, Progress
from twin.importer.write import BATCH_SIZE, ExportWriter

__all__ = ["BATCH_SIZE", "ImportSummary", "import_export"]


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
    path, size = open_export(Path(path))
    zone = _zone(time_zone)
    try:
        head = read_head(path, size)
    except MALFORMED as exc:
        raise malformed_error(path, exc, "at its top") from exc
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
        writer = ExportWriter(session, head=head, me=me, zone=zone)
        stream = ChatStream(f, size=size, progress=progress)
        stream.on_messages = writer.on_messages
        chats = 0
        try:
            for chat in iter_chats(path, stream, full=head.full):
                if not isinstance(chat, dict):
                    raise ImportFailed(
                        f"{path} is not a Telegram export.", hint=f"Expected {EXPECTED}."
                    )
                writer.end_chat(chat)
                chat.clear()
                chats += 1
        except MALFORMED as exc:
            # A value of the wrong type deep inside an otherwise valid export: name the place;
            # the transaction rolls back, so nothing of this import stays.
            raise malformed_error(path, exc, f"near line {stream.lines}") from exc
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
