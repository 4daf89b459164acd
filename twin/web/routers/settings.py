"""Settings: the API token for the OpenAI-compatible API (created, shown once, revoked) and the
name API requests use for the other person by default."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from twin.web.deps import (
    OwnerDep,
    SettingsDep,
    api_token_file,
    issue_api_token,
    render,
)
from twin.web.model import api_peer_name, save_api_peer_name

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
def create_token(settings: SettingsDep, principal: OwnerDep) -> Response:
    """A new token (the old one stops working), shown once on the page this redirects to: a
    reload does not send the form again, and shows the token no more."""
    if principal.session is not None:
        NEW_TOKENS[principal.session.session_id] = issue_api_token(settings)
    return RedirectResponse("/settings/token", status_code=303)


@router.get("/settings/token")
def show_new_token(request: Request, settings: SettingsDep, principal: OwnerDep) -> Response:
    key = principal.session.session_id if principal.session else ""
    return _page(request, settings, new_token=NEW_TOKENS.pop(key, None))


NEW_TOKENS: dict[str, str] = {}
"""Tokens just made, by browser session id, until their page shows them (memory only)."""


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
