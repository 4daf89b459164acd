"""The web app: `create_app(settings)` builds a FastAPI app locked like a vault.

Layers, outside in: the guard middleware (Host allow-list against DNS rebinding, Origin check on
every state-changing request, security headers on every answer), then the routers. Only
`twin.web.auth.router` and /static are public; everything else is mounted behind `require_owner`
and `verify_csrf`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twin.config import Settings
from twin.errors import TwinError
from twin.jobs import reap_dead_jobs
from twin.web import auth, security
from twin.web.deps import (
    PRINCIPAL_SCOPE_KEY,
    LoginRequired,
    WebState,
    authenticate,
    login_redirect_target,
    render,
    require_owner,
    verify_csrf,
)
from twin.web.preview import highlight_placeholders
from twin.web.routers import (
    assist,
    chat,
    contacts,
    dashboard,
    dataset,
    export,
    fidelity,
    game,
    imports,
    jobs,
    openai_api,
    telegram,
    train,
)
from twin.web.routers import settings as settings_page
from twin.web.routers.openai_api import OpenAIError, openai_error_response
from twin.web.templating import make_templates, web_dir
from twin.web.upload import UploadTooLarge, remove_stale_uploads, size_text, upload_too_large

SECURITY_HEADERS = {
    # No inline scripts or styles: the few scripts live in /static.
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


PUBLIC_PATHS = frozenset({"/setup", "/login", "/healthz"})
"""Paths answered without a login (besides /static): `twin.web.auth.router` and the health check."""
SINGLE_HEADERS = (b"host", b"origin", b"sec-fetch-site", b"authorization", b"content-length")
"""Headers a request may carry once: a second copy could smuggle a value past a check."""
UPLOAD_PATH = "/import"

log = logging.getLogger(__name__)


class GuardMiddleware:
    """The checks every request passes before any route sees it, in this order:

    1. one copy each of Host, Origin and the other `SINGLE_HEADERS`, and a well-formed Host
       naming this app (400 otherwise: DNS rebinding, header smuggling);
    2. no cross-origin writes (403);
    3. the owner's session (or, on /v1/*, the API token) outside `PUBLIC_PATHS` (401 or a
       redirect to the login page), before a byte of the body is read;
    4. a body no larger than ``max_request_bytes`` (``max_upload_bytes`` for an upload): 413
       from the Content-Length, or as soon as the streamed body passes the limit.

    Every answer gets the security headers, and an unhandled error becomes a 500 in the
    route's own format (an error page, JSON, or OpenAI's error JSON) with them.

    Args:
        app: the wrapped ASGI app.
        settings: for the port, the extra allowed host names and the body limits.
    """

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", [])
                present = {k.lower() for k, _ in message["headers"]}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        message["headers"].append((name.encode(), value.encode()))
            await send(message)

        request = Request(scope)
        try:
            refusal = self._refusal(scope)
            if refusal is None:
                refusal = await self._authenticate(request)
            if refusal is None:
                refusal, receive = self._limit_body(request, receive)
            if refusal is not None:
                await refusal(scope, receive, send_with_headers)
                return
            await self.app(scope, receive, send_with_headers)
        except ClientDisconnect:
            # The browser went away (a closed tab mid-upload): nothing to answer, no traceback.
            log.info("client disconnected during %s %s", scope["method"], _log_path(scope["path"]))
        except Exception:
            log.exception("unhandled error in %s %s", scope["method"], _log_path(scope["path"]))
            if not started:
                response = error_answer(
                    request,
                    500,
                    "Something went wrong inside twin.",
                    "Try again; if it keeps happening, the server's log names the error.",
                )
                await response(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope) -> Response | None:
        """A 400 for a foreign, malformed or repeated Host; a 403 for a cross-origin write."""
        names = [name for name, _ in scope["headers"]]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host")
        if any(names.count(name) > 1 for name in SINGLE_HEADERS):
            repeated = sorted({n.decode() for n in SINGLE_HEADERS if names.count(n) > 1})
            return _plain(400, f"Repeated header refused: {', '.join(repeated)}.")
        if not security.is_allowed_host(
            host, allowed=self.settings.allowed_hosts, port=self.settings.port
        ):
            # Said to a browser: no setting to change, only where twin does answer.
            return _plain(
                400,
                "This address is not one twin answers to. Open "
                f"http://127.0.0.1:{self.settings.port}/ on the machine twin runs on "
                "(another name works only once it is allowed where twin is started).",
            )
        if scope["method"] not in security.SAFE_METHODS and not security.is_same_origin(
            headers.get("origin"),
            scheme=scope.get("scheme", "http"),
            host_header=host,
            fetch_site=headers.get("sec-fetch-site"),
        ):
            return _plain(403, "Cross-site request refused.")
        return None

    async def _authenticate(self, request: Request) -> Response | None:
        path = request.url.path
        if path in PUBLIC_PATHS or path.startswith("/static/"):
            return None
        state: WebState = request.app.state.twin
        try:
            principal = await run_in_threadpool(
                authenticate,
                state,
                path=path,
                authorization=request.headers.get("authorization", ""),
                cookie=request.cookies.get(security.SESSION_COOKIE),
            )
        except LoginRequired as exc:
            return login_required_answer(request, exc)
        request.scope.setdefault("state", {})[PRINCIPAL_SCOPE_KEY] = principal
        return None

    def _limit_body(self, request: Request, receive: Receive) -> tuple[Response | None, Receive]:
        """Refuse a declared body over the limit, and cut a streamed one off when it passes it."""
        upload = request.method == "POST" and request.url.path == UPLOAD_PATH
        limit = self.settings.max_upload_bytes if upload else self.settings.max_request_bytes

        def too_large() -> Exception:
            if upload:
                return upload_too_large(limit)
            return StarletteHTTPException(
                413, f"The request is larger than twin accepts ({size_text(limit)} at most)."
            )

        length = request.headers.get("content-length", "")
        if length and (not length.isdigit() or int(length) > limit):
            if not length.isdigit():
                return _plain(400, "Malformed Content-Length."), receive
            exc = too_large()
            if isinstance(exc, TwinError):
                return error_answer(request, 413, exc.message, exc.hint), receive
            assert isinstance(exc, StarletteHTTPException)
            return error_answer(request, 413, str(exc.detail), None), receive
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large()
            return message

        return None, limited_receive


def _plain(status_code: int, text: str) -> Response:
    return Response(text, status_code=status_code, media_type="text/plain")


_PRIVATE_PATH_RE = re.compile(r"^/chat/(?!completions$|reply$)[^/]+")


def _log_path(path: str) -> str:
    """A request path fit for a log: no query string, no conversation id."""
    return _PRIVATE_PATH_RE.sub("/chat/…", path.split("?", 1)[0])


class _StripQueryStrings(logging.Filter):
    """Drop query strings and conversation ids from uvicorn's access log lines (they could
    carry something private)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            args[2] = _log_path(str(args[2]))
            record.args = tuple(args)
        return True


