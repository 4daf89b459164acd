"""The web app: `create_app(settings)` builds a FastAPI app locked like a vault.

Layers, outside in: the guard middleware (Host allow-list against DNS rebinding, Origin check on
every state-changing request, security headers on every answer), then the routers. Only
`twin.web.auth.router` and /static are public; everything else is mounted behind `require_owner`
and `verify_csrf`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twin.config import Settings
from twin.errors import TwinError
from twin.jobs import reap_dead_jobs
from twin.web import auth, security
from twin.web.deps import (
    WEB_DIR,
    LoginRequired,
    WebState,
    login_redirect_target,
    render,
    require_owner,
    verify_csrf,
)
from twin.web.routers import (
    chat,
    contacts,
    dashboard,
    dataset,
    export,
    game,
    imports,
    jobs,
    openai_api,
    telegram,
    train,
)
from twin.web.routers import settings as settings_page
from twin.web.routers.openai_api import OpenAIError, openai_error_response
from twin.web.upload import UploadTooLarge

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


class GuardMiddleware:
    """Refuse foreign Hosts (400) and cross-origin writes (403); add security headers.

    Args:
        app: the wrapped ASGI app.
        settings: for the port and the extra allowed host names.
    """

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host")
        refusal: tuple[int, str] | None = None
        if not security.is_allowed_host(
            host, allowed=self.settings.allowed_hosts, port=self.settings.port
        ):
            refusal = (
                400,
                "This address is not one twin answers to. Open it via http://127.0.0.1 "
                "(or add the name to TWIN_ALLOWED_HOSTS).",
            )
        elif scope["method"] not in security.SAFE_METHODS and not security.is_same_origin(
            headers.get("origin"),
            scheme=scope.get("scheme", "http"),
            host_header=host,
            fetch_site=headers.get("sec-fetch-site"),
        ):
            refusal = (403, "Cross-site request refused.")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                present = {k.lower() for k, _ in message["headers"]}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        message["headers"].append((name.encode(), value.encode()))
            await send(message)

        if refusal is not None:
            response = Response(refusal[1], status_code=refusal[0], media_type="text/plain")
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


class _StripQueryStrings(logging.Filter):
    """Drop query strings from uvicorn's access log lines (they could carry something private)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            args[2] = str(args[2]).split("?", 1)[0]
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
    app = FastAPI(title="twin", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=WEB_DIR / "templates")
    templates.env.filters["placeholders"] = dataset.highlight_placeholders
    templates.env.globals["run_exports"] = export.run_exports
    app.state.twin = WebState(settings=settings, templates=templates)
    app.add_middleware(GuardMiddleware, settings=settings)

    # Jobs left "running" by a server or worker that died are failed (and resumable) now.
    reap_dead_jobs(settings=settings)

    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")

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
        return JSONResponse(
            {"detail": detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    @app.exception_handler(TwinError)
    async def _twin_error(request: Request, exc: TwinError) -> Response:
        status_code = 413 if isinstance(exc, UploadTooLarge) else 400
        if _is_api(request):
            message = f"{exc.message} {exc.hint or ''}".strip()
            return openai_error_response(OpenAIError(status_code, message))
        return _error_response(request, status_code, exc.message, exc.hint)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _is_api(request):
            error = OpenAIError(exc.status_code, str(exc.detail))
            return openai_error_response(error, headers=exc.headers)
        return _error_response(request, exc.status_code, str(exc.detail), None, exc.headers)

    return app


def _error_response(
    request: Request,
    status_code: int,
    message: str,
    hint: str | None,
    headers: dict[str, Any] | None = None,
) -> Response:
    if "text/html" in request.headers.get("accept", ""):
        response: Response = render(
            request, "error.html", {"message": message, "hint": hint}, status_code=status_code
        )
    else:
        response = JSONResponse({"detail": message, "hint": hint}, status_code=status_code)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
