"""Assist: when a message arrives in a chat the owner switched on, the twin writes its suggested
reply into that chat's input box as a Telegram draft (messages.saveDraft). The owner sees it on
every device and sends, edits or ignores it: twin never sends a message itself.

The listener is the owner's own Telethon client with updates on. For each incoming private
message in a chat with `Dialog.assist` set it reads the chat's recent messages from Telegram (in
memory only: nothing of them is stored beyond what the harvest stores), renders them in the
training prompt format (scrubbed, as the dataset is), generates locally, and saves the draft
unless one of the rules says no:

- the owner wrote in the chat within ``quiet_seconds`` (they are answering themselves);
- the chat's draft is newer than the incoming message and is not the twin's (they are typing);
- every attempt at a reply contained a scrub placeholder (``<PHONE>``) or media tag: the reply
  is generated again up to ``attempts`` times, then the chat gets no draft.

Saves are spaced by ``min_interval_seconds``; a FLOOD_WAIT up to ``max_flood_wait_seconds`` is
waited out and the save retried once, a longer one pauses drafting until it has passed. The
live log keeps time, contact and draft length, never text. A lost connection is rebuilt with a
growing pause; a session ended elsewhere stops the listener with an error saying so.

The rules themselves are pure functions in `twin.assist.rules`; running the listener
as a job is `twin.assist.job`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel
from sqlmodel import select
from telethon import TelegramClient, errors, events, functions, types

from twin.assist.rules import context_turns, digest, draft_reason, first_clean_reply, quiet_reason
from twin.config import Settings
from twin.db import session_scope
from twin.errors import TelegramError, TwinError
from twin.models import Dialog
from twin.prepare.format import NEUTRAL_ME, Turn
from twin.prepare.scrub import Scrubber, ScrubConfig
from twin.runs import resolve_run_dir
from twin.store import get_owner
from twin.telegram.client import (
    LOGIN_HINT,
    ClientFactory,
    connect_owner,
    default_factory,
    format_wait,
    load_session,
    telegram_error,
)
from twin.telegram.harvest import message_to_row

if TYPE_CHECKING:
    from twin.chat.generate import Twin

JOB_KIND = "assist"
LOG_SIZE = 50
"""Log entries kept in the job's progress (newest first)."""
REVOKED = TelegramError(
    "The Telegram session was ended on another device (or by Telegram); the assistant stopped.",
    hint=LOGIN_HINT,
)


class AssistOptions(BaseModel):
    """How the assistant behaves (the job's params)."""

    run: str | None = None
    """A run id or dir; None: the newest finished run."""
    quiet_seconds: int = 300
    """No draft in a chat where the owner wrote within this many seconds."""
    context_messages: int = 30
    """Recent messages read from Telegram as context."""
    min_interval_seconds: float = 2.0
    """At least this long between two saved drafts (any chats)."""
    max_flood_wait_seconds: int = 120
    """FLOOD_WAITs up to this long are waited out; longer ones pause drafting."""
    attempts: int = 3
    """Replies generated at most per message when one contains a placeholder."""
    max_new_tokens: int = 96
    temperature: float = 0.8
    seed: int | None = None
    """Makes drafts reproducible (tests, benchmarks)."""
    check_seconds: float = 60.0
    """How often the listener asks Telegram whether the session is still valid."""
    reconnect_max_seconds: float = 60.0
    """The longest pause between two reconnection attempts."""
    poll_seconds: float = 0.5
    """How often a stop request is looked for."""


class LogEntry(BaseModel):
    """One line of the live log: when, which contact, how long a draft (no text)."""

    time_unix: int
    contact: str
    length: int = 0
    outcome: str
    """``draft saved``, or why not (``skipped: …``), or a connection event."""


class AssistStatus(BaseModel):
    """What the listener is doing; stored as its job's progress."""

    state: str = "starting"
    """starting, listening, reconnecting, stopped."""
    run_id: str | None = None
    drafts: int = 0
    entries: int = 0
    """Log entries written so far (the log keeps the newest `LOG_SIZE`)."""
    log: list[LogEntry] = []


