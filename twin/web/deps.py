"""FastAPI dependencies: the app's state, database sessions, the owner check and CSRF.

Every router except `twin.web.auth` is mounted behind `require_owner` and `verify_csrf` (see
`twin.web.app`), so a new route is locked unless someone deliberately puts it elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlmodel import Session

from twin.config import Settings
from twin.db import get_engine
from twin.files import write_private
from twin.models import Owner
from twin.web import security
from twin.web.security import LoginThrottle
from twin.web.sessions import DeviceCookies, SessionStore, WebSession


@dataclass
class WebState:
    """What the app keeps between requests (one process, one worker)."""

    settings: Settings
    templates: Jinja2Templates
    sessions: SessionStore = field(init=False)
    devices: DeviceCookies = field(init=False)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    setup_done: bool = False
    """Cached once the owner password exists (it is never unset while the app runs)."""
    live_progress: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Progress of the jobs running in this process, by job id (see `twin.web.background`)."""
    telegram_logins: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Started Telegram logins by browser session id: login id, step, phone, current QR URL."""
    telegram_client_factory: Callable[[Settings], Any] | None = None
    """Builds Telethon client factories; None: the real Telegram (tests use an in-memory one)."""
    chat_model: tuple[Path, Any] | None = None
    """The run dir and the `twin.chat.generate.Twin` loaded from it, once chat was used."""
    game_rounds: dict[str, Any] = field(default_factory=dict)
    """The pending round of "Which one is me?" by browser session id (the answer stays here)."""

    def __post_init__(self) -> None:
        self.sessions = SessionStore(self.settings)
        self.devices = DeviceCookies(self.settings)


def get_state(request: Request) -> WebState:
    return request.app.state.twin


StateDep = Annotated[WebState, Depends(get_state)]


def get_settings_dep(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def get_db(settings: SettingsDep) -> Iterator[Session]:
    """One database session per request, committed by the route when it writes."""
    with Session(get_engine(settings), expire_on_commit=False) as session:
        yield session


DbDep = Annotated[Session, Depends(get_db)]
# A row id in a path: SQLite's integers are 64-bit, so a larger one is a 422, not a 500.
DbId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]


def api_token_file(settings: Settings) -> Path:
    """Where the SHA-256 of the API token lives (the token itself is shown once, never stored)."""
    return settings.data_dir / "api_token.sha256"


def issue_api_token(settings: Settings) -> str:
    """Create a new API token (replacing any old one) and return it; only its digest is kept.

    Args:
        settings: whose data dir holds the digest.
    """
    token = security.new_token()
    path = api_token_file(settings)
    settings.ensure_data_dir()
    write_private(path, security.token_digest(token))
    return token


def is_setup_done(state: WebState) -> bool:
    """True once the owner password has been set."""
    if not state.setup_done:
        with Session(get_engine(state.settings)) as session:
            owner = session.get(Owner, 1)
            state.setup_done = owner is not None and owner.password_hash is not None
    return state.setup_done


class LoginRequired(Exception):
    """No valid session: pages redirect to /login (or /setup), the API answers 401."""

    def __init__(self, *, setup: bool) -> None:
        super().__init__("login required")
        self.setup = setup


@dataclass
class Principal:
    """Who is asking: the owner's browser session, or a client holding the API token."""

    session: WebSession | None = None

    @property
    def via_token(self) -> bool:
        return self.session is None


API_PREFIX = "/v1/"
"""The OpenAI-compatible API: the only paths an API token opens."""


def authenticate(
    state: WebState, *, path: str, authorization: str, cookie: str | None
) -> Principal:
    """Who is asking, or `LoginRequired`: on ``/v1/*`` a valid bearer token or the owner's
    session cookie; everywhere else only the cookie (an API token opens the API, nothing more).

    Args:
        state: the app's state (settings, sessions).
        path: the request path.
        authorization: the Authorization header ("" when missing).
        cookie: the session cookie's value.
    """
    if not is_setup_done(state):
        raise LoginRequired(setup=True)
    scheme, _, token = authorization.partition(" ")
    if path.startswith(API_PREFIX) and scheme.lower() == "bearer" and token.strip():
        digest_file = api_token_file(state.settings)
        if digest_file.is_file() and security.tokens_match(
            digest_file.read_text().strip(), security.token_digest(token.strip())
        ):
            return Principal()
        raise LoginRequired(setup=False)
    session = state.sessions.get(cookie)
    if session is None:
        raise LoginRequired(setup=False)
    return Principal(session=session)


PRINCIPAL_SCOPE_KEY = "twin.principal"
"""Where the app's middleware leaves the `Principal` it authenticated (in ``scope["state"]``)."""


def require_owner(request: Request, state: StateDep) -> Principal:
    """The owner's session from the cookie or, for the API, a bearer token; else `LoginRequired`."""
    known = request.scope.get("state", {}).get(PRINCIPAL_SCOPE_KEY)
    if isinstance(known, Principal):
        return known
    return authenticate(
        state,
        path=request.url.path,
        authorization=request.headers.get("authorization", ""),
        cookie=request.cookies.get(security.SESSION_COOKIE),
    )


OwnerDep = Annotated[Principal, Depends(require_owner)]


async def verify_csrf(request: Request, principal: OwnerDep) -> None:
    """Refuse a state-changing cookie request without this session's CSRF token.

    The token comes in the ``X-CSRF-Token`` header (fetch) or the ``csrf_token`` field of an
    urlencoded form. Bearer-token requests carry no ambient authority and need none. The
    Origin check for every unsafe request happens earlier, in the app's middleware.
    """
    if request.method in security.SAFE_METHODS or principal.session is None:
        return
    given = request.headers.get(security.CSRF_HEADER)
    content_type = request.headers.get("content-type", "")
    if given is None and content_type.startswith("application/x-www-form-urlencoded"):
        form = await request.form()  # cached by Starlette: the route's Form() params reuse it
        value = form.get(security.CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not security.tokens_match(principal.session.csrf_token, given):
        raise HTTPException(
            status_code=403,
            detail="The form's security token is missing or stale. Reload the page and retry.",
        )


def login_redirect_target(request: Request, *, setup: bool) -> str:
    """Where an anonymous page request goes: /setup before the first run, else /login."""
    if setup:
        return "/setup"
    return f"/login?next={quote(request.url.path)}"


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """Render a page with what every layout needs: the CSRF token and whether logged in.

    Args:
        template: the template's file name under web/templates.
        context: the page's own variables.
        status_code: the HTTP status to answer with.
    """
    state: WebState = request.app.state.twin
    known = request.scope.get("state", {}).get(PRINCIPAL_SCOPE_KEY)
    if isinstance(known, Principal):  # the middleware looked the session up already
        session = known.session
    else:
        session = state.sessions.get(request.cookies.get(security.SESSION_COOKIE))
    base = {
        "csrf_token": session.csrf_token if session else "",
        "logged_in": session is not None,
        "path": request.url.path,
    }
    return state.templates.TemplateResponse(
        request, template, {**base, **(context or {})}, status_code=status_code
    )
