"""A guard against JSON nested deep enough to exhaust the parser, checked before ijson reads.

ijson keeps the path of every open level, so its time and memory grow with the square of the
depth: a 200 KB file of 100,000 nested arrays took 20 s and 23 GB. `NestingGuard` follows the
depth of the bytes about to be parsed and refuses a file past `MAX_NESTING` levels.
"""

from __future__ import annotations

import operator
from itertools import accumulate

from twin.errors import ImportFailed

EXPECTED_HINT = (
    "twin expects a result.json from Telegram Desktop → Export chat history / Export Telegram "
    "data, JSON format."
)

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
    the depth inside the chunk. The exact depth is traced only when that bound passes the
    limit. A chunk must not end inside an escape (`twin.importer` holds such a tail back).

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
                hint=EXPECTED_HINT,
            )
        self.depth = end

    def _deepest(self, parens: bytes) -> int:
        """The exact deepest level within a chunk's brackets (``(``/``)`` only)."""
        ones = parens.translate(_OPENERS_AS_ONE)
        # Depth after the i-th bracket (1-based) = start + 2·(openers so far) − i.
        steps = map(operator.sub, map((2).__mul__, accumulate(ones)), range(1, len(ones) + 1))
        return self.depth + max(max(steps, default=0), 0)
