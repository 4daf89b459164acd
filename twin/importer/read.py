"""Reading an export: the file found, its head (shape and account) scanned, its chats streamed
by ijson through `ChatStream`, and parse or type errors turned into messages that name the
place."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ijson
import sqlalchemy.exc

from twin.errors import ImportFailed
from twin.importer.convert import EXPECTED
from twin.importer.stream import READ_SIZE, ChatStream
from twin.models import AccountName

try:  # the C backend is ~10x faster; the pure-Python one still works, slowly
    _ijson: Any = ijson.get_backend("yajl2_c")
except ImportError:  # pragma: no cover
    _ijson = ijson


def open_export(path: Path) -> tuple[Path, int]:
    if path.is_dir():
        path = path / "result.json"
    if not path.is_file():
        raise ImportFailed(f"{path} does not exist.", hint=f"Give the path of {EXPECTED}.")
    return path, path.stat().st_size


# What a value of the wrong type (null text, a list as an id, an id beyond 64 bits, …) raises
# on its way from the parser to SQLite. Operational errors (disk full, locked) are not here.
MALFORMED = (
    TypeError,
    ValueError,  # also pydantic's ValidationError and UnicodeDecodeError
    AttributeError,
    KeyError,
    IndexError,
    OverflowError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.IntegrityError,
    sqlalchemy.exc.IntegrityError,
    sqlalchemy.exc.ProgrammingError,
    sqlalchemy.exc.InterfaceError,
)


def malformed_error(path: Path, exc: BaseException, where: str) -> ImportFailed:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return ImportFailed(
        f"{path} holds a value twin cannot read {where} ({type(exc).__name__}: {detail[:200]}).",
        hint=f"twin expects {EXPECTED}; export the chats again from Telegram Desktop.",
    )


def parse_error(path: Path, stream: ChatStream, exc: Exception) -> ImportFailed:
    start = stream.position - stream.last_read
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ImportFailed(
        f"{path} is not valid JSON near line {stream.lines} "
        f"(bytes {start}–{stream.position}): {detail}",
        hint=f"Export again; twin expects {EXPECTED}. A file cut short by a full disk or an "
        "interrupted copy looks like this.",
    )


class ExportHead(AccountName):
    """What the top of the file says: its shape and the account it belongs to."""

    full: bool
    user_id: int | None = None


def read_head(path: Path, size: int) -> ExportHead:
    """Scan the top-level keys up to ``chats`` (full export) or ``messages`` (one chat)."""
    info: dict[str, Any] = {}
    with path.open("rb") as f:
        stream = ChatStream(f, size=size, progress=None)
        try:
            for prefix, event, value in _ijson.parse(stream, use_float=True):
                if prefix == "" and event not in ("start_map", "map_key"):
                    break  # not an object, or an object without chats/messages
                if prefix == "" and event == "map_key" and value in ("chats", "messages"):
                    return ExportHead(full=value == "chats", **info)
                if prefix.startswith("personal_information.") and event in ("number", "string"):
                    key = prefix.removeprefix("personal_information.")
                    if key in ExportHead.model_fields:
                        info[key] = value
        except ijson.JSONError as exc:
            raise parse_error(path, stream, exc) from exc
    if info:
        raise ImportFailed(
            f"{path} has no chats: it holds the account's information only.",
            hint="Export again with 'Personal chats' ticked (Settings → Advanced → Export "
            "Telegram data), in JSON format.",
        )
    raise ImportFailed(f"{path} is not a Telegram export.", hint=f"twin expects {EXPECTED}.")


def iter_chats(path: Path, stream: ChatStream, *, full: bool) -> Iterator[dict[str, Any]]:
    prefix = "chats.list.item" if full else ""
    try:
        yield from _ijson.items(
            stream, prefix, map_type=stream.new_map, use_float=True, buf_size=READ_SIZE
        )
    except ijson.JSONError as exc:
        raise parse_error(path, stream, exc) from exc