def quiet_access_log() -> None:
    """Install the query-string filter on uvicorn's access logger (idempotent)."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _StripQueryStrings) for f in logger.filters):
        logger.addFilter(_StripQueryStrings())


def _is_api(request: Request) -> bool:
    """The OpenAI-compatible API answers errors in OpenAI's shape."""
    return request.url.path.startswith("/v1/")


def _wants_html(request: Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")


def create_app(settings: Settings) -> FastAPI:
    """Build the web app for ``settings`` (the database must already be migrated).

    Args:
        settings: where the data lives, which host/port the app answers to, upload limits.
    """
    app = FastAPI(
        title="twin", docs_url=None, redoc_url=None, openapi_url=None, lifespan=assist.lifespan
    )
    templates = make_templates(settings)
    templates.env.filters["placeholders"] = highlight_placeholders
    templates.env.globals["run_exports"] = export.run_exports
    app.state.twin = WebState(settings=settings, templates=templates)
    app.add_middleware(GuardMiddleware, settings=settings)

    # Jobs left "running" by a server or worker that died are failed (and resumable) now.
    reap_dead_jobs(settings=settings)
    remove_stale_uploads(settings)

    app.mount("/static", StaticFiles(directory=web_dir(settings) / "static"), name="static")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        """Liveness for container health checks: no auth, and nothing about the owner."""
        return {"status": "ok"}

    app.include_router(auth.router)
    app.include_router(auth.session_router)
    protected = APIRouter(dependencies=[Depends(require_owner), Depends(verify_csrf)])
    for module in (
        dashboard,
        telegram,
        imports,
        contacts,
        dataset,
        train,
        chat,
        game,
        fidelity,
        assist,
        export,
        jobs,
        settings_page,
        openai_api,
    ):
        protected.include_router(module.router)
    app.include_router(protected)

    @app.exception_handler(OpenAIError)
    async def _openai_error(request: Request, exc: OpenAIError) -> Response:
        return openai_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if not _is_api(request):
            return await request_validation_exception_handler(request, exc)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:])
        message = f"Invalid request: {where + ': ' if where else ''}{first.get('msg', 'invalid')}"
        return openai_error_response(OpenAIError(400, message, param=where or None))

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        return login_required_answer(request, exc)

    @app.exception_handler(TwinError)
    async def _twin_error(request: Request, exc: TwinError) -> Response:
        status_code = 413 if isinstance(exc, UploadTooLarge) else 400
        return error_answer(request, status_code, exc.message, exc.hint)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_answer(request, exc.status_code, str(exc.detail), None, exc.headers)

    return app


def login_required_answer(request: Request, exc: LoginRequired) -> Response:
    """No valid session: a page redirects to the login, the API and JSON answer 401."""
    if _is_api(request):
        error = OpenAIError(
            401,
            "Missing or wrong API token. Create one on the Settings page of the twin web "
            "app and send it as 'Authorization: Bearer <token>'.",
            type="authentication_error",
            code="invalid_api_key",
        )
        return openai_error_response(error, headers={"WWW-Authenticate": "Bearer"})
    if _wants_html(request):
        return RedirectResponse(login_redirect_target(request, setup=exc.setup), 303)
    detail = "Set the owner password at /setup first." if exc.setup else "Log in first."
    return JSONResponse({"detail": detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"})


def error_answer(
    request: Request,
    status_code: int,
    message: str,
    hint: str | None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """An error in the route's own format: OpenAI's JSON on /v1/*, else a styled page for a
    browser, else ``{"detail", "hint"}``.

    Args:
        request: the request that failed.
        status_code: the HTTP status.
        message: what went wrong.
        hint: what to do about it.
        headers: extra headers (e.g. WWW-Authenticate).
    """
    if _is_api(request):
        text = f"{message} {hint or ''}".strip()
        kind = "server_error" if status_code >= 500 else "invalid_request_error"
        error = OpenAIError(status_code, text, type=kind)
        return openai_error_response(error, headers=dict(headers) if headers else None)
    response: Response | None = None
    if "text/html" in request.headers.get("accept", ""):
        try:
            response = render(
                request, "error.html", {"message": message, "hint": hint}, status_code=status_code
            )
        except Exception:  # the page itself failed (e.g. the database): plain text then
            log.exception("error page failed")
            response = _plain(status_code, f"{message} {hint or ''}".strip())
    if response is None:
        response = JSONResponse({"detail": message, "hint": hint}, status_code=status_code)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
