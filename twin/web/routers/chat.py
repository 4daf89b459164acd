"""Chat: talk to the twin as one of your contacts; replies stream in as Server-Sent Events.

Conversations are kept on the server (`twin.web.conversations`): the page sends only the new
message (in a POST body: private text never goes into a URL), or asks to write the last reply
again. The model is loaded once, from the newest finished run, and reloaded when a newer run
finishes; a client that goes away mid-reply stops the generation and frees the model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

from twin.basemodel.checkpoint import is_demo_model
from twin.chat.defaults import DEFAULT_TEMPERATURE, DEFAULT_TOP_K, Sampling
from twin.errors import ChatError
from twin.runs import load_run
from twin.store import list_dialogs, now_unix
from twin.web import conversations as conv
from twin.web.deps import DbDep, SettingsDep, StateDep, WebState, render
from twin.web.model import get_twin, my_name, newest_run
from twin.web.streaming import ClosingStreamingResponse, event_stream, iterate_in_thread, sse

if TYPE_CHECKING:
    pass

router = APIRouter()


class ReplyRequest(BaseModel):
    """What the chat page sends for a reply."""

    conversation_id: str | None = Field(default=None, max_length=64)
    """None starts a new conversation."""
    peer: str = Field(min_length=1, max_length=100)
    """Who the owner plays (a contact's name, or any name)."""
    text: str | None = Field(default=None, max_length=conv.MAX_TEXT_CHARS)
    """The other person's new message; None with ``regenerate``."""
    regenerate: bool = False
    """Write my last reply again instead of answering a new message."""
    temperature: float = Field(default=DEFAULT_TEMPERATURE, ge=0, le=2)
    top_k: int | None = Field(default=DEFAULT_TOP_K, ge=0, le=100_000)
    """0 or None: no top-k cut."""


def _load_or_404(settings: Any, conversation_id: str) -> conv.Conversation:
    try:
        return conv.load_conversation(settings, conversation_id)
    except ChatError as exc:
        raise HTTPException(status_code=404, detail=exc.message) from exc


def _base_model(run_dir: Path) -> Path | None:
    """The base model the run was trained on (None if its record cannot be read)."""
    try:
        return Path(load_run(run_dir).base_model_dir)
    except (OSError, ValueError):
        return None


def _is_demo(base: Path) -> bool:
    return is_demo_model(base)


def _page(
    request: Request, db: DbDep, state: WebState, current: conv.Conversation | None
) -> Response:
    run_dir = newest_run(state)
    peers = [d.name for d in list_dialogs(db) if d.included and d.name]
    base = _base_model(run_dir) if run_dir else None
    context = {
        "run": run_dir.name if run_dir else None,
        "base_model": base.name if base else None,
        "is_demo": base is not None and _is_demo(base),
        "peers": peers,
        "conversations": conv.list_conversations(state.settings),
        "current": current,
        "sampling": current or Sampling(),
        "peer": current.peer if current else (peers[0] if peers else conv.DEFAULT_PEER),
    }
    return render(request, "chat.html", context)


@router.get("/chat")
def chat_page(request: Request, db: DbDep, state: StateDep) -> Response:
    return _page(request, db, state, None)


@router.get("/chat/{conversation_id}")
def conversation_page(
    request: Request, conversation_id: str, db: DbDep, state: StateDep
) -> Response:
    return _page(request, db, state, _load_or_404(state.settings, conversation_id))


@router.post("/chat/{conversation_id}/delete")
def delete_conversation(conversation_id: str, settings: SettingsDep) -> Response:
    _load_or_404(settings, conversation_id)
    conv.delete_conversation(settings, conversation_id)
    return RedirectResponse("/chat", status_code=303)


@router.post("/chat/reply")
def chat_reply(
    body: ReplyRequest,
    settings: SettingsDep,
    twin: Annotated[Any, Depends(get_twin)],
    me: Annotated[str, Depends(my_name)],
) -> ClosingStreamingResponse:
    """Stream my next message: ``event: conversation`` (its id), ``data: {"text": …}`` pieces,
    then ``event: done``; the conversation is saved with the reply once it is complete."""
    if body.conversation_id:
        conversation = _load_or_404(settings, body.conversation_id)
    else:
        conversation = conv.new_conversation(peer=body.peer, now_unix=now_unix())
    conversation = conversation.model_copy(
        update={
            "peer": body.peer.strip() or conv.DEFAULT_PEER,
            "temperature": body.temperature,
            "top_k": body.top_k or None,
            "updated_unix": now_unix(),
        }
    )
    if body.regenerate:
        conversation = conv.take_back_reply(conversation)
    else:
        conversation = conv.add_peer_message(conversation, body.text or "")
    # Bad settings raise ChatError here, before the stream starts, and become a 400.
    pieces = twin.stream_reply(
        context=conv.prompt_turns(conversation, me=me),
        me=me,
        peer=conversation.peer,
        temperature=conversation.temperature,
        top_k=conversation.top_k,
    )
    conv.save_conversation(settings, conversation)

    async def events() -> AsyncIterator[str]:
        yield sse({"id": conversation.id, "title": conversation.title}, event="conversation")
        reply: list[str] = []
        try:
            async for piece in iterate_in_thread(pieces):
                reply.append(piece)
                yield sse({"text": piece})
        except ChatError as exc:
            yield sse({"detail": str(exc)}, event="failure")
            return
        done = conv.add_my_reply(conversation, "".join(reply).strip(), run_id=twin.name)
        conv.save_conversation(settings, done)
        yield sse({}, event="done")

    return event_stream(events())
