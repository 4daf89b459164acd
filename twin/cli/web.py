"""``twin serve``: the web app on this machine (127.0.0.1 unless told otherwise)."""

from __future__ import annotations

import ipaddress

import typer

from twin.config import get_settings
from twin.db import upgrade_database


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    host: str | None = typer.Option(
        None, help="Address to listen on (default: TWIN_HOST, 127.0.0.1)."
    ),
    port: int | None = typer.Option(None, help="Port to listen on (default: TWIN_PORT, 8765)."),
) -> None:
    """Open twin in your browser: migrates the database, then serves the web app."""
    # The web app's imports (FastAPI, the routers, uvicorn) wait for `twin serve`, so that the
    # other commands start quickly.
    import uvicorn

    from twin.web import create_app
    from twin.web.app import quiet_access_log
    from twin.web.server import server_config

    settings = get_settings()
    updates = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = settings.model_copy(update=updates)
    upgrade_database(settings)
    app = create_app(settings)
    quiet_access_log()
    if not _is_loopback(settings.host):
        typer.secho(
            f"warning: listening on {settings.host}: other machines can reach the login page. "
            "Add the name they use to TWIN_ALLOWED_HOSTS, and prefer an SSH tunnel.",
            fg=typer.colors.YELLOW,
            err=True,
        )
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    typer.secho(f"twin is running at http://{shown}:{settings.port}/", fg=typer.colors.GREEN)
    uvicorn.Server(server_config(app, host=settings.host, port=settings.port)).run()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
