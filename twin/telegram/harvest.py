"""Harvest: private one-to-one chats from the Telegram API into the store.

Per dialog, one pass reads the history oldest → newest, from the start of the recent window
(messages that could still be edited or that may have been deleted since the last run) to the
newest message; each page is written in one transaction together with the dialog's
`HarvestState`, so a run killed at any moment resumes with nothing lost, nothing duplicated and
no page fetched twice. Stored messages of the window that the pass no longer sees were deleted
in Telegram: they get a tombstone (`Message.deleted_unix`) and datasets leave them out. Windows
are measured on Telegram's clock and walked by message id, so neither this machine's clock nor
an odd message date can stretch them.

A dialog whose requests fail (PEER_ID_INVALID, …) is recorded with Telegram's error name and
retried on later runs after a growing backoff; the others go on. A FLOOD_WAIT longer than
Telethon sleeps through stops the run: it is stored per method, and no request of that kind is
sent again before the time Telegram gave. Nothing is downloaded: media is recorded by kind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from telethon import TelegramClient, errors, functions, utils
from telethon.tl import types
from telethon.tl.custom import Dialog as TgDialog

from twin.config import Settings
from twin.db import session_scope
from twin.errors import TelegramError
from twin.models import HarvestState, Source
from twin.store import (
    ChatMessage,
    active_wait,
    mark_deleted,
    now_unix,
    record_wait,
    upsert_dialog,
    upsert_messages,
)
from twin.telegram.client import (
    UNREACHABLE,
    connect_client,
    connect_owner,
    request_name,
    rpc_error_name,
    telegram_error,
)
from twin.telegram.rules import message_to_row, skip_reason

PAGE_SIZE = 100
"""Messages per getHistory/getMessages request (Telegram's maximum) and per transaction."""
EDIT_WINDOW_SECONDS = 48 * 3600
BACKOFF_SECONDS = 15 * 60
"""Wait after a dialog's first failure; it doubles with each failed run, up to a day."""
MAX_BACKOFF_SECONDS = 24 * 3600
DELETED_ACCOUNT_NAME = "Deleted Account"
# The methods a run needs: while any of them is flood-waited, the run sends nothing.
RUN_REQUESTS = ("messages.getDialogs", "messages.getHistory", "updates.getState")
CHECK_REQUEST = "messages.getMessages"


class HarvestProgress(BaseModel):
    """Where a running harvest is, for a progress bar or the web page."""

    dialogs_done: int = 0
    dialogs_total: int = 0
    messages_new: int = 0
    current_dialog: str | None = None


class SkippedDialog(BaseModel):
    """A dialog that is not a private chat with a person, and why."""

    peer_id: int
    name: str
    reason: str


class DialogError(BaseModel):
    """A dialog whose requests failed; it is retried by a later run after ``retry_after_unix``."""

    peer_id: int
    name: str
    error: str
    """Telegram's name for the error, e.g. ``PEER_ID_INVALID``."""
    failures: int
    """Runs in a row that failed on this dialog."""
    retry_after_unix: int
    attempted: bool
    """False when this run left the dialog alone because its backoff had not passed."""


class FloodWait(BaseModel):
    """Telegram's order to send no ``request`` before ``retry_after_unix`` (the come-back time)."""

    request: str
    """Telegram's method name, e.g. ``messages.getHistory``."""
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
    messages_deleted: int = 0
    """Stored messages found deleted in Telegram in this run (now tombstoned)."""
    skipped: list[SkippedDialog] = []
    errors: list[DialogError] = []
    flood_wait: FloodWait | None = None
    """Set when the run stopped early (or did not start) because of a FLOOD_WAIT."""


ProgressCallback = Callable[[HarvestProgress], None]


class _FloodStop(Exception):
    """Telegram asked to wait: the run stops here."""

    def __init__(self, wait: FloodWait) -> None:
        self.wait = wait


# -- pure rules ----------------------------------------------------------------------------


def backoff_seconds(failures: int) -> int:
    """How long to leave a dialog alone after ``failures`` failed runs in a row."""
    return min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2 ** max(0, failures - 1))


# -- the stage -------------------------------------------------------------------------------


async def harvest(
    *,
    settings: Settings,
    client: TelegramClient | None = None,
    edit_window_seconds: int = EDIT_WINDOW_SECONDS,
    pause_seconds: float | None = None,
    progress: ProgressCallback | None = None,
    check_all_deletions: bool = False,
) -> HarvestSummary:
    """Fetch new (and recently edited or deleted) messages of every private chat into the store.

    Errors of single dialogs are recorded in the summary's ``errors`` and on the dialog; a long
    FLOOD_WAIT ends the run early with the summary's ``flood_wait`` saying when to come back.

    Args:
        settings: whose database and stored Telegram session to use.
        client: a client logged in as the owner (default: one built from the stored session,
            connected and disconnected here).
        edit_window_seconds: how long after sending a message can still be edited; stored
            messages sent within this time before the previous run are read again, which picks
            up their edits and deletions.
        pause_seconds: pause between history requests; None keeps Telethon's default
            (1 s between pages of long histories).
        progress: called with a `HarvestProgress` after each page and each dialog.
        check_all_deletions: also ask Telegram about every older stored message (100 per
            request) and tombstone the ones it no longer has.
    """
    run = _Run(settings, edit_window_seconds, pause_seconds, progress, check_all_deletions)
    with session_scope(settings) as db:
        waiting = active_wait(db, requests=RUN_REQUESTS, now=run.started_unix)
        if waiting is not None:  # not a single request before the time Telegram gave
            run.summary.flood_wait = FloodWait.model_validate(waiting, from_attributes=True)
            return run.summary
    own_client = client is None
    try:
        if client is None:
            client = await connect_owner(settings)
        elif not client.is_connected():
            await connect_client(client)
        return await run.all_dialogs(client)
    except _FloodStop as stop:
        run.summary.flood_wait = stop.wait
        return run.summary
    except errors.RPCError as exc:
        raise telegram_error(exc) from exc
    except UNREACHABLE as exc:
        raise TelegramError(
            f"Lost the connection to Telegram: {exc or type(exc).__name__}",
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
        check_all_deletions: bool,
    ) -> None:
        self.settings = settings
        self.edit_window_seconds = edit_window_seconds
        self.pause_seconds = pause_seconds
        self.progress = progress or (lambda _: None)
        self.check_all_deletions = check_all_deletions
        self.started_unix = now_unix()
        self.server_now = self.started_unix  # replaced by Telegram's clock
        self.summary = HarvestSummary()
        self.state = HarvestProgress()

    async def call(self, request: Any) -> Any:
        """``await request``, turning a FLOOD_WAIT Telethon did not sleep through into a stop."""
        try:
            return await request
        except (errors.FloodWaitError, errors.FloodPremiumWaitError) as exc:
            name = request_name(exc.request)
            now = now_unix()
            with session_scope(self.settings) as db:
                record_wait(db, request=name, seconds=exc.seconds, now=now)
            wait = FloodWait(request=name, seconds=exc.seconds, retry_after_unix=now + exc.seconds)
            raise _FloodStop(wait) from exc

    async def all_dialogs(self, client: TelegramClient) -> HarvestSummary:
        state = await self.call(client(functions.updates.GetStateRequest()))
        self.server_now = int(state.date.timestamp())
        private: list[TgDialog] = []
        dialogs = await self.call(client.get_dialogs(limit=None))
        for dialog in dialogs:
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
        # A deleted account keeps the name it had here; only a first sighting gets Telegram's.
        name = utils.get_display_name(user)
        with session_scope(self.settings) as db:
            dialog = upsert_dialog(
                db,
                peer_id=user.id,
                name=name,
                username=user.username,
                access_hash=user.access_hash,
            )
            if not dialog.name:
                dialog.name = DELETED_ACCOUNT_NAME
            name = dialog.name
            assert dialog.id is not None
            state = db.get(HarvestState, dialog.id) or HarvestState(dialog_id=dialog.id)
            db.add(state)
        if state.failures and state.retry_after_unix and state.retry_after_unix > self.started_unix:
            self._report_error(state, user.id, name, attempted=False)
            return
        top_id = tg_dialog.message.id if tg_dialog.message else 0
        try:
            await self.read_dialog(client, tg_dialog.input_entity, state, top_id)
        except errors.RPCError as exc:
            if isinstance(exc, errors.UnauthorizedError | errors.AuthKeyError):
                raise  # the session, not the dialog: nothing else will work either
            failures = state.failures + 1
            self._save_state(
                state,
                failures=failures,
                last_error=rpc_error_name(exc),
                retry_after_unix=now_unix() + backoff_seconds(failures),
            )
            self._report_error(state, user.id, name, attempted=True)
            return
        self._save_state(state, complete=True, failures=0, retry_after_unix=None, last_error=None)
        self.summary.dialogs_harvested += 1

    async def read_dialog(
        self, client: TelegramClient, peer: Any, state: HarvestState, top_id: int
    ) -> None:
        """One pass from the start of the recent window to ``top_id``, committed page by page.

        Telegram's ``min_id`` never returns old messages edited later, so the stored messages
        that could have changed are read again. A message sent at t can be edited until
        t + window, and the stored ones were stored by the previous run, so those sent after
        (previous run − window) can differ from the store. The window starts at the oldest
        of them, found by walking back by id from the newest stored message.
        """
        stored_up_to = state.last_id
        window = self._stored_window(state)
        low = min(window, default=stored_up_to + 1) - 1
        if top_id <= low and not window:
            await self._check_older(client, peer, state.dialog_id, below=low + 1)
            return
        page: list[ChatMessage] = []
        seen: set[int] = set()
        rows_in_window: list[ChatMessage] = []
        async for message in self._iter(
            client.iter_messages(peer, reverse=True, min_id=low, wait_time=self.pause_seconds)
        ):
            seen.add(message.id)
            row = message_to_row(message)
            if row is not None:
                page.append(row)
                if message.id <= stored_up_to:
                    rows_in_window.append(row)
            # Stop at the top message the dialog list showed: asking further would cost one
            # more (empty) request per dialog; anything newer is the next run's.
            if len(page) >= PAGE_SIZE or message.id >= top_id:
                self._commit_page(state, page, message.id)
                page = []
            if message.id >= top_id:
                break
        if page:
            self._commit_page(state, page, max(seen))
        self.summary.messages_rescanned += len(rows_in_window)
        self.summary.messages_edited += sum(
            1 for r in rows_in_window if window.get(r.tg_id) != (r.edited_unix, r.text)
        )
        # The pass returned every message of the window that still exists.
        self._tombstone(state.dialog_id, [i for i in window if i not in seen])
        await self._check_older(client, peer, state.dialog_id, below=low + 1)

    async def _iter(self, iterator: Any) -> Any:
        """``iterator`` with a FLOOD_WAIT Telethon did not sleep through turned into a stop."""
        while True:
            try:
                message = await self.call(iterator.__anext__())
            except StopAsyncIteration:
                return
            yield message

    async def _check_older(
        self, client: TelegramClient, peer: Any, dialog_id: int, *, below: int
    ) -> None:
        """With ``check_all_deletions``: ask for every stored message older than ``below``, 100
        ids per request, and tombstone those Telegram no longer returns."""
        if not self.check_all_deletions:
            return
        with session_scope(self.settings) as db:
            if active_wait(db, requests=[CHECK_REQUEST], now=now_unix()):
                return
            ids = list(
                db.connection()
                .execute(
                    text(
                        "SELECT tg_id FROM message WHERE dialog_id = :d AND tg_id < :below "
                        "AND deleted_unix IS NULL ORDER BY tg_id DESC"
                    ),
                    {"d": dialog_id, "below": below},
                )
                .scalars()
            )
        for start in range(0, len(ids), PAGE_SIZE):
            batch = ids[start : start + PAGE_SIZE]
            found = await self.call(client.get_messages(peer, ids=batch))
            self._tombstone(dialog_id, [i for i, m in zip(batch, found, strict=True) if m is None])

    def _stored_window(self, state: HarvestState) -> dict[int, tuple[int | None, str]]:
        """{tg id: (edited_unix, text)} of the stored messages the previous run could have
        seen change: newest first by id, until one was sent before (previous run − window)."""
        if not state.last_id or state.last_run_unix is None:
            return {}
        since = state.last_run_unix - self.edit_window_seconds
        window: dict[int, tuple[int | None, str]] = {}
        with session_scope(self.settings) as db:
            rows = db.connection().execute(
                text(
                    "SELECT tg_id, sent_unix, edited_unix, text FROM message "
                    "WHERE dialog_id = :d AND tg_id <= :top AND deleted_unix IS NULL "
                    "ORDER BY tg_id DESC"
                ),
                {"d": state.dialog_id, "top": state.last_id},
            )
            for tg_id, sent_unix, edited_unix, body in rows:
                if sent_unix < since:
                    break
                window[tg_id] = (edited_unix, body)
        return window

    def _tombstone(self, dialog_id: int, tg_ids: Sequence[int]) -> None:
        if not tg_ids:
            return
        with session_scope(self.settings) as db:
            self.summary.messages_deleted += mark_deleted(
                db, dialog_id=dialog_id, tg_ids=tg_ids, when=self.server_now
            )

    def _commit_page(self, state: HarvestState, page: Sequence[ChatMessage], last_id: int) -> None:
        """One transaction: the page's messages and the state that says they are stored."""
        with session_scope(self.settings) as db:
            new = upsert_messages(db, dialog_id=state.dialog_id, messages=page, source=Source.api)
            state.last_id = max(state.last_id, last_id)
            # Only a finished pass has read the whole window again: until then the window
            # must stay as wide as the last finished run made it.
            if state.last_run_unix is None:
                state.last_run_unix = self.server_now
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
                state.last_run_unix = self.server_now
            db.merge(state)

    def _report_error(
        self, state: HarvestState, peer_id: int, name: str, *, attempted: bool
    ) -> None:
        self.summary.errors.append(
            DialogError(
                peer_id=peer_id,
                name=name,
                error=state.last_error or "unknown",
                failures=state.failures,
                retry_after_unix=state.retry_after_unix or 0,
                attempted=attempted,
            )
        )
