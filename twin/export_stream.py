"""Reading a Telegram Desktop export in chunks for ijson: the chat being parsed hands out its
finished messages, a UTF-8 BOM is skipped, lone surrogate escapes are repaired, and the
position and line are kept for error messages."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from itertools import accumulate
from typing import IO, Any

from twin.errors import ImportFailed

READ_SIZE = 1 << 16
_BOM = b"\xef\xbb\xbf"

Progress = Callable[[int, int], None]
"""Called with (bytes read, file size) as the import advances."""


# ---------------------------------------------------------------------------------------------
# Nesting depth

MAX_NESTING = 100
"""The deepest nesting of arrays and objects a file may have (an export nests 6 levels).
ijson keeps each open level's path, so its time and memory grow with the square of the depth:
100,000 nested arrays (200 KB) would take minutes and gigabytes."""

_NOT_STRUCTURE = bytes(set(range(256)) - set(b'[]{}"'))
_AS_PARENS = bytes.maketrans(b"[]{}", b"()()")
_OPENERS_AS_ONE = bytes.maketrans(b"()", b"\x01\x00")


class NestingGuard:
    """Follows the nesting depth of JSON fed in chunks and refuses it past ``limit`` levels.

    Only C-level byte operations run per chunk: escapes are dropped, brackets and quotes kept,
    the brackets inside strings dropped, and matched pairs removed level by level, which bounds
    the depth inside the chunk. The exact depth is traced
    only when that bound passes the limit. A chunk must not end inside an escape
    (`ChatStream` holds such a tail back).

    Args:
        limit: the deepest nesting allowed.
    """

    def __init__(self, limit: int = MAX_NESTING) -> None:
        self.limit = limit
        self.depth = 0
        self.in_string = False

    def feed(self, data: bytes) -> None:
        """Follow ``data``; raise `ImportFailed` once the nesting passes the limit."""
        if b"\\" in data:
            data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
        # Brackets and quotes only; then drop adjacent quote pairs (a stretch without
        # brackets, in or out of a string): quotes stay only around strings holding brackets.
        skeleton = data.translate(_AS_PARENS, _NOT_STRUCTURE).replace(b'""', b"")
        if b'"' in skeleton:
            pieces = skeleton.split(b'"')
            outside = pieces[1::2] if self.in_string else pieces[0::2]
            if len(pieces) % 2 == 0:  # an odd number of quotes: a string opens or closes
                self.in_string = not self.in_string
            parens = b"".join(outside)
        else:
            parens = b"" if self.in_string else skeleton
        # Peel matched pairs level by level: what is left is ")" * closed + "(" * opened, so
        # nothing in the chunk nests deeper than `peels` above the higher of its two ends.
        rest, peels = parens, 0
        while b"()" in rest and peels <= self.limit:
            rest, peels = rest.replace(b"()", b""), peels + 1
        end = self.depth + 2 * parens.count(b"(") - len(parens)
        if max(self.depth, end) + peels > self.limit and self._deepest(parens) > self.limit:
            raise ImportFailed(
                f"The file nests arrays or objects more than {self.limit} levels deep; "
                "a Telegram export never does.",
                hint=(
                    "twin expects a result.json from Telegram Desktop "
                    "(Export chat history, JSON format)."
                ),
            )
        self.depth = end

    def _deepest(self, parens: bytes) -> int:
        """The exact deepest level within a chunk's brackets (``(``/``)`` only)."""
        ones = parens.translate(_OPENERS_AS_ONE)
        # Depth after the i-th bracket (1-based) = start + 2·(openers so far) − i.
        steps = map(operator.sub, map((2).__mul__, accumulate(ones)), range(1, len(ones) + 1))
        return self.depth + max(max(steps, default=0), 0)


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