StatusCallback = Callable[[AssistStatus], None]


def owner_name(settings: Settings) -> str:
    """The owner's display name as the dataset tags it (first and last name, else "Me")."""
    with session_scope(settings) as db:
        owner = get_owner(db)
        name = owner.display_name
    return name or NEUTRAL_ME


def set_assist(*, settings: Settings, dialog_id: int, on: bool) -> Dialog:
    """Switch the twin's drafts on or off for one chat.

    Args:
        settings: whose database.
        on: True to let the twin write drafts there.
    """
    with session_scope(settings) as db:
        dialog = db.get(Dialog, dialog_id)
        if dialog is None:
            raise TwinError(f"There is no chat {dialog_id}.", hint="Harvest your chats first.")
        if on and dialog.access_hash is None:
            raise TwinError(
                f"The chat with {dialog.name} was only imported from an export.",
                hint="Harvest it from Telegram first (`twin harvest`), then switch it on.",
            )
        dialog.assist = on
        db.add(dialog)
    return dialog


# -- the listener ----------------------------------------------------------------------------


class Assistant:
    """Turns incoming messages into drafts for one connected client (see the module docstring).

    Args:
        settings: whose database holds the switches.
        twin: the loaded model.
        options: the rules' settings.
        status: the shared status (its log is appended to).
        report: called whenever the status changed.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        twin: Twin,
        options: AssistOptions,
        status: AssistStatus,
        report: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.twin = twin
        self.options = options
        self.status = status
        self.report = report
        self.me = owner_name(settings)
        self.scrubber = Scrubber(ScrubConfig(regions=list(settings.phone_regions)))
        self.pending: dict[int, int] = {}
        """peer id → date of the newest message waiting for a draft (a burst gets one)."""
        self.wake = asyncio.Event()
        self.own_drafts: dict[int, str] = {}
        self.last_save = 0.0
        self.paused_until = 0.0

    def log(self, contact: str, outcome: str, length: int = 0) -> None:
        entry = LogEntry(
            time_unix=int(time.time()), contact=contact, length=length, outcome=outcome
        )
        self.status.log = [entry, *self.status.log][:LOG_SIZE]
        self.status.entries += 1
        self.report()

    async def on_message(self, event: events.NewMessage.Event) -> None:
        """Telethon handler: note the chat; the drafting loop takes it from there."""
        if not event.is_private or event.message.out:
            return
        self.pending[event.chat_id] = int(event.message.date.timestamp())
        self.wake.set()

    async def drafting_loop(self, client: TelegramClient) -> None:
        """Forever: take the chats with new messages, one draft at a time."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.pending:
                peer_id = next(iter(self.pending))
                incoming_unix = self.pending.pop(peer_id)
                try:
                    await self.draft_for(client, peer_id, incoming_unix)
                except errors.FloodWaitError as exc:  # reading the chat was refused for now
                    self.paused_until = time.time() + exc.seconds
                    self.log(
                        "Telegram", f"paused: Telegram asks to wait {format_wait(exc.seconds)}"
                    )
                except (errors.UnauthorizedError, errors.AuthKeyError):
                    raise
                except errors.RPCError as exc:
                    self.log("Telegram", f"skipped: {telegram_error(exc).message}")
                except TwinError as exc:  # e.g. the context does not fit the model
                    self.log("twin", f"skipped: {exc.message}")

    async def draft_for(self, client: TelegramClient, peer_id: int, incoming_unix: int) -> None:
        with session_scope(self.settings) as db:
            dialog = db.exec(select(Dialog).where(Dialog.peer_id == peer_id)).first()
        if dialog is None or not dialog.assist or dialog.access_hash is None:
            return  # not switched on: nothing is read, nothing is logged
        name = dialog.name
        if time.time() < self.paused_until:
            wait = format_wait(int(self.paused_until - time.time()) + 1)
            self.log(name, f"skipped: Telegram asked to wait (another {wait})")
            return
        peer = types.InputPeerUser(peer_id, dialog.access_hash)
        recent = [
            row
            for message in await client.get_messages(peer, limit=self.options.context_messages)
            if (row := message_to_row(message)) is not None
        ]
        messages = sorted(recent, key=lambda r: r.tg_id)
        reason = quiet_reason(
            messages,
            incoming_unix=incoming_unix,
            now_unix=int(time.time()),
            quiet_seconds=self.options.quiet_seconds,
        )
        if reason is not None:
            self.log(name, f"skipped: {reason}")
            return
        turns = context_turns(messages, me=self.me, peer=name, scrubber=self.scrubber)
        if not turns or turns[-1].mine:
            self.log(name, "skipped: nothing to answer")
            return
        reply = await asyncio.to_thread(self.generate, turns, name)
        if reply is None:
            self.log(name, f"skipped: {self.options.attempts} replies all had placeholders")
            return
        await self.save(client, peer, peer_id, name, reply, incoming_unix)

    def generate(self, turns: list[Turn], peer: str) -> str | None:
        """The first clean reply of up to ``attempts`` (runs in a worker thread)."""

        def attempts() -> Iterator[str]:
            for attempt in range(self.options.attempts):
                seed = None if self.options.seed is None else self.options.seed + attempt
                yield "".join(
                    self.twin.stream_reply(
                        context=turns,
                        me=self.me,
                        peer=peer,
                        temperature=self.options.temperature,
                        max_new_tokens=self.options.max_new_tokens,
                        seed=seed,
                    )
                )

        return first_clean_reply(attempts())

    async def save(
        self,
        client: TelegramClient,
        peer: types.InputPeerUser,
        peer_id: int,
        name: str,
        reply: str,
        incoming_unix: int,
    ) -> None:
        for retry in (False, True):
            wait = self.last_save + self.options.min_interval_seconds - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            # Read the draft right before writing: the owner may have started typing meanwhile.
            [dialog] = (
                await client(
                    functions.messages.GetPeerDialogsRequest([types.InputDialogPeer(peer)])
                )
            ).dialogs
            reason = draft_reason(
                dialog.draft, incoming_unix=incoming_unix, own_digest=self.own_drafts.get(peer_id)
            )
            if reason is not None:
                self.log(name, f"skipped: {reason}")
                return
            try:
                await client(functions.messages.SaveDraftRequest(peer=peer, message=reply))
            except errors.FloodWaitError as exc:
                if retry or exc.seconds > self.options.max_flood_wait_seconds:
                    self.paused_until = time.time() + exc.seconds
                    self.log(name, f"skipped: Telegram asks to wait {format_wait(exc.seconds)}")
                    return
                self.log(name, f"waiting {format_wait(exc.seconds)} (Telegram's flood limit)")
                await asyncio.sleep(exc.seconds)
                continue
            self.last_save = time.monotonic()
            self.own_drafts[peer_id] = digest(reply)
            self.status.drafts += 1
            self.log(name, "draft saved", len(reply))
            return


