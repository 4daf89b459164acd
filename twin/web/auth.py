"""First run, login and logout: the only pages reachable without the owner's session.

Before a session exists, the forms are guarded by a double-submit CSRF cookie (SameSite=Strict)
plus the app-wide Origin check; wrong passwords are throttled (`twin.web.security.LoginThrottle`):
per browser with exponential backoff, and at a global rate for browsers that never logged in.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel

from twin.store import get_owner, update_owner
from twin.web import security
from twin.web.deps import (
    DbDep,
    OwnerDep,
    StateDep,
    is_setup_done,
    render,
    require_owner,
    verify_csrf,
)
from twin.web.sessions import DEVICE_COOKIE, DEVICE_TTL_SECONDS

router = APIRouter()
"""Public routes: setup and login."""
session_router = APIRouter(dependencies=[Depends(require_owner), Depends(verify_csrf)])
"""Routes about the session itself, behind the owner check like every other page."""


def _cookie_kwargs(request: Request) -> dict[str, object]:
    return {
        "httponly": True,
        "samesite": "strict",
        "secure": request.url.scheme == "https",
        "path": "/",
    }


def _prelogin_page(
    request: Request, template: str, context: dict[str, object], *, status_code: int = 200
) -> Response:
    """Render a setup/login form with a double-submit CSRF token (reusing the cookie's)."""
    token = request.cookies.get(security.PRELOGIN_COOKIE) or security.new_token()
    response = render(request, template, {**context, "form_token": token}, status_code=status_code)
    response.set_cookie(security.PRELOGIN_COOKIE, token, **_cookie_kwargs(request))  # type: ignore[arg-type]
    return response


def _prelogin_token_ok(request: Request, form_token: str) -> bool:
    return security.tokens_match(request.cookies.get(security.PRELOGIN_COOKIE), form_token)


def _start_session(request: Request, state: StateDep, target: str) -> Response:
    _, cookie = state.sessions.create()
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        security.SESSION_COOKIE,
        cookie,
        max_age=state.sessions.ttl_seconds,
        **_cookie_kwargs(request),  # type: ignore[arg-type]
    )
    if state.devices.device_id(request.cookies.get(DEVICE_COOKIE)) is None:
        response.set_cookie(
            DEVICE_COOKIE,
            state.devices.issue(),
            max_age=DEVICE_TTL_SECONDS,
            **_cookie_kwargs(request),  # type: ignore[arg-type]
        )
    response.delete_cookie(security.PRELOGIN_COOKIE, path="/")
    return response


def _safe_next(target: str | None) -> str:
    # Only local paths: "//evil.example" or "https://…" would turn login into an open redirect.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


@router.get("/setup")
def setup_page(request: Request, state: StateDep) -> Response:
    if is_setup_done(state):
        return RedirectResponse("/login", status_code=303)
    return _prelogin_page(request, "setup.html", {})


class SetupForm(BaseModel):
    password: str = ""
    confirm: str = ""
    csrf_token: str = ""


class LoginForm(BaseModel):
    password: str = ""
    csrf_token: str = ""
    next: str = "/"


@router.post("/setup")
def setup_submit(
    request: Request, state: StateDep, db: DbDep, form: Annotated[SetupForm, Form()]
) -> Response:
    if is_setup_done(state):
        return RedirectResponse("/login", status_code=303)
    if not _prelogin_token_ok(request, form.csrf_token):
        return _prelogin_page(
            request, "setup.html", {"error": "The form expired. Try again."}, status_code=403
        )
    problem = security.check_new_password(form.password, form.confirm)
    if problem:
        return _prelogin_page(request, "setup.html", {"error": problem}, status_code=400)
    owner = get_owner(db)
    if owner.password_hash is not None:  # another tab won the race
        return RedirectResponse("/login", status_code=303)
    update_owner(db, password_hash=security.hash_password(form.password))
    db.commit()
    state.setup_done = True
    return _start_session(request, state, "/")


@router.get("/login")
def login_page(request: Request, state: StateDep, next: str = "/") -> Response:
    if not is_setup_done(state):
        return RedirectResponse("/setup", status_code=303)
    return _prelogin_page(request, "login.html", {"next": _safe_next(next)})


@router.post("/login")
def login_submit(
    request: Request, state: StateDep, db: DbDep, form: Annotated[LoginForm, Form()]
) -> Response:
    if not is_setup_done(state):
        return RedirectResponse("/setup", status_code=303)
    target = _safe_next(form.next)
    if not _prelogin_token_ok(request, form.csrf_token):
        return _prelogin_page(
            request,
            "login.html",
            {"error": "The form expired. Try again.", "next": target},
            status_code=403,
        )
    device = state.devices.device_id(request.cookies.get(DEVICE_COOKIE))
    # Without a device cookie, the form's cookie tells browsers apart (it matched the form).
    client = f"device:{device}" if device else f"form:{form.csrf_token}"
    wait_s = state.throttle.begin(client, trusted=device is not None)
    if wait_s:
        response = _prelogin_page(
            request,
            "login.html",
            {"error": f"Too many wrong passwords. Try again in {wait_s} s.", "next": target},
            status_code=429,
        )
        response.headers["Retry-After"] = str(wait_s)
        return response
    right = False
    try:
        owner = get_owner(db)
        right = bool(owner.password_hash) and security.verify_password(
            owner.password_hash or "", form.password
        )
    finally:
        if right:
            state.throttle.succeed(client)
        else:
            wait_s = state.throttle.fail(client)
    if right:
        return _start_session(request, state, target)
    message = "Wrong password."
    if wait_s:
        message += f" Try again in {wait_s} s."
    return _prelogin_page(
        request, "login.html", {"error": message, "next": target}, status_code=401
    )


@session_router.post("/logout")
def logout(request: Request, state: StateDep, principal: OwnerDep) -> Response:
    if principal.session is not None:
        state.sessions.revoke(principal.session.session_id)
        # A half-done Telegram login of this browser is dropped (its client expires with it).
        state.telegram_logins.pop(principal.session.session_id, None)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(security.SESSION_COOKIE, path="/")
    return response
