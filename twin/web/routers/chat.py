"""Chat: talk to the twin; replies stream in as Server-Sent Events over a POST.

The conversation lives in the page and comes with every request (in the body: private text
never goes into a URL). The model is loaded once, from the newest finished run, and reloaded
when a newer run finishes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from twin.errors import ChatError
from twin.store import get_owner, list_dialogs
from twin.web.deps import DbDep, StateDep, WebState, render

if TYPE_CHECKING:
    from twin.chat.generate import Twin

router = APIRouter()

_load_lock = threading.Lock()


class ChatTurn(BaseModel):
    """One message of the conversation shown in the page."""

    text: str = Field(max_length=4000)
    mine: bool
    """True for the twin's (my) messages, False for what the other person typed."""


class ReplyRequest(BaseModel):
    """What the page sends for a reply."""

    peer: str = Field(min_length=1, max_length=100)
    turns: list[ChatTurn] = Field(min_length=1, max_length=200)
    temperature: float = Field(default=0.8, ge=0, le=2)


def newest_run(state: WebState) -> Path | None:
    """The newest finished run's dir, or None when no run finished yet."""
    from twin.chat.generate import resolve_run_dir

    try:
        return resolve_run_dir(settings=state.settings)
    except ChatError:
        return None


def get_twin(state: StateDep) -> Twin:
    """The loaded model of the newest finished run (loaded on first use, in a worker thread)."""
    from twin.chat.generate import TRAIN_HINT, load_twin

    run_dir = newest_run(state)
    if run_dir is None:
        raise ChatError("No training run has finished yet.", hint=TRAIN_HINT)
    with _load_lock:
        loaded = state.chat_model
        if loaded is None or loaded[0] != run_dir:
            state.chat_model = (run_dir, load_twin(run_dir=run_dir))
        return state.chat_model[1]  # type: ignore[index]


def my_name(db: DbDep) -> str:
    """The owner's display name, as the dataset tags my turns."""
    owner = get_owner(db)
    return " ".join(part for part in (owner.first_name, owner.last_name) if part) or "Me"


@router.get("/chat")
def chat_page(request: Request, db: DbDep, state: StateDep) -> Response:
    run_dir = newest_run(state)
    peers = [d.name for d in list_dialogs(db) if d.included and d.name]
    return render(request, "chat.html", {"run": run_dir.name if run_dir else None, "peers": peers})


@router.post("/chat/reply")
def chat_reply(
    body: ReplyRequest,
    twin: Annotated[Any, Depends(get_twin)],
    me: Annotated[str, Depends(my_name)],
) -> StreamingResponse:
    """Stream my next message: ``data: {"text": …}`` pieces, then ``event: done``."""
    from twin.prepare.format import Turn

    turns = [
        Turn(speaker=me if t.mine else body.peer, text=t.text, mine=t.mine) for t in body.turns
    ]
    # Bad settings raise ChatError here, before the stream starts, and become a 400.
    pieces: Iterator[str] = twin.stream_reply(
        context=turns, me=me, peer=body.peer, temperature=body.temperature
    )

    def events() -> Iterator[str]:
        # A sync iterator: Starlette runs it in a worker thread, so generation never blocks the
        # event loop; closing it (client gone) releases the model for the next caller.
        try:
            for piece in pieces:
                yield f"data: {json.dumps({'text': piece})}\n\n"
        except ChatError as exc:
            yield f"event: failure\ndata: {json.dumps({'detail': str(exc)})}\n\n"
        yield "event: done\ndata: {}\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )
