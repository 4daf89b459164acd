"""Chat conversations kept on disk: one JSON file per conversation under
``<data_dir>/conversations/``, written atomically and readable only by the owner.

The rules of a conversation (adding the other person's message, taking back my last reply to
regenerate it) are pure functions on `Conversation`; only `save_conversation`,
`load_conversation`, `list_conversations` and `delete_conversation` touch the disk.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from twin.chat.defaults import DEFAULT_TEMPERATURE, DEFAULT_TOP_K
from twin.config import Settings
from twin.errors import ChatError
from twin.files import write_private
from twin.prepare.format import Turn

MAX_TEXT_CHARS = 4000
TITLE_CHARS = 60
DEFAULT_PEER = "Friend"
_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


class ChatTurn(BaseModel):
    """One message of a conversation."""

    text: str = Field(max_length=MAX_TEXT_CHARS)
    mine: bool
    """True for the twin's (my) messages, False for what the other person typed."""


class Conversation(BaseModel):
    """A conversation with the twin, as stored."""

    id: str
    peer: str = DEFAULT_PEER
    """Who the owner plays: the speaker tag of the other person's turns in the prompt."""
    title: str = ""
    created_unix: int
    updated_unix: int
    temperature: float = DEFAULT_TEMPERATURE
    top_k: int | None = DEFAULT_TOP_K
    run_id: str | None = None
    """The run that wrote the latest reply."""
    turns: list[ChatTurn] = Field(default_factory=list)


def new_conversation(*, peer: str, now_unix: int) -> Conversation:
    """An empty conversation with a fresh unguessable id.

    Args:
        peer: who the owner plays.
        now_unix: the creation time.
    """
    return Conversation(
        id=secrets.token_urlsafe(12), peer=peer, created_unix=now_unix, updated_unix=now_unix
    )


def add_peer_message(conversation: Conversation, text: str) -> Conversation:
    """The conversation with the other person's ``text`` appended (and titled by it if new).

    Args:
        conversation: the conversation so far.
        text: what the other person wrote.
    """
    text = text.strip()
    if not text:
        raise ChatError("The message is empty.", hint="Type something to send.")
    title = conversation.title or " ".join(text.split())[:TITLE_CHARS]
    turns = [*conversation.turns, ChatTurn(text=text, mine=False)]
    return conversation.model_copy(update={"turns": turns, "title": title})


def take_back_reply(conversation: Conversation) -> Conversation:
    """The conversation without my last reply, ready to have it written again.

    Args:
        conversation: the conversation so far; it must end with the other person's message or
            my reply.
    """
    turns = list(conversation.turns)
    if turns and turns[-1].mine:
        turns.pop()
    if not turns:
        raise ChatError("There is nothing to reply to yet.", hint="Send a message first.")
    return conversation.model_copy(update={"turns": turns})


def add_my_reply(conversation: Conversation, text: str, *, run_id: str | None) -> Conversation:
    """The conversation with the twin's reply appended.

    Args:
        conversation: the conversation so far.
        text: the reply.
        run_id: the run whose model wrote it.
    """
    turns = [*conversation.turns, ChatTurn(text=text, mine=True)]
    return conversation.model_copy(update={"turns": turns, "run_id": run_id})


def prompt_turns(conversation: Conversation, *, me: str) -> list[Turn]:
    """The turns in the prompt format, the other person's tagged with the current peer name.

    Args:
        me: my display name.
    """
    return [
        Turn(speaker=me if t.mine else conversation.peer, text=t.text, mine=t.mine)
        for t in conversation.turns
    ]


def conversations_dir(settings: Settings) -> Path:
    """``<data_dir>/conversations`` (private to the owner).

    Args:
        settings: whose data dir.
    """
    return settings.data_dir / "conversations"


def _path(settings: Settings, conversation_id: str) -> Path:
    # The id names a file: only the characters `new_conversation` uses, so no path tricks.
    if not _ID.fullmatch(conversation_id):
        raise ChatError(f"There is no conversation {conversation_id!r}.", hint="Start a new chat.")
    return conversations_dir(settings) / f"{conversation_id}.json"


def save_conversation(settings: Settings, conversation: Conversation) -> None:
    """Write the conversation atomically (a private temp file, then rename over the old one).

    Args:
        settings: whose data dir.
        conversation: what to write.
    """
    path = _path(settings, conversation.id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(path, conversation.model_dump_json(indent=1))


def load_conversation(settings: Settings, conversation_id: str) -> Conversation:
    """Read one conversation, or raise `ChatError` when there is none by that id.

    Args:
        settings: whose data dir.
    """
    path = _path(settings, conversation_id)
    try:
        return Conversation.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ChatError(
            f"There is no conversation {conversation_id!r}.", hint="Start a new chat."
        ) from exc
    except ValidationError as exc:
        raise ChatError(
            f"The conversation file {path} is damaged.", hint="Delete it and start a new chat."
        ) from exc


def list_conversations(settings: Settings) -> list[Conversation]:
    """Every readable conversation, most recently used first (damaged files are skipped).

    Args:
        settings: whose data dir.
    """
    found = []
    for path in conversations_dir(settings).glob("*.json"):
        try:
            found.append(Conversation.model_validate_json(path.read_text(encoding="utf-8")))
        except (OSError, ValidationError):
            continue
    return sorted(found, key=lambda c: (c.updated_unix, c.created_unix), reverse=True)


def delete_conversation(settings: Settings, conversation_id: str) -> None:
    """Remove a conversation (no error when it is already gone).

    Args:
        settings: whose data dir.
    """
    _path(settings, conversation_id).unlink(missing_ok=True)
