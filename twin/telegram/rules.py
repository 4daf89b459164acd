"""The harvest's pure rules: which dialogs are private chats with a person, and how a Telethon
message becomes a store row. No I/O."""

from __future__ import annotations

import re
from typing import Any

from telethon.tl import types

from twin.store import SERVICE_NOTIFICATIONS_ID, ChatMessage


def skip_reason(entity: Any) -> str | None:
    """Why a dialog with ``entity`` is not a private chat to harvest, or None if it is one.

    A deleted account is still harvested: Telegram keeps its chat and everything in it.
    """
    if isinstance(entity, types.Channel):
        return "group" if entity.megagroup else "channel"
    if isinstance(entity, types.Chat | types.ChatForbidden | types.ChannelForbidden):
        return "group"
    if not isinstance(entity, types.User):
        return "not a person"
    if entity.is_self:
        return "saved messages"
    if entity.bot:
        return "bot"
    if entity.id == SERVICE_NOTIFICATIONS_ID:
        return "service notifications"
    return None


def media_kind(message: types.Message) -> str | None:
    """The kind of media a message carries, or None for text (web page previews are text)."""
    media = message.media
    if media is None or isinstance(media, types.MessageMediaEmpty | types.MessageMediaWebPage):
        return None
    # Telethon's properties look inside documents at their attributes; order matters (a round
    # video is also a video, a GIF is a document with a video attribute, …).
    for kind, present in (
        ("sticker", message.sticker),
        ("video_message", message.video_note),
        ("animation", message.gif),
        ("voice", message.voice),
        ("audio", message.audio),
        ("video", message.video),
        ("photo", message.photo),
        ("contact", message.contact),
        ("location", message.geo),
        ("poll", message.poll),
        ("dice", message.dice),
        ("game", message.game),
        ("invoice", message.invoice),
        ("file", message.document),
    ):
        if present is not None:
            return kind
    return "other"


def service_kind(action: Any) -> str:
    """``MessageActionPhoneCall`` → ``"phone_call"``."""
    name = type(action).__name__.removeprefix("MessageAction")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() or "unknown"


def message_to_row(message: Any) -> ChatMessage | None:
    """Convert a Telethon message of a private chat into a row (None for empty messages).

    In private chats incoming messages carry no sender: the sender is the owner when
    ``out`` is set, otherwise the peer. A message imported into Telegram from another
    messenger (``fwd_from.imported``) is its sender's own words, not a forward.
    """
    if isinstance(message, types.MessageService):
        return ChatMessage(
            tg_id=message.id,
            sent_unix=int(message.date.timestamp()),
            out=bool(message.out),
            service_kind=service_kind(message.action),
        )
    if not isinstance(message, types.Message):
        return None
    reply_to = message.reply_to
    forward = message.fwd_from
    return ChatMessage(
        tg_id=message.id,
        sent_unix=int(message.date.timestamp()),
        out=bool(message.out),
        text=message.message or "",
        reply_to_id=reply_to.reply_to_msg_id
        if isinstance(reply_to, types.MessageReplyHeader)
        else None,
        edited_unix=int(message.edit_date.timestamp()) if message.edit_date else None,
        media_kind=media_kind(message),
        forwarded=forward is not None and not forward.imported,
    )
