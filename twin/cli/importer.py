"""``twin import`` (a Telegram Desktop export) and ``twin contacts`` (which chats to train on)."""

from __future__ import annotations

import difflib
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
from rich.table import Table

from twin.config import get_settings
from twin.db import session_scope, upgrade_database
from twin.errors import ImportFailed
from twin.importer import import_export
from twin.models import DialogPublic
from twin.store import list_dialogs, set_included


def import_command(
    path: Path = typer.Argument(..., help="The export's result.json, or the folder holding it."),
    me: int | None = typer.Option(
        None, "--me", help="Your Telegram user id, if a single-chat export can't tell."
    ),
    time_zone: str | None = typer.Option(
        None,
        "--tz",
        help="Time zone of the machine that made the export (e.g. Europe/Moscow), for messages "
        "without date_unixtime. Default: this machine's.",
    ),
) -> None:
    """Import a Telegram Desktop export (JSON): personal chats only, all or nothing."""
    settings = get_settings()
    upgrade_database(settings)
    console = Console()
    columns = ("{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("reading", total=None)
        summary = import_export(
            settings=settings,
            path=path,
            me=me,
            time_zone=time_zone,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    table = Table(title=f"imported {summary.path}", show_header=False)
    table.add_row("dialogs imported", str(summary.dialogs_imported))
    table.add_row("messages new", str(summary.messages_new))
    table.add_row("messages updated", str(summary.messages_updated))
    table.add_row("messages skipped (unsupported)", str(summary.messages_skipped))
    for kind, count in sorted(summary.chats_skipped.items()):
        table.add_row(f"chats skipped: {kind}", str(count))
    console.print(table)
    if summary.messages_local_time:
        zone = summary.time_zone or "this machine's time zone"
        console.print(
            f"{summary.messages_local_time} messages had no date_unixtime; their times were "
            f"read in {zone}. If the export was made in another zone, import again with --tz."
        )
    for chat, ids in sorted(summary.duplicates.items()):
        shown = ", ".join(map(str, ids[:10])) + (" …" if len(ids) > 10 else "")
        console.print(
            f"warning: the chat {chat!r} holds message ids more than once ({shown}); "
            "the first copy of each was kept."
        )


def _resolve(dialogs: list[DialogPublic], wanted: list[str]) -> list[int]:
    """Dialog ids for names (case-insensitive), dialog ids or peer ids; unknown ones fail."""
    by_name = {d.name.casefold(): d.id for d in dialogs}
    by_name |= {f"@{d.username}".casefold(): d.id for d in dialogs if d.username}
    by_id = {d.id: d.id for d in dialogs} | {d.peer_id: d.id for d in dialogs}
    ids = []
    for token in wanted:
        key = token.strip().casefold()
        if key.lstrip("-").isdigit() and int(key) in by_id:
            ids.append(by_id[int(key)])
        elif key in by_name:
            ids.append(by_name[key])
        else:
            close = difflib.get_close_matches(key, list(by_name), n=3, cutoff=0.5)
            names = [d.name for d in dialogs if d.name.casefold() in close]
            raise ImportFailed(
                f"No chat called {token!r}.",
                hint=f"Did you mean {', '.join(map(repr, names))}?"
                if names
                else "Run `twin contacts` to see the chats and their ids.",
            )
    return ids


def contacts(
    include: list[str] = typer.Option(
        [], "--include", "-i", help="Train on this chat (name or id; repeatable)."
    ),
    exclude: list[str] = typer.Option(
        [], "--exclude", "-x", help="Leave this chat out of training (name or id; repeatable)."
    ),
) -> None:
    """List the chats with their message counts; include or exclude chats from training."""
    settings = get_settings()
    upgrade_database(settings)
    with session_scope(settings) as session:
        dialogs = list_dialogs(session)
        for flag, wanted in ((True, include), (False, exclude)):
            if wanted:
                set_included(session, dialog_ids=_resolve(dialogs, wanted), included=flag)
        if include or exclude:
            dialogs = list_dialogs(session)
    if not dialogs:
        typer.echo("no chats yet: run `twin import PATH` or the harvest first")
        return
    table = Table("id", "name", "username", "messages", "mine", "included")
    for d in dialogs:
        table.add_row(
            str(d.id),
            d.name,
            f"@{d.username}" if d.username else "",
            str(d.message_count),
            str(d.my_message_count),
            "yes" if d.included else "no",
        )
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("import")(import_command)
    app.command("contacts")(contacts)
