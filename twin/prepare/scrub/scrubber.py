"""`Scrubber`: runs every detector over a message and replaces what they find."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from twin.prepare.scrub.common import (
    DEFAULT_REGIONS,
    PLACEHOLDER_RE,
    PRIORITY,
    Span,
    fix_surrogates,
    fold_confusables,
    normalize_for_detection,
)
from twin.prepare.scrub.keys import find_emails, find_keys, find_urls
from twin.prepare.scrub.numbers import NumberFinder
from twin.prepare.scrub.seeds import find_seeds
from twin.prepare.scrub.words import cue_of, find_answer_to_cue, find_stated_secrets

_DIGIT_RE = re.compile(r"[0-9]")
# Texts up to this long are remembered with their result, up to this many at a time.
_SHORT_CACHE_CHARS = 32
_SHORT_CACHE_ENTRIES = 100_000


class ScrubConfig(BaseModel):
    """What to look for besides the built-in rules.

    Args:
        regions: ISO 3166 region codes for phone numbers written without a ``+`` prefix.
        blocklist: strings to replace with ``<BLOCKED>`` wherever they occur, ignoring case.
        seed_min_words: the shortest run of BIP39 words treated as a seed phrase.
    """

    regions: list[str] = Field(default_factory=lambda: list(DEFAULT_REGIONS))
    blocklist: list[str] = Field(default_factory=list)
    seed_min_words: int = Field(default=12, ge=3)


@dataclass(frozen=True, slots=True)
class ScrubResult:
    """A scrubbed message and the placeholder types found in it (never the values).

    A dataclass rather than a pydantic model: one is built per message, millions of times.

    Args:
        text: the message with placeholders (unchanged when `found` is empty).
        found: placeholder types present in `text`, e.g. ``["EMAIL", "PHONE"]``.
    """

    text: str
    found: list[str] = field(default_factory=list)


_MAX_PASSES = 16
"""Detection passes before a message that keeps yielding new matches is redacted whole."""


class Scrubber:
    """Compiled rules, built once and reused for every message.

    Args:
        config: regions and blocklist; the defaults when omitted.
    """

    def __init__(self, config: ScrubConfig | None = None) -> None:
        self.config = config or ScrubConfig()
        self._numbers = NumberFinder(self.config.regions)
        entries = {
            normalize_for_detection(fix_surrogates(e)).strip() for e in self.config.blocklist
        }
        entries.discard("")
        self._blocklist_re = (
            re.compile(
                "|".join(re.escape(e) for e in sorted(entries, key=len, reverse=True)),
                re.IGNORECASE,
            )
            if entries
            else None
        )
        # Chats repeat short messages ("ok", "да", "😂") thousands of times: scrub each once.
        self._short_cache: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._cue_cache: dict[str, bool] = {}

    def scrub(self, text: str, *, context: Sequence[str] = ()) -> ScrubResult:
        """Replace every secret or personal datum in `text` with its placeholder.

        Args:
            text: one chat message, any length, any unicode.
            context: the messages just before `text` in the same chat (either speaker), oldest
                first. A secret is often sent on its own right after the message that names
                it ("пароль от вайфая?" → "Kx7pQ2zRw"); a password, login or code keyword
                there makes such a value a secret. Only `text` is returned.
        """
        if context and any(map(self._names_a_secret, context)):
            cue = cue_of("\n".join(context))
            if cue:
                return self._scrub(text, cue)
        cached = self._short_cache.get(text)
        if cached is not None:
            return ScrubResult(text=cached[0], found=list(cached[1]))
        result = self._scrub(text, "")
        if len(text) <= _SHORT_CACHE_CHARS:
            if len(self._short_cache) >= _SHORT_CACHE_ENTRIES:
                self._short_cache.clear()
            self._short_cache[text] = (result.text, tuple(result.found))
        return result

    def _names_a_secret(self, message: str) -> bool:
        # Each message is context for the next two, and was usually scrubbed just before:
        # `_scrub` remembers whether it names a secret.
        known = self._cue_cache.get(message)
        if known is None:
            known = bool(cue_of(message))
            self._remember_cue(message, known)
        return known

    def _scrub(self, text: str, cue: str) -> ScrubResult:
        raw = text
        text = fix_surrogates(text)
        current = normalize_for_detection(text)
        found: set[str] = set()
        # Replacing can expose a new match ("код 4821код 4821": the second code only has its
        # boundary once the first is a placeholder); repeat until stable.
        for n in range(_MAX_PASSES):
            spans, names_a_secret = self._detect_after(cue, current)
            if n == 0:
                self._remember_cue(raw, names_a_secret)
            if not spans:
                break
            current = _apply(current, spans, found)
        else:
            if self._detect_after(cue, current)[0]:
                # Still finding more after many passes: a pathological chain. Over-redact the
                # whole message rather than leak its tail (and stay idempotent).
                current = "<SECRET>"
                found.add("SECRET")
        if not found:
            return ScrubResult(text=text, found=[])
        return ScrubResult(text=current, found=sorted(found, key=PRIORITY.__getitem__))

    def _remember_cue(self, message: str, names_a_secret: bool) -> None:
        if len(self._cue_cache) >= _SHORT_CACHE_ENTRIES:
            self._cue_cache.clear()
        self._cue_cache[message] = names_a_secret

    def _detect_after(self, cue: str, text: str) -> tuple[list[Span], bool]:
        """Spans of `text` found when it is read right after `cue`, and whether `text` names
        a secret itself (the spans of `cue` and the parts of spans reaching into it are
        dropped)."""
        spans, names_a_secret = self._detect(text)
        if not cue:
            return spans, names_a_secret
        offset = len(cue) + 1
        # Only the rules anchored at a keyword need to read on from the cue.
        stated: list[Span] = []
        find_stated_secrets(f"{cue}\n{_rule_view(text)}", stated)
        spans.extend(
            Span(max(start, offset) - offset, end - offset, kind)
            for start, end, kind in stated
            if end > offset
        )
        find_answer_to_cue(cue, _rule_view(text), spans)
        return spans, names_a_secret

    # -- detection ------------------------------------------------------------------------
    def _detect(self, text: str) -> tuple[list[Span], bool]:
        """Spans to replace in normalized `text` (placeholders are never touched), and whether
        it holds a password, login or code keyword."""
        text = _rule_view(text)
        spans: list[Span] = []
        url_spans = find_urls(text, spans)
        find_keys(text, url_spans, spans)
        find_emails(text, spans)
        names_a_secret = find_stated_secrets(text, spans)
        # Most messages hold no digit at all: one search settles them before any counting.
        if _DIGIT_RE.search(text) and sum(map(text.count, "0123456789")) >= 7:
            self._numbers.find(text, spans)
        find_seeds(text, spans, min_words=self.config.seed_min_words)
        if self._blocklist_re is not None:
            spans.extend(
                Span(m.start(), m.end(), "BLOCKED") for m in self._blocklist_re.finditer(text)
            )
        return spans, names_a_secret


def _rule_view(text: str) -> str:
    """`text` as the rules read it: placeholders masked (same length, so offsets stay valid;
    NUL never matches any rule) and look-alike letters folded."""
    if "<" in text:
        text = PLACEHOLDER_RE.sub(lambda m: "\x00" * len(m.group()), text)
    return fold_confusables(text)


def _apply(text: str, spans: list[Span], found: set[str]) -> str:
    """Replace spans with placeholders; overlapping findings become one placeholder."""
    spans.sort(key=lambda s: (s.start, -s.end))
    merged: list[list[int | str]] = []  # [start, end, kind]
    for start, end, kind in spans:
        if merged and start < int(merged[-1][1]):
            last = merged[-1]
            last[1] = max(int(last[1]), end)
            if PRIORITY[kind] < PRIORITY[str(last[2])]:
                last[2] = kind
        elif end > start:
            merged.append([start, end, kind])
    pieces: list[str] = []
    position = 0
    for start, end, kind in merged:
        pieces.append(text[position : int(start)])
        pieces.append(f"<{kind}>")
        found.add(str(kind))
        position = int(end)
    pieces.append(text[position:])
    return "".join(pieces)


def scrub_text(text: str, config: ScrubConfig | None = None) -> ScrubResult:
    """Scrub one message with a freshly built `Scrubber` (build one yourself for many).

    Args:
        text: the message.
        config: regions and blocklist; the defaults when omitted.
    """
    return Scrubber(config).scrub(text)


class ScrubReport(BaseModel):
    """How many findings of each type every dialog had; values are never recorded.

    Args:
        counts: dialog key → placeholder type → number of messages with that type.
    """

    counts: dict[str, dict[str, int]] = Field(default_factory=dict)

    def add(self, dialog_key: str, found: Iterable[str]) -> None:
        """Count the types found in one message of a dialog.

        Args:
            dialog_key: any stable name of the dialog (e.g. its Telegram id as text).
            found: `ScrubResult.found` of the message.
        """
        per_dialog = self.counts.setdefault(dialog_key, {})
        for kind in found:
            per_dialog[kind] = per_dialog.get(kind, 0) + 1

    def totals(self) -> dict[str, int]:
        """Counts per type over all dialogs."""
        total: dict[str, int] = {}
        for per_dialog in self.counts.values():
            for kind, n in per_dialog.items():
                total[kind] = total.get(kind, 0) + n
        return total

    def as_dict(self) -> dict[str, dict[str, int]]:
        """A copy of the counts, safe to serialize."""
        return {key: dict(per_dialog) for key, per_dialog in self.counts.items()}
