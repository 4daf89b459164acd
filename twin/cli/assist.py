"""``twin assist``: the twin writes reply drafts into the chats you switch on; you send them."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal

import typer
from sqlmodel import col, select

from twin import jobs
from twin.assist.drafts import JOB_KIND, AssistOptions, AssistStatus, check_ready, set_assist
from twin.assist.job import run_assist_job, start_assist_job
from twin.config import Settings, get_settings
from twin.db import session_scope, upgrade_database
from twin.errors import TwinError
from twin.models import Dialog

WHAT_IT_DOES = (
    "When someone writes to you in a chat you switched on, twin writes its suggested reply "
    "into that chat's input box as a Telegram draft. It never sends anything: you send, edit "
    "or ignore the draft. Replies are generated on this machine; message texts are read from "
    "Telegram for context and not stored."
)


def find_dialog(settings: Settings, contact: str) -> Dialog:
    """The chat meant by ``contact``: a dialog id, or a contact's name (any case).

    Args:
        settings: whose database.
        contact: what the user typed.
    """
    with session_scope(settings) as db:
        if contact.isdigit() and (by_id := db.get(Dialog, int(contact))) is not None:
            return by_id
        found = list(db.exec(select(Dialog).where(col(Dialog.name).ilike(contact.strip()))))
    if len(found) == 1:
        return found[0]
    if not found:
        raise TwinError(
            f"No chat with {contact!r}.", hint="See `twin assist --list` for names and ids."
        )
    raise TwinError(
        f"{len(found)} chats are called {contact!r}.",
        hint="Use the id from `twin assist --list` instead.",
    )


def _list(settings: Settings) -> None:
    with session_scope(settings) as db:
        dialogs = list(db.exec(select(Dialog).order_by(col(Dialog.name))))
    for dialog in dialogs:
        mark = "on " if dialog.assist else "off"
        typer.echo(f"{mark}  {dialog.id:>5}  {dialog.name}")
    if not dialogs:
        typer.echo("no chats yet: run `twin harvest` first")


def assist_command(
    run: str | None = typer.Option(None, help="Run id or dir (default: the newest finished)."),
    on: list[str] = typer.Option([], "--on", help="Switch drafts on for this chat (name or id)."),
    off: list[str] = typer.Option([], "--off", help="Switch drafts off for this chat."),
    show: bool = typer.Option(False, "--list", help="List chats and whether drafts are on."),
    cancel: bool = typer.Option(False, "--cancel", help="Stop the listener running elsewhere."),
    quiet_seconds: int = typer.Option(
        300, min=0, help="No draft where you wrote yourself within this many seconds."
    ),
) -> None:
    """Write the twin's reply drafts into switched-on Telegram chats (never sends)."""
    settings = get_settings()
    upgrade_database(settings)
    for contact, state in [(c, True) for c in on] + [(c, False) for c in off]:
        dialog = set_assist(
            settings=settings, dialog_id=find_dialog(settings, contact).id or 0, on=state
        )
        typer.echo(f"drafts {'on' if state else 'off'} for {dialog.name}")
    if show:
        _list(settings)
    if cancel:
        active = jobs.active_job(settings=settings, kind=JOB_KIND)
        if active is None:
            typer.echo("no listener is running")
        else:
            jobs.request_cancel(settings=settings, job_id=active.id or 0)
            typer.echo(f"asked listener job {active.id} to stop")
    if on or off or show or cancel:
        return
    check_ready(settings=settings, run=run)
    typer.echo(WHAT_IT_DOES)
    job_id = start_assist_job(
        settings=settings, options=AssistOptions(run=run, quiet_seconds=quiet_seconds)
    )
    asyncio.run(_listen(settings, job_id))


async def _listen(settings: Settings, job_id: int) -> None:
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, interrupted.set)
    loop.add_signal_handler(signal.SIGTERM, interrupted.set)
    shown = 0

    def echo_new(status: AssistStatus) -> None:
        nonlocal shown
        fresh = status.log[: min(status.entries - shown, len(status.log))]
        shown = status.entries
        for entry in reversed(fresh):
            when = dt.datetime.fromtimestamp(entry.time_unix).strftime("%H:%M:%S")
            length = f"{entry.length} chars" if entry.length else ""
            typer.echo(f"{when}  {entry.contact}  {entry.outcome}  {length}".rstrip())

    typer.echo("listening; Ctrl-C stops")
    status = await run_assist_job(
        settings=settings, job_id=job_id, should_stop=interrupted.is_set, progress=echo_new
    )
    typer.echo(f"stopped: {status.drafts} drafts written")


def register(app: typer.Typer) -> None:
    app.command("assist")(assist_command)
