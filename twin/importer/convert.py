"""One exported message → its ``message`` row: pure, no I/O (runs once per message of a
possibly multi-million-message export)."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from twin.models import Source
from twin.store import MessageRow, normalize_media_kind

EXPECTED = (
    "a result.json from Telegram Desktop → Export chat history / Export Telegram data, JSON format"
)
# Keys that mark a media message when there is no media_type, checked in this order.
MEDIA_KEYS: tuple[tuple[str, str], ...] = (
    ("photo", "photo"),
    ("contact_information", "contact"),
    ("location_information", "location"),
    ("place_name", "location"),
    ("poll", "poll"),
    ("game_title", "game"),
    ("invoice_information", "invoice"),
    ("file", "file"),
)
_MEDIA_KEY_NAMES = frozenset(key for key, _ in MEDIA_KEYS)
_EXPORT = Source.export.value


def message_text(raw: dict[str, Any]) -> str:
    """The plain text of an exported message: ``text_entities`` joined, else ``text`` flattened.

    Args:
        raw: the message object from the export.
    """
    entities = raw.get("text_entities")
    if isinstance(entities, list):
        if len(entities) == 1 and isinstance(entities[0], dict):  # the common plain message
            return entities[0].get("text", "")
        return "".join(e.get("text", "") for e in entities if isinstance(e, dict))
    text = raw.get("text", "")
    if isinstance(text, list):
        return "".join(p if isinstance(p, str) else p.get("text", "") for p in text)
    return text if isinstance(text, str) else ""


def media_kind(raw: dict[str, Any]) -> str | None:
    """The media kind of an exported message (the API harvest's vocabulary), or None.

    Args:
        raw: the message object from the export.
    """
    media_type = raw.get("media_type")
    if media_type:
        return normalize_media_kind(str(media_type))
    if raw.keys().isdisjoint(_MEDIA_KEY_NAMES):  # one C-level test for the common text message
        return None
    for key, kind in MEDIA_KEYS:
        if key in raw:
            return kind
    return None


def sender_id(raw: dict[str, Any]) -> str | None:
    """``"user123"`` for whoever sent the message (``actor_id`` on service messages)."""
    return raw.get("from_id") or raw.get("actor_id")


def _unix(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


def convert_message(
    raw: dict[str, Any], *, me: str, dialog_id: int, zone: tzinfo | None = None
) -> tuple[MessageRow, bool]:
    """Turn an exported message into its ``message`` row; also say whether its time is local.

    The row is built positionally (`twin.store.MessageRow`): this runs once per message of a
    possibly multi-million-message export.

    Args:
        raw: a message object of type ``message`` or ``service``.
        me: the owner's ``from_id`` (``"user<id>"``).
        dialog_id: the `Dialog.id` the message belongs to.
        zone: the zone of ``date`` when ``date_unixtime`` is missing (None: this machine's).
    """
    get = raw.get
    sent = _unix(get("date_unixtime"))
    local = sent is None
    if sent is None:
        # Last resort: `date` is the exporting machine's local time without an offset.
        sent = int(datetime.fromisoformat(raw["date"]).replace(tzinfo=zone).timestamp())
    edited = get("edited_unixtime")
    service = get("type") == "service"
    return (
        (
            dialog_id,
            raw["id"],
            sent,
            (get("from_id") or get("actor_id")) == me,  # sender_id(raw), inlined
            "" if service else message_text(raw),
            get("reply_to_message_id"),
            None if edited is None else _unix(edited),
            None if service else media_kind(raw),
            (get("action") or "service") if service else None,
            "forwarded_from" in raw,
            _EXPORT,
        ),
        local,
    )
