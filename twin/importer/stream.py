"""Reading a Telegram Desktop export in chunks for ijson: the chat being parsed hands out its
finished messages, a UTF-8 BOM is skipped, lone surrogate escapes are repaired, and the
position and line are kept for error messages."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import IO, Any

from twin.nesting import NestingGuard

READ_SIZE = 1 << 16
_BOM = b"\xef\xbb\xbf"

Progress = Callable[[int, int], None]
"""Called with (bytes read, file size) as the import advances."""


class ChatStream:
    """A file wrapper for ijson that hands out the finished messages of the chat being parsed.

    ijson calls `read` between chunks and `new_map` for every JSON object it builds. The chat
    being built is the newest map holding a ``messages`` list; all its messages but the last
    (which may still be half-parsed) are complete.
    """

    def __init__(self, file: IO[bytes], *, size: int, progress: Progress | None) -> None:
        self.file = file
        self.size = size
        self.progress = progress
        self.position = 0
        self.lines = 1
        self.last_read = 0
        self.recent: list[dict[str, Any]] = []
        self.chat: dict[str, Any] | None = None
        self.on_messages: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None = None
        self.carry = b""  # the tail of the last chunk that may be the start of an escape
        self.nesting = NestingGuard()

    def new_map(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        self.recent.append(d)
        return d

    def read(self, size: int = READ_SIZE) -> bytes:
        self._drain_open_chat()
        while True:
            chunk = self.file.read(size)
            if self.position == 0 and chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]  # a UTF-8 BOM (some editors add one on save)
                self.position = len(_BOM)
            self.position += len(chunk)
            self.last_read = len(chunk)
            self.lines += chunk.count(b"\n")
            if self.progress is not None:
                self.progress(self.position, self.size)
            data, self.carry = replace_lone_surrogates(self.carry + chunk, final=not chunk)
            self.nesting.feed(data)
            if data or not chunk:  # an empty read means the end to ijson
                return data

    def _drain_open_chat(self) -> None:
        for d in reversed(self.recent):
            if isinstance(d.get("messages"), list):
                self.chat = d
                break
        # A chat whose `messages` key is not parsed yet is the newest map: keep it in view.
        self.recent = self.recent[-1:] if self.recent and self.recent[-1] is not self.chat else []
        if self.chat is None or self.on_messages is None:
            return
        messages = self.chat.get("messages")
        if messages is not None and len(messages) > 1:
            done = messages[:-1]
            del messages[:-1]
            self.on_messages(self.chat, done)


# A \uD800-\uDFFF escape that is not half of a pair (JSON allows it; a broken emoji produces
# it) makes ijson's C backend fail with UnicodeDecodeError. Such escapes become \ufffd, so the
# message is kept. A backslash run of even length before "u" is text, not an escape.
_LONE_SURROGATE_RE = re.compile(
    rb"(?<!\\)((?:\\\\)*)\\u"
    rb"(?:[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"  # a high half with no low half after
    rb"|(?<![dD][89abAB][0-9a-fA-F]{2}\\u)[dD][c-fC-F][0-9a-fA-F]{2})"  # a low half alone
)
_HIGH_HALF_RE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}")
_ESCAPE_TAIL = 12  # "\uD83D\uDE0" split by a chunk boundary: held back for the next read


def replace_lone_surrogates(data: bytes, *, final: bool) -> tuple[bytes, bytes]:
    """``data`` with lone surrogate escapes replaced by ``\ufffd``, and the tail held back
    because an escape in it may continue in the next chunk.

    Args:
        data: a chunk of the export (with the previous call's tail in front).
        final: no more data follows.
    """
    carry = b""
    if not final:
        cut = data.find(b"\\", max(0, len(data) - _ESCAPE_TAIL))
        if cut != -1:
            if _HIGH_HALF_RE.fullmatch(data, max(0, cut - 6), cut):
                cut -= 6  # a high half right before: it needs to see what follows it
            while cut > 0 and data[cut - 1] == 0x5C:  # keep a backslash run whole
                cut -= 1
            data, carry = data[:cut], data[cut:]
    if b"\\u" in data:
        data = _LONE_SURROGATE_RE.sub(rb"\1\\ufffd", data)
    return data, carry
