"""What every detector shares: placeholder types, spans, and the normalized text they read."""

from __future__ import annotations

import bisect
import re
import unicodedata
from typing import NamedTuple

PLACEHOLDER_TYPES: tuple[str, ...] = (
    "URL_SECRET",
    "SECRET",
    "SEED",
    "PASSWORD",
    "EMAIL",
    "IBAN",
    "CARD",
    "PHONE",
    "CODE",
    "BLOCKED",
)
# When two findings overlap, the union is replaced by the type listed first above.
PRIORITY = {kind: rank for rank, kind in enumerate(PLACEHOLDER_TYPES)}
DEFAULT_REGIONS: tuple[str, ...] = ("RU", "UA", "US", "GB", "PL", "DE")

# --- normalization -------------------------------------------------------------------------
# Zero-width, bidi, soft hyphen, variation selectors, Hangul fillers, tag characters and C0
# controls: all invisible, all able to split a secret so that no rule sees it.
_FORMAT_CHARS = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f"
)
INVISIBLE_RE = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f{_FORMAT_CHARS}]")
FORMAT_CHARS_RE = re.compile(f"[{_FORMAT_CHARS}]")
"""The invisible characters that are not control codes (zero-width, bidi, fillers, …)."""
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
PLACEHOLDER_RE = re.compile("<(?:" + "|".join(PLACEHOLDER_TYPES) + ")>")


def normalize_for_detection(text: str) -> str:
    """Return the form of `text` the rules look at: invisible characters removed, then NFKC.

    Args:
        text: a message without lone surrogates.
    """
    if text.isascii():
        return INVISIBLE_RE.sub("", text) if not text.isprintable() else text
    if INVISIBLE_RE.search(text):
        text = INVISIBLE_RE.sub("", text)
    if not unicodedata.is_normalized("NFKC", text):
        # NFKC can expand a character into an invisible one (rare); strip once more.
        text = INVISIBLE_RE.sub("", unicodedata.normalize("NFKC", text))
    return text


class Span(NamedTuple):
    start: int
    end: int
    kind: str


def overlaps(sorted_spans: list[tuple[int, int]], start: int, end: int) -> bool:
    """Whether [start, end) overlaps any of the sorted, non-nested spans."""
    i = bisect.bisect_right(sorted_spans, (start, 1 << 62))
    before = sorted_spans[i - 1] if i else None
    after = sorted_spans[i] if i < len(sorted_spans) else None
    return bool((before and before[1] > start) or (after and after[0] < end))


def lower_same_length(text: str) -> str:
    lowered = text.lower()
    if len(lowered) != len(text):  # "İ" and a few others grow when lowered; keep offsets valid
        lowered = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    return lowered


def fix_surrogates(text: str) -> str:
    # Lone surrogates cannot be encoded as UTF-8; anything downstream would crash on them.
    if text.isascii():
        return text
    return _SURROGATE_RE.sub("\ufffd", text)


def count_digits(text: str) -> int:
    return sum(map(text.count, "0123456789"))


# Letters that look the same in Latin and Cyrillic. "pаssword" with a Cyrillic "а" must still
# wake the password rule, so inside a word that mixes both scripts the letters of the minority
# script are folded into the majority's (same length: offsets stay valid).
_CYRILLIC_TO_LATIN = dict(
    zip("аеорсухкіјѕԁӏмтнвАЕОРСУХКІЈЅМТНВ", "aeopcyxkijsdlmthbAEOPCYXKIJSMTHB", strict=True)
)
_LATIN_TO_CYRILLIC = {latin: cyr for cyr, latin in _CYRILLIC_TO_LATIN.items() if cyr not in "ԁӏ"}
_MIXED_SCRIPT_RE = re.compile(r"[a-zA-Z][а-яА-ЯёЁіїєґІЇЄҐјѕԁӏ]|[а-яА-ЯёЁіїєґІЇЄҐјѕԁӏ][a-zA-Z]")
_WORD_RE = re.compile(r"[^\W\d_]+")
_LATIN_RE = re.compile(r"[a-zA-Z]")


def fold_confusables(text: str) -> str:
    """Fold look-alike letters of words that mix Latin and Cyrillic into one script.

    Args:
        text: normalized text; the result has the same length.
    """
    if text.isascii() or not _MIXED_SCRIPT_RE.search(text):
        return text
    pieces: list[str] = []
    position = 0
    for m in _WORD_RE.finditer(text):
        word = m.group()
        if not _MIXED_SCRIPT_RE.search(word):
            continue
        latin = len(_LATIN_RE.findall(word))
        table = _CYRILLIC_TO_LATIN if latin * 2 >= len(word) else _LATIN_TO_CYRILLIC
        pieces.append(text[position : m.start()])
        pieces.append("".join(table.get(c, c) for c in word))
        position = m.end()
    pieces.append(text[position:])
    return "".join(pieces)
