"""Connect Telegram: API credentials, then a login by phone + code (+ 2FA password) or QR code.

Each step calls `twin.telegram.login`, the same async functions ``twin login`` uses, inside the
server's event loop (a Telethon client belongs to the loop that made it). The pending login's
id stays on the server, tied to the browser session; codes and passwords arrive in POST bodies
and are never echoed, logged or stored. The API hash is stored encrypted and never shown.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import qrcode
import qrcode.image.svg
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlmodel import Session, col, select

from twin.config import Settings, telegram_credentials_problem
from twin.db import get_engine
from twin.errors import ConfigError, TelegramError
from twin.jobs import list_jobs
from twin.models import Dialog, HarvestState, RequestWait
from twin.pipeline import UNREACHABLE, telegram_unreachable
from twin.store import get_owner, now_unix, update_owner
from twin.telegram import login
from twin.telegram.client import with_telegram_credentials
from twin.vault import encrypt
from twin.web import tasks
from twin.web.deps import OwnerDep, StateDep, WebState, render
from twin.web.jobview import job_redirect, job_view

router = APIRouter()

QR_WAIT_SECONDS = 5.0
"""Each wait for a scan; between two waits the page learns whether the code changed."""


def qr_svg(url: str) -> str:
    """The QR code of ``url`` as an inline SVG element (no scripts, no external files).

    Args:
        url: the ``tg://login?token=…`` URL.
    """
    image = qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    return image.to_string(encoding="unicode")


def credentials_settings(state: WebState) -> Settings | None:
    """The settings with API credentials: from the environment, else saved from this page."""
    return with_telegram_credentials(state.settings)


def _login_key(principal: OwnerDep) -> str:
    return principal.session.session_id if principal.session else "token"


def _factory(state: WebState, settings: Settings) -> Any:
    maker = state.telegram_client_factory
    return maker(settings) if maker is not None else None


def _page(request: Request, state: WebState, key: str, **extra: Any) -> Response:
    with Session(get_engine(state.settings)) as db:
        owner = get_owner(db)
        failing = db.exec(
            select(Dialog.name, HarvestState.last_error, HarvestState.retry_after_unix)
            .join(HarvestState, col(HarvestState.dialog_id) == col(Dialog.id))
            .where(col(HarvestState.last_error).is_not(None))
        ).all()
        waits = db.exec(
            select(RequestWait).where(col(RequestWait.retry_after_unix) > now_unix())
        ).all()
    pending = state.telegram_logins.get(key, {})
    recent = list_jobs(settings=state.settings, kind="harvest", limit=1)
    context = {
        "connected": owner.session_encrypted is not None,
        "harvest_job": job_view(recent[0], state.live_progress, state.settings) if recent else None,
        "flood_waits": [
            {"request": w.request, "retry_after_unix": w.retry_after_unix} for w in waits
        ],
        "failing_chats": [{"name": n, "error": e, "retry_after_unix": r} for n, e, r in failing],
        "owner_name": owner.display_name,
        "username": owner.username,
        "has_credentials": credentials_settings(state) is not None,
        "step": pending.get("step"),
        "phone": pending.get("phone"),
        "password_hint": pending.get("password_hint"),
        "qr": qr_svg(pending["qr_url"]) if pending.get("qr_url") else None,
        **extra,
    }
    status_code = 400 if extra.get("error") else 200
    return render(request, "telegram.html", context, status_code=status_code)


@router.get("/telegram")
def telegram_page(request: Request, state: StateDep, principal: OwnerDep) -> Response:
    return _page(request, state, _login_key(principal))


@router.post("/telegram/credentials")
def save_credentials(
    request: Request,
    state: StateDep,
    principal: OwnerDep,
    api_id: Annotated[str, Form()] = "",
    api_hash: Annotated[str, Form()] = "",
) -> Response:
    key = _login_key(principal)
    api_id, api_hash = api_id.strip(), api_hash.strip().lower()
    problem = (
        "The API id is a number, e.g. 1234567."
        if not api_id.isdigit()
        else telegram_credentials_problem(int(api_id), api_hash)
    )
    if problem is not None:
        return _page(
            request,
            state,
            key,
            error=f"{problem} Copy both from your app at my.telegram.org → API development tools.",
            api_id=api_id,
        )
    with Session(get_engine(state.settings)) as db:
        update_owner(db, api_id=int(api_id), api_hash_encrypted=encrypt(state.settings, api_hash))
        db.commit()
    return RedirectResponse("/telegram", status_code=303)


async def _run_step(
    request: Request, state: WebState, key: str, step: Any
) -> tuple[login.LoginResult | None, Response | None]:
    """Run one login step; a Telegram error becomes the page with its message."""
    try:
        return await step(), None
    except (TelegramError, ConfigError) as exc:
        if isinstance(exc.__cause__, UNREACHABLE):
            exc = telegram_unreachable(exc.__cause__)
        return None, _page(request, state, key, error=str(exc), unreachable=_unreachable(exc))
    except UNREACHABLE as exc:
        error = telegram_unreachable(exc)
        return None, _page(request, state, key, error=str(error), unreachable=True)


def _unreachable(exc: BaseException) -> bool:
    return "cannot be reached" in str(exc)


def _after(state: WebState, key: str, result: login.LoginResult) -> Response:
    if result.owner is not None:
        state.telegram_logins.pop(key, None)
    elif result.needs_password:
        state.telegram_logins[key].update(
            step="password", password_hint=result.password_hint, qr_url=None
        )
    return RedirectResponse("/telegram", status_code=303)


@router.post("/telegram/phone")
async def send_code(
    request: Request, state: StateDep, principal: OwnerDep, phone: Annotated[str, Form()] = ""
) -> Response:
    return await _start(
        request,
        state,
        principal,
        lambda settings, factory: login.start_login(settings, phone=phone, client_factory=factory),
        lambda ticket: {"step": "code", "phone": ticket.phone},
    )


async def _start(
    request: Request,
    state: StateDep,
    principal: OwnerDep,
    start: Callable[[Settings, Any], Awaitable[Any]],
    pending: Callable[[Any], dict[str, Any]],
) -> Response:
    """Begin a login (code or QR) for this browser session, replacing any pending one.

    Args:
        state: the app state holding pending logins.
        principal: the logged-in owner.
        start: starts the login with the credentials' settings and the client factory
            (None: the real one).
        pending: what to remember of the returned ticket (besides its login id).
    """
    key = _login_key(principal)
    settings = credentials_settings(state)
    if settings is None:
        return _page(request, state, key, error="Enter the API id and hash first.")
    await _forget(state, key)
    ticket, page = await _run_step(
        request, state, key, lambda: start(settings, _factory(state, settings))
    )
    if page is not None:
        return page
    state.telegram_logins[key] = {"id": ticket.login_id, **pending(ticket)}  # type: ignore[union-attr]
    return RedirectResponse("/telegram", status_code=303)


async def _next_step(
    request: Request,
    state: StateDep,
    principal: OwnerDep,
    step: Callable[[str], Awaitable[login.LoginResult]],
) -> Response:
    """Run one step (code, password) of the pending login of this browser session."""
    key = _login_key(principal)
    pending = state.telegram_logins.get(key)
    if pending is None:
        return _page(request, state, key, error="This login expired. Start again.")
    result, page = await _run_step(request, state, key, lambda: step(pending["id"]))
    return page or _after(state, key, result)  # type: ignore[arg-type]


@router.post("/telegram/code")
async def submit_code(
    request: Request, state: StateDep, principal: OwnerDep, code: Annotated[str, Form()] = ""
) -> Response:
    return await _next_step(
        request, state, principal, lambda login_id: login.submit_code(login_id, code)
    )


@router.post("/telegram/password")
async def submit_password(
    request: Request,
    state: StateDep,
    principal: OwnerDep,
    password: Annotated[str, Form()] = "",
) -> Response:
    return await _next_step(
        request, state, principal, lambda login_id: login.submit_password(login_id, password)
    )


@router.post("/telegram/qr")
async def start_qr(request: Request, state: StateDep, principal: OwnerDep) -> Response:
    return await _start(
        request,
        state,
        principal,
        lambda settings, factory: login.start_qr_login(settings, client_factory=factory),
        lambda ticket: {"step": "qr", "qr_url": ticket.url},
    )


@router.get("/telegram/qr/events")
async def qr_events(state: StateDep, principal: OwnerDep) -> StreamingResponse:
    """Wait for the scan: sends a new QR code when the old one expires, then where to go."""
    key = _login_key(principal)

    async def stream() -> AsyncIterator[str]:
        while True:
            pending = state.telegram_logins.get(key)
            if pending is None or pending.get("step") != "qr":
                yield f"event: next\ndata: {json.dumps({'url': '/telegram'})}\n\n"
                return
            try:
                result = await login.wait_qr(pending["id"], QR_WAIT_SECONDS)
            except TelegramError as exc:
                state.telegram_logins.pop(key, None)
                yield f"event: failure\ndata: {json.dumps({'detail': str(exc)})}\n\n"
                return
            if result.qr is not None:
                if result.qr.url != pending.get("qr_url"):
                    pending["qr_url"] = result.qr.url
                    yield f"data: {json.dumps({'svg': qr_svg(result.qr.url)})}\n\n"
                continue
            _after(state, key, result)
            yield f"event: next\ndata: {json.dumps({'url': '/telegram'})}\n\n"
            return

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


async def _forget(state: WebState, key: str) -> None:
    pending = state.telegram_logins.pop(key, None)
    if pending is not None:
        await login.cancel_login(pending["id"])


@router.post("/telegram/cancel")
async def cancel(state: StateDep, principal: OwnerDep) -> Response:
    await _forget(state, _login_key(principal))
    return RedirectResponse("/telegram", status_code=303)


@router.post("/telegram/logout")
async def disconnect(request: Request, state: StateDep, principal: OwnerDep) -> Response:
    """End the Telegram session at Telegram and delete it here."""
    key = _login_key(principal)
    settings = credentials_settings(state) or state.settings
    revoked = await login.logout(settings, client_factory=_factory(state, settings))
    if not revoked:
        return _page(
            request,
            state,
            key,
            notice="The session was deleted here, but Telegram could not be told: end it under "
            "Settings → Devices in your Telegram app.",
        )
    return RedirectResponse("/telegram", status_code=303)


@router.post("/telegram/fetch")
def fetch_chats(state: StateDep) -> Response:
    """Fetch my chats / Sync new messages: a harvest job (or the running one)."""
    return job_redirect(lambda: tasks.start_harvest(state))