def _with_updates(factory: ClientFactory) -> ClientFactory:
    def make(*, session: str | None, receive_updates: bool) -> TelegramClient:
        return factory(session=session, receive_updates=True)

    return make


def check_ready(*, settings: Settings, run: str | Path | None) -> Path:
    """The run dir to draft with, after checking that there is one and that the owner is
    logged in to Telegram: `twin.errors.RunError` or `TelegramError` say what is missing.

    Args:
        settings: whose runs and stored session.
        run: a run id or dir, or None for the newest finished run.
    """
    run_dir = resolve_run_dir(settings=settings, run=run)
    if load_session(settings) is None:
        raise TelegramError("Not logged in to Telegram.", hint=LOGIN_HINT)
    return run_dir


def load_assist_twin(*, settings: Settings, run: str | Path | None) -> Twin:
    """The model of the chosen run (the newest finished one by default); `RunError` if none.

    Args:
        settings: whose runs dir.
        run: a run id or dir, or None.
    """
    from twin.chat.load import load_twin  # loads torch: only when the listener starts

    return load_twin(run_dir=resolve_run_dir(settings=settings, run=run))


async def assist(
    *,
    settings: Settings,
    options: AssistOptions | None = None,
    twin: Twin | None = None,
    client_factory: ClientFactory | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: StatusCallback | None = None,
) -> AssistStatus:
    """Listen for new private messages and write the twin's reply drafts until stopped.

    Raises `TelegramError` when not logged in or when the session is ended elsewhere, and
    `twin.errors.RunError` when no run is trained yet; a lost connection is retried.

    Args:
        settings: whose database, stored session and runs.
        options: the rules (`AssistOptions`); default: the defaults.
        twin: an already loaded model; default: the run named in ``options`` is loaded.
        client_factory: how to build the client (default: a real Telegram client).
        should_stop: polled every ``options.poll_seconds``; True ends the listener cleanly.
        progress: called with the status whenever it changes (and as a heartbeat).
    """
    options = options or AssistOptions()
    factory = _with_updates(client_factory or default_factory(settings))
    status = AssistStatus()

    def report() -> None:
        if progress is not None:
            progress(status)

    if twin is None:
        twin = await asyncio.to_thread(load_assist_twin, settings=settings, run=options.run)
    status.run_id = twin.name
    assistant = Assistant(
        settings=settings, twin=twin, options=options, status=status, report=report
    )
    stop = should_stop or (lambda: False)
    backoff = 1.0
    while not stop():
        try:
            client = await connect_owner(settings, client_factory=factory)
        except (ConnectionError, OSError) as exc:
            status.state = "reconnecting"
            assistant.log("Telegram", f"cannot connect ({exc}); retrying in {backoff:.0f} s")
            if await _sleep_unless_stopped(backoff, stop, options.poll_seconds):
                break
            backoff = min(backoff * 2, options.reconnect_max_seconds)
            continue
        connected_at = time.monotonic()
        try:
            lost = await _listen(client, assistant, options, stop, status)
        finally:
            await client.disconnect()
        if not lost:
            break
        if time.monotonic() - connected_at >= options.reconnect_max_seconds:
            backoff = 1.0  # it had been working: start the pauses short again
        status.state = "reconnecting"
        assistant.log("Telegram", "connection lost; reconnecting")
        if await _sleep_unless_stopped(backoff, stop, options.poll_seconds):
            break
        backoff = min(backoff * 2, options.reconnect_max_seconds)
    status.state = "stopped"
    report()
    return status


