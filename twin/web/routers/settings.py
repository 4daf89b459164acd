"""Settings: the API token for the OpenAI-compatible API (created, shown once, revoked) and the
name API requests use for the other person by default."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from twin.web.deps import SettingsDep, api_token_file, issue_api_token, render
from twin.web.routers.openai_api import api_peer_name, save_api_peer_name

router = APIRouter()


def _page(request: Request, settings: SettingsDep, *, new_token: str | None = None) -> Response:
    context = {
        "has_token": api_token_file(settings).is_file(),
        "new_token": new_token,
        "peer": api_peer_name(settings),
        "base_url": f"{request.url.scheme}://{request.url.netloc}/v1",
    }
    response = render(request, "settings.html", context)
    response.headers["Cache-Control"] = "no-store"  # the page may show a new token
    return response


@router.get("/settings")
def settings_page(request: Request, settings: SettingsDep) -> Response:
    return _page(request, settings)


@router.post("/settings/token")
def create_token(request: Request, settings: SettingsDep) -> Response:
    """A new token (the old one stops working), shown on this answer only."""
    return _page(request, settings, new_token=issue_api_token(settings))


@router.post("/settings/token/revoke")
def revoke_token(settings: SettingsDep) -> Response:
    api_token_file(settings).unlink(missing_ok=True)
    return RedirectResponse("/settings", status_code=303)


@router.post("/settings/api")
def save_api_settings(
    settings: SettingsDep, peer: Annotated[str, Form(max_length=100)] = ""
) -> Response:
    save_api_peer_name(settings, peer)
    return RedirectResponse("/settings", status_code=303)
