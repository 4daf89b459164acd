"""The rules of reply drafts, pure (no I/O, no clock): when to leave a chat alone, which
generated reply may become a draft, and the context the model sees (see `twin.assist.drafts`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

from telethon.tl import types

from twin.prepare.format import Turn
from twin.prepare.scrub import PLACEHOLDER_TYPES, Scrubber, ScrubReport
from twin.prepare.sessions import iter_sessions, merge_consecutive, scrub_session
from twin.store import ChatMessage
from twin.telegram.client import format_wait

SESSION_GAP_SECONDS = 24 * 3600
"""Context starts after the last silence this long (the dataset's default session gap)."""
# A scrub placeholder (<PHONE>) or a media / forward tag (<photo>, <forwarded>) in a reply.
PLACEHOLDER_RE = re.compile(r"<(?:" + "|".join(PLACEHOLDER_TYPES) + r"|[a-z_]{2,24})>")


def has_placeholder(text: str) -> bool:
    """True when ``text`` contains a scrub placeholder or a media tag.

    >>> has_placeholder("call me at <PHONE>"), has_placeholder("ok <3")
    (True, False)
    """
    return PLACEHOLDER_RE.search(text) is not None


def first_clean_reply(replies: Iterator[str]) -> str | None:
    """The first non-empty reply without placeholders, or None when every one had some.

    Args:
        replies: the attempts, generated lazily (stop early, generate no more).

    >>> first_clean_reply(iter(["<EMAIL> me", "  ", "sure!"]))
    'sure!'
    """
    for reply in replies:
        reply = reply.strip()
        if reply and not has_placeholder(reply):
            return reply
    return None


def quiet_reason(
    messages: Sequence[ChatMessage], *, incoming_unix: int, now_unix: int, quiet_seconds: int
) -> str | None:
    """Why the owner is answering this chat themselves, or None.

    Args:
        messages: the chat's recent messages (any order).
        incoming_unix: when the message to answer arrived.
        now_unix: the current time.
        quiet_seconds: the quiet period after the owner's own message.
    """
    mine = [m.sent_unix for m in messages if m.out]
    if not mine:
        return None
    last = max(mine)
    if last >= incoming_unix:
        return "you already answered"
    if now_unix - last < quiet_seconds:
        return f"quiet period: you wrote {format_wait(max(now_unix - last, 0))} ago"
    return None


def draft_reason(draft: Any, *, incoming_unix: int, own_digest: str | None) -> str | None:
    """Why the chat's current draft must be left alone, or None.

    Args:
        draft: the dialog's ``draft`` from Telegram (a DraftMessage, DraftMessageEmpty or None).
        incoming_unix: when the message to answer arrived.
        own_digest: `digest` of the last draft the twin saved in this chat, if any.
    """
    if not isinstance(draft, types.DraftMessage) or not draft.message.strip():
        return None
    if digest(draft.message) == own_digest:
        return None  # the twin's own earlier draft: replace it
    if int(draft.date.timestamp()) >= incoming_unix:
        return "your draft is newer than the message"
    return None


def digest(text: str) -> str:
    """A fingerprint of a draft, so the twin recognizes its own without keeping the text."""
    return hashlib.sha256(text.encode()).hexdigest()


def context_turns(
    messages: Sequence[ChatMessage], *, me: str, peer: str, scrubber: Scrubber
) -> list[Turn]:
    """The prompt's turns: the last session of ``messages``, scrubbed, one turn per speaker run.

    Args:
        messages: the chat's recent messages, oldest first.
        me: the owner's display name.
        peer: the other person's display name.
        scrubber: scrubs texts as the dataset was scrubbed.
    """
    sessions = list(iter_sessions(list(messages), gap_seconds=SESSION_GAP_SECONDS))
    if not sessions:
        return []
    # As the dataset does: each message read after the two before it, so a secret sent on
    # its own right after the message asking for it is caught too.
    scrubbed = scrub_session(list(sessions[-1]), scrubber, ScrubReport(), "assist")
    return list(merge_consecutive(scrubbed, me=me, peer=peer))
