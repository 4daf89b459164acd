"""Receiving a Telegram Desktop export over HTTP without holding it in memory.

The browser sends the file as the raw request body; it is streamed into a private file in the
data dir, cut off as soon as it passes the size limit, and sniffed for the shape of a
``result.json`` (in a worker thread, never in the event loop) before any import starts. A
refused upload leaves no file behind, and neither does a failed import.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import ijson
from starlette.concurrency import run_in_threadpool

from twin.config import Settings
from twin.errors import ImportFailed
from twin.nesting import NestingGuard
from twin.web.security import new_token

# First keys of a full export ("about", "personal_information", …) or a one-chat export.
_EXPORT_FIRST_KEYS = {"about", "personal_information", "chats", "name", "type", "id", "messages"}
_SNIFF_BYTES = 64 * 1024
_NOT_AN_EXPORT_HINT = (
    "In Telegram Desktop: Settings → Advanced → Export Telegram data, choose "
    "'Machine-readable JSON', then upload the result.json it writes."
)


class UploadTooLarge(ImportFailed):
    """The upload passed `Settings.max_upload_bytes`."""


def uploads_dir(settings: Settings) -> Path:
    """Where uploads wait for their import (private to the owner)."""
    path = settings.ensure_data_dir() / "uploads"
    path.mkdir(exist_ok=True, mode=0o700)
    return path


def size_text(size_bytes: int) -> str:
    """A size as a person reads it: ``4 GB``, ``500 MB``, ``900 KB``."""
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size_bytes >= scale:
            return f"{size_bytes / scale:.3g} {unit}"
    return f"{size_bytes} bytes"


def upload_too_large(limit: int) -> UploadTooLarge:
    """The refusal a browser shows: the limit, and two ways in that need no setting changed."""
    return UploadTooLarge(
        f"The file is larger than the upload limit of {size_text(limit)}.",
        hint="Import it on the machine twin runs on with “twin import result.json” in a "
        "terminal (no size limit there), or export fewer chats at a time in Telegram Desktop "
        f"and upload each export (up to {size_text(limit)}): the imports add up.",
    )


async def receive_upload(
    *, settings: Settings, chunks: AsyncIterator[bytes], declared_size: int | None
) -> Path:
    """Stream an upload into a new private file under the data dir and return its path.

    Args:
        settings: for the data dir and the size limit.
        chunks: the request body as it arrives.
        declared_size: the Content-Length, if the client sent one (checked before reading).
    """
    limit = settings.max_upload_bytes
    if declared_size is not None and declared_size > limit:
        raise upload_too_large(limit)
    path = uploads_dir(settings) / f"{new_token()}.json"
    received = 0
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "wb") as out:
            async for chunk in chunks:
                received += len(chunk)
                if received > limit:
                    raise upload_too_large(limit)
                # Small sequential writes land in the page cache; not worth a thread hop each.
                out.write(chunk)
        if received == 0:
            raise ImportFailed("The upload was empty.", hint=_NOT_AN_EXPORT_HINT)
        await run_in_threadpool(check_export_shape, path)  # parsing never runs in the event loop
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def remove_stale_uploads(settings: Settings) -> None:
    """Delete uploads left by a server that stopped mid-import (imports run in the server, so
    at startup none is in use).

    Args:
        settings: whose data dir.
    """
    uploads = settings.data_dir / "uploads"
    if uploads.is_dir():
        for path in uploads.iterdir():
            path.unlink(missing_ok=True)


def check_export_shape(path: Path) -> None:
    """Raise `ImportFailed` unless the file starts like a Telegram Desktop JSON export.

    Only the beginning is read: the importer checks every message while it imports.

    Args:
        path: the uploaded file.
    """
    with path.open("rb") as f:
        head = f.read(_SNIFF_BYTES)
    NestingGuard().feed(head)  # before ijson, whose cost grows with the square of the depth
    first_key: str | None = None
    try:
        for prefix, event, value in ijson.parse(head):
            if prefix == "" and event == "map_key":
                first_key = value
                break
            if prefix == "" and event != "start_map":
                break  # a top-level array, string or number
    except ijson.JSONError as exc:
        # Events before the error still arrive, so reaching here means no first key was read.
        # The parser's own words ("lexical error: invalid char…") mean nothing to a person.
        raise ImportFailed(
            "This file is not a Telegram export: it is not valid JSON.", hint=_NOT_AN_EXPORT_HINT
        ) from exc
    if first_key not in _EXPORT_FIRST_KEYS:
        raise ImportFailed("The file is not a Telegram Desktop export.", hint=_NOT_AN_EXPORT_HINT)
