"""Harvest: private one-to-one chats from the Telegram API into the store.

Per dialog, messages come oldest → newest from the last stored id, and each page is written in
one transaction together with the dialog's `HarvestState`, so a run killed at any moment
resumes with nothing lost, nothing duplicated and no page fetched twice. Messages stored while
still editable (Telegram allows edits for ~48 h) are fetched once more on later runs so edits
reach the store. Nothing is downloaded: media is recorded by kind.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel
from sqlmodel import select
from telethon import TelegramClient, errors, utils
from telethon.tl import types
from telethon.tl.custom import Dialog as TgDialog

from twin.config import Settings
from twin.db import session_scope
from twin.errors import TelegramError
from twin.models import HarvestState, Message, Source
from twin.store import MessageIn, now_unix, upsert_dialog, upsert_messages
from twin.telegram.client import connect_owner, format_wait, telegram_error

PAGE_SIZE = 100
"""Messages per getHistory request (Telegram's maximum) and per transaction."""
EDIT_WINDOW_SECONDS = 48 * 3600


class HarvestProgress(BaseModel):
    """Where a running harvest is, for a progress bar or the web page."""

    dialogs_done: int = 0
    dialogs_total: int = 0
    messages_new: int = 0
    current_dialog: str | None = None


class SkippedDialog(BaseModel):
    """A dialog not harvested in this run, and why."""

    peer_id: int
    name: str
    reason: str


class FloodWait(BaseModel):
    """A dialog Telegram asked us to leave alone until ``retry_after_unix``."""

    peer_id: int
    name: str
    seconds: int
    retry_after_unix: int


class HarvestSummary(BaseModel):
    """What a harvest run did."""

    dialogs_total: int = 0
    """Private one-to-one dialogs found."""
    dialogs_harvested: int = 0
    messages_new: int = 0
    messages_rescanned: int = 0
    messages_edited: int = 0
    skipped: list[SkippedDialog] = []
    flood_waits: list[FloodWait] = []
    takeout: bool = False


ProgressCallback = Callable[[HarvestProgress], None]


# -- pure rules ----------------------------------------------------------------------------


def skip_reason(entity: Any) -> str | None:
    """Why a dialog with ``entity`` is not a private chat to harvest, or None if it is one."""
    if isinstance(entity, types.Channel):
        return "group" if entity.megagroup else "channel"
    if isinstance(entity, types.Chat | types.ChatForbidden | types.ChannelForbidden):
        return "group"
    if not isinstance(entity, types.User):
        return "not a person"
    if entity.is_self:
        return "saved messages"
    if entity.bot:
        return "bot"
    if entity.deleted:
        return "deleted account"
    return None


def media_kind(message: types.Message) -> str | None:
    """The kind of media a message carries, or None for text (web page previews are text)."""
    media = message.media
    if media is None or isinstance(media, types.MessageMediaEmpty | types.MessageMediaWebPage):
        return None
    # Telethon's properties look inside documents at their attributes; order matters (a round
    # video is also a video, a GIF is a document with a video attribute, …).
    for kind, present in (
        ("sticker", message.sticker),
        ("video_message", message.video_note),
        ("animation", message.gif),
        ("voice", message.voice),
        ("audio", message.audio),
        ("video", message.video),
        ("photo", message.photo),
        ("contact", message.contact),
        ("location", message.geo),
        ("poll", message.poll),
        ("dice", message.dice),
        ("game", message.game),
        ("invoice", message.invoice),
        ("file", message.document),
    ):
        if present is not None:
            return kind
    return "other"


def service_kind(action: Any) -> str:
    """``MessageActionPhoneCall`` → ``"phone_call"``."""
    name = type(action).__name__.removeprefix("MessageAction")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() or "unknown"


def message_to_row(message: Any) -> MessageIn | None:
    """Convert a Telethon message of a private chat into a row (None for empty messages).

    In private chats incoming messages carry no sender: the sender is the owner when
    ``out`` is set, otherwise the peer.
    """
    if isinstance(message, types.MessageService):
        return MessageIn(
            tg_id=message.id,
            sent_unix=int(message.date.timestamp()),
            out=bool(message.out),
            service_kind=service_kind(message.action),
        )
    if not isinstance(message, types.Message):
        return None
    reply_to = message.reply_to
    return MessageIn(
        tg_id=message.id,
        sent_unix=int(message.date.timestamp()),
        out=bool(message.out),
        text=message.message or "",
        reply_to_id=reply_to.reply_to_msg_id
        if isinstance(reply_to, types.MessageReplyHeader)
        else None,
        edited_unix=int(message.edit_date.timestamp()) if message.edit_date else None,
        media_kind=media_kind(message),
        forwarded=message.fwd_from is not None,
    )


# -- the stage -------------------------------------------------------------------------------


async def harvest(
    *,
    settings: Settings,
    client: TelegramClient | None = None,
    takeout: bool = False,
    edit_window_seconds: int = EDIT_WINDOW_SECONDS,
    pause_seconds: float | None = None,
    progress: ProgressCallback | None = None,
) -> HarvestSummary:
    """Fetch new (and recently edited) messages of every private chat into the store.

    Args:
        settings: whose database and stored Telegram session to use.
        client: a client logged in as the owner (default: one built from the stored session,
            connected and disconnected here).
        takeout: run inside a takeout session (Telegram's data export mode: gentler limits,
            but the user must approve it in an official app).
        edit_window_seconds: how long after sending a message can still be edited; messages
            stored while inside this window are fetched again to pick up edits.
        pause_seconds: pause between history requests; None keeps Telethon's default
            (1 s between pages of long histories).
        progress: called with a `HarvestProgress` after each page and each dialog.
    """
    own_client = client is None
    try:
        if client is None:
            client = await connect_owner(settings)
        elif not client.is_connected():
            await client.connect()
        run = _Run(settings, edit_window_seconds, pause_seconds, progress)
        if not takeout:
            return await run.all_dialogs(client)
        async with client.takeout(users=True, finalize=True) as takeout_client:
            summary = await run.all_dialogs(takeout_client)
            summary.takeout = True
            return summary
    except errors.RPCError as exc:
        raise telegram_error(exc) from exc
    except (ConnectionError, OSError) as exc:
        raise TelegramError(
            f"Lost the connection to Telegram: {exc}",
            hint="Run the harvest again: it resumes where it stopped.",
        ) from exc
    finally:
        if own_client and client is not None:
            await client.disconnect()


class _Run:
    """One harvest run; holds the options and the running totals."""

    def __init__(
        self,
        settings: Settings,
        edit_window_seconds: int,
        pause_seconds: float | None,
        progress: ProgressCallback | None,
    ) -> None:
        self.settings = settings
        self.edit_window_seconds = edit_window_seconds
        self.pause_seconds = pause_seconds
        self.progress = progress or (lambda _: None)
        self.started_unix = now_unix()
        self.summary = HarvestSummary()
        self.state = HarvestProgress()

    async def all_dialogs(self, client: TelegramClient) -> HarvestSummary:
        private: list[TgDialog] = []
        async for dialog in client.iter_dialogs():
            reason = skip_reason(dialog.entity)
            if reason is None:
                private.append(dialog)
            else:
                self.summary.skipped.append(
                    SkippedDialog(peer_id=dialog.id, name=dialog.name or "", reason=reason)
                )
        self.summary.dialogs_total = self.state.dialogs_total = len(private)
        self.progress(self.state)
        for dialog in private:
            self.state.current_dialog = dialog.name
            await self.one_dialog(client, dialog)
            self.state.dialogs_done += 1
            self.progress(self.state)
        self.state.current_dialog = None
        return self.summary

    async def one_dialog(self, client: TelegramClient, tg_dialog: TgDialog) -> None:
        user: types.User = tg_dialog.entity
        name = utils.get_display_name(user)
        with session_scope(self.settings) as db:
            dialog = upsert_dialog(
                db,
                peer_id=user.id,
                name=name,
                username=user.username,
                access_hash=user.access_hash,
            )
            assert dialog.id is not None
            state = db.get(HarvestState, dialog.id) or HarvestState(dialog_id=dialog.id)
            db.add(state)
        if state.retry_after_unix and state.retry_after_unix > self.started_unix:
            wait = format_wait(state.retry_after_unix - self.started_unix)
            self.summary.skipped.append(
                SkippedDialog(peer_id=user.id, name=name, reason=f"flood wait: retry in {wait}")
            )
            return
        peer = tg_dialog.input_entity
        top_id = tg_dialog.message.id if tg_dialog.message else 0
        stored_up_to, stored_at = state.last_id, state.last_run_unix
        try:
            if top_id > state.last_id:
                await self.fetch_new(client, peer, state, top_id)
            if stored_up_to and stored_at is not None:
                await self.rescan_edits(client, peer, state.dialog_id, stored_up_to, stored_at)
        except errors.FloodWaitError as exc:
            retry_after = now_unix() + exc.seconds
            self._save_state(
                state, retry_after_unix=retry_after, last_error=f"FLOOD_WAIT {exc.seconds}s"
            )
            self.summary.flood_waits.append(
                FloodWait(
                    peer_id=user.id, name=name, seconds=exc.seconds, retry_after_unix=retry_after
                )
            )
            return
        self._save_state(state, complete=True, retry_after_unix=None, last_error=None)
        self.summary.dialogs_harvested += 1

    async def fetch_new(
        self, client: TelegramClient, peer: Any, state: HarvestState, top_id: int
    ) -> None:
        """Messages after ``state.last_id``, committed page by page with the state."""
        page: list[MessageIn] = []
        last_seen = state.last_id
        async for message in client.iter_messages(
            peer, reverse=True, min_id=state.last_id, wait_time=self.pause_seconds
        ):
            row = message_to_row(message)
            if row is not None:
                page.append(row)
            last_seen = message.id
            # Stop at the top message the dialog list showed: asking further would cost one
            # more (empty) request per dialog; anything newer is the next run's.
            if len(page) >= PAGE_SIZE or message.id >= top_id:
                self._commit_page(state, page, last_seen)
                page = []
            if message.id >= top_id:
                break
        if page:
            self._commit_page(state, page, last_seen)

    async def rescan_edits(
        self, client: TelegramClient, peer: Any, dialog_id: int, stored_up_to: int, stored_at: int
    ) -> None:
        """Fetch again the stored messages that could have been edited since they were stored.

        Telegram's ``min_id`` never returns old messages edited later. A message sent at t can
        be edited until t + window, and the messages up to ``stored_up_to`` were stored by
        ``stored_at`` (the previous run), so only those sent after ``stored_at - window`` can
        differ from the store. That is at most the window before the newest stored message.
        """
        since = stored_at - self.edit_window_seconds
        with session_scope(self.settings) as db:
            stored = {
                m.tg_id: (m.edited_unix, m.text)
                for m in db.exec(
                    select(Message).where(
                        Message.dialog_id == dialog_id,
                        Message.sent_unix >= since,
                        Message.tg_id <= stored_up_to,
                    )
                )
            }
        if not stored:
            return
        low, high = min(stored), stored_up_to
        rows: list[MessageIn] = []
        async for message in client.iter_messages(
            peer, reverse=True, min_id=low - 1, max_id=high + 1, wait_time=self.pause_seconds
        ):
            row = message_to_row(message)
            if row is not None:
                rows.append(row)
            if message.id >= high:
                break  # saves the request that would only confirm the end
        self.summary.messages_rescanned += len(rows)
        self.summary.messages_edited += sum(
            1 for r in rows if r.tg_id in stored and stored[r.tg_id] != (r.edited_unix, r.text)
        )
        with session_scope(self.settings) as db:
            upsert_messages(db, dialog_id=dialog_id, messages=rows, source=Source.api)

    def _commit_page(self, state: HarvestState, page: Sequence[MessageIn], last_id: int) -> None:
        """One transaction: the page's messages and the state that says they are stored."""
        with session_scope(self.settings) as db:
            new = upsert_messages(db, dialog_id=state.dialog_id, messages=page, source=Source.api)
            state.last_id = max(state.last_id, last_id)
            state.last_run_unix = self.started_unix
            state.complete = False  # until the dialog's run ends
            db.merge(state)
        self.summary.messages_new += new
        self.state.messages_new += new
        self.progress(self.state)

    def _save_state(self, state: HarvestState, **changes: Any) -> None:
        with session_scope(self.settings) as db:
            for key, value in changes.items():
                setattr(state, key, value)
            if "complete" in changes:
                state.last_run_unix = self.started_unix
            db.merge(state)
