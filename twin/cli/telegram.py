"""``twin login``, ``twin logout`` and ``twin harvest``: the Telegram stage from the terminal."""

from __future__ import annotations

import asyncio
import io
import time

import qrcode
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from twin.config import Settings, get_settings
from twin.db import upgrade_database
from twin.errors import TelegramError, TwinError
from twin.telegram import login as tg_login
from twin.telegram.client import format_wait
from twin.telegram.harvest import HarvestProgress, HarvestSummary, harvest

console = Console()


def _draw_qr(url: str) -> None:
    qr = qrcode.QRCode(border=1)
    qr.add_data(url)
    out = io.StringIO()
    qr.print_ascii(out=out, invert=True)
    console.print(out.getvalue(), highlight=False)
    console.print("Scan it in Telegram → Settings → Devices → Link Desktop Device.")


async def _login_flow(settings: Settings, phone: str | None, use_qr: bool) -> tg_login.LoginResult:
    if use_qr:
        ticket = await tg_login.start_qr_login(settings)
        login_id, url = ticket.login_id, ""
        result = tg_login.LoginResult(qr=ticket)
        while result.qr is not None:
            if result.qr.url != url:
                url = result.qr.url
                _draw_qr(url)
            result = await tg_login.wait_qr(login_id, timeout=10)
    else:
        phone = phone or typer.prompt("Phone number (with country code)")
        ticket = await tg_login.start_login(settings, phone=phone)
        login_id = ticket.login_id
        while True:
            code = typer.prompt("Code Telegram sent you", hide_input=True)
            try:
                result = await tg_login.submit_code(login_id, code)
                break
            except TelegramError as exc:
                if "wrong" not in exc.message:
                    raise
                typer.secho(str(exc), fg=typer.colors.YELLOW, err=True)
    while result.needs_password:
        hint = f" (hint: {result.password_hint})" if result.password_hint else ""
        password = typer.prompt(f"Two-step verification password{hint}", hide_input=True)
        try:
            result = await tg_login.submit_password(login_id, password)
        except TelegramError as exc:
            if "wrong" not in exc.message:
                raise
            typer.secho(str(exc), fg=typer.colors.YELLOW, err=True)
    return result


def login(
    phone: str | None = typer.Option(None, help="Phone number with country code."),
    qr: bool = typer.Option(False, "--qr", help="Log in by scanning a QR code instead."),
) -> None:
    """Log in to Telegram (code, then the two-step password if the account has one)."""
    settings = get_settings()
    upgrade_database(settings)
    result = asyncio.run(_login_flow(settings, phone, qr))
    owner = result.owner
    assert owner is not None
    name = owner.display_name or owner.username
    typer.echo(f"logged in as {name} (id {owner.tg_user_id}); the session is stored encrypted")


def logout() -> None:
    """End the Telegram session at Telegram and delete it here."""
    settings = get_settings()
    upgrade_database(settings)
    if asyncio.run(tg_login.logout(settings)):
        typer.echo("logged out: the session is ended at Telegram and deleted here")
    else:
        typer.echo(
            "the stored session is deleted; Telegram could not be told, so end it under "
            "Settings → Devices in a Telegram app if it is still listed"
        )


def harvest_command(
    check_deletions: bool = typer.Option(
        False,
        "--check-deletions",
        help="Also ask Telegram about every older stored message (100 per request) and drop "
        "the ones deleted there from datasets.",
    ),
    takeout: bool = typer.Option(False, "--takeout", hidden=True),
) -> None:
    """Fetch your private chats into the local database (resumable, incremental)."""
    if takeout:
        raise TwinError(
            "--takeout is no longer offered.",
            hint="Run `twin harvest` without it: the ordinary harvest resumes where it stopped "
            "and waits as long as Telegram asks.",
        )
    settings = get_settings()
    upgrade_database(settings)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console
    ) as bar:
        task = bar.add_task("dialogs", total=None)

        def show(p: HarvestProgress) -> None:
            bar.update(
                task,
                total=p.dialogs_total or None,
                completed=p.dialogs_done,
                description=f"{p.messages_new} new messages · {p.current_dialog or 'dialogs'}",
            )

        summary = asyncio.run(
            harvest(settings=settings, check_all_deletions=check_deletions, progress=show)
        )
    _print_summary(summary)


def _print_summary(summary: HarvestSummary) -> None:
    console.print(
        f"{summary.dialogs_harvested}/{summary.dialogs_total} private chats harvested, "
        f"{summary.messages_new} new messages, {summary.messages_edited} edits picked up, "
        f"{summary.messages_deleted} deleted in Telegram"
    )
    reasons: dict[str, int] = {}
    for skipped in summary.skipped:
        reasons[skipped.reason] = reasons.get(skipped.reason, 0) + 1
    for reason, count in sorted(reasons.items()):
        console.print(f"  skipped {count}: {reason}")
    now = int(time.time())
    for error in summary.errors:
        console.print(
            f"  [red]failed[/] {error.name}: {error.error} ({error.failures} run"
            f"{'s' * (error.failures != 1)} in a row); retried by a run in "
            f"{format_wait(max(0, error.retry_after_unix - now))} or later",
            highlight=False,
        )
    wait = summary.flood_wait
    if wait is not None:
        come_back = time.strftime("%Y-%m-%d %H:%M", time.localtime(wait.retry_after_unix))
        console.print(
            f"  [yellow]stopped:[/] Telegram asks to wait {format_wait(wait.seconds)} before "
            f"more {wait.request} requests; run again after {come_back} "
            f"(in {format_wait(max(0, wait.retry_after_unix - now))})",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    app.command("login")(login)
    app.command("logout")(logout)
    app.command("harvest")(harvest_command)
