"""Contacts: the private chats, with message counts, each included in training or not."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from twin.store import list_dialogs, set_included
from twin.web.deps import DbDep, DbId, render

router = APIRouter()


@router.get("/contacts")
def contacts_page(request: Request, db: DbDep) -> Response:
    dialogs = list_dialogs(db)
    return render(
        request,
        "contacts.html",
        {"dialogs": dialogs, "included_count": sum(d.included for d in dialogs)},
    )


def _set(db: DbDep, dialog_id: int, included: bool) -> Response:
    set_included(db, dialog_ids=[dialog_id], included=included)
    db.commit()
    return RedirectResponse(f"/contacts#dialog-{dialog_id}", status_code=303)


@router.post("/contacts/{dialog_id}/include")
def include_dialog(dialog_id: DbId, db: DbDep) -> Response:
    return _set(db, dialog_id, True)


@router.post("/contacts/{dialog_id}/exclude")
def exclude_dialog(dialog_id: DbId, db: DbDep) -> Response:
    return _set(db, dialog_id, False)
