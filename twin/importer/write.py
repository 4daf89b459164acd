"""Writing an export's chats into the open session: dialogs, owner, message rows in batches."""

from __future__ import annotations

from collections import Counter
from datetime import tzinfo
from typing import Any

from sqlmodel import Session

from twin.errors import ImportFailed
from twin.importer.convert import EXPECTED, convert_message, sender_id
from twin.importer.read import ExportHead
from twin.models import Source
from twin.store import (
    SERVICE_NOTIFICATIONS_ID,
    MessageRow,
    get_owner,
    upsert_dialog,
    upsert_message_rows,
)

BATCH_SIZE = 5000
SERVICE_CHAT = "service_notifications"
"""How the chat with Telegram's own account (777000) is counted among the skipped chats."""


class ExportWriter:
    """Turns chats and their messages into rows, in the open session."""

    def __init__(
        self, session: Session, *, head: ExportHead, me: int | None, zone: tzinfo | None
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