async def _listen(
    client: TelegramClient,
    assistant: Assistant,
    options: AssistOptions,
    stop: Callable[[], bool],
    status: AssistStatus,
) -> bool:
    """Serve one connection; True when it was lost (reconnect), False when asked to stop."""
    client.flood_sleep_threshold = 0  # FLOOD_WAITs reach the assistant, which logs them
    client.add_event_handler(assistant.on_message, events.NewMessage(incoming=True))
    drafting = asyncio.create_task(assistant.drafting_loop(client))
    status.state = "listening"
    assistant.report()
    next_check = time.monotonic() + options.check_seconds
    try:
        while not stop():
            if not client.is_connected() or drafting.done():
                if drafting.done() and drafting.exception() is not None:
                    raise drafting.exception()  # type: ignore[misc]
                if isinstance(
                    client._updates_error, errors.UnauthorizedError | errors.AuthKeyError
                ):
                    raise REVOKED
                return True
            if time.monotonic() >= next_check:
                await client(functions.updates.GetStateRequest())  # also says "still here"
                next_check = time.monotonic() + options.check_seconds
                assistant.report()
            await asyncio.sleep(options.poll_seconds)
        return False
    except (errors.UnauthorizedError, errors.AuthKeyError) as exc:
        raise REVOKED from exc
    except errors.RPCError as exc:
        raise telegram_error(exc) from exc
    except (ConnectionError, OSError):
        return True
    finally:
        drafting.cancel()
        await asyncio.gather(drafting, return_exceptions=True)


async def _sleep_unless_stopped(
    seconds: float, stop: Callable[[], bool], poll_seconds: float
) -> bool:
    """Sleep ``seconds``; True as soon as a stop is requested."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if stop():
            return True
        await asyncio.sleep(min(poll_seconds, deadline - time.monotonic()))
    return stop()
