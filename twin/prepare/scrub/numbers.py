"""Numbers that identify a person or an account: payment cards, IBANs, phone numbers."""

from __future__ import annotations

import bisect
import re

from phonenumbers import Leniency, PhoneNumberMatcher

from twin.prepare.scrub.common import Span, overlaps

_CARD_MAX_GROUPS = 8
_CARD_RUN_RE = re.compile(r"(?<![0-9+])[0-9]+(?:[ \-][0-9]+)*(?![0-9])")
_IBAN_RE = re.compile(r"\b[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]){11,32}\b")
# A mistyped IBAN: capitals and digits, at least four digits after the check digits.
_IBAN_SHAPED_RE = re.compile(r"[A-Z]{2}[0-9]{2}(?=(?:[A-Z ]*[0-9]){4})[A-Z0-9 ]+")
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip

_DIGIT_RUN_RE = re.compile(r"[0-9]+")
# Phone-shaped spans; libphonenumber then decides. The look-behind skips times ("10:30").
_PHONE_CANDIDATE_RE = re.compile(
    r"(?<![\w.,/+\-=])(?<![0-9]:)\+?\(?[0-9][0-9 ().\-]{5,22}[0-9](?![\w/]|[.,:\-][0-9])"
)
_DATE_OR_RANGE_RE = re.compile(
    r"[0-9]{1,4}([./\-])[0-9]{1,2}\1[0-9]{2,4}|[0-9]{4} ?- ?[0-9]{4}|[0-9]{1,2}\.[0-9]{1,2}"
    r"(?:\.[0-9]{1,4})?"
)
_DECIMAL_RE = re.compile(r"[0-9]+[.,][0-9]+")
_PHONE_SHAPED_RE = re.compile(r"\([0-9]{3,5}\)|^8[ \-(]*9[0-9]{2}")
# How people lay out a phone number: "+…", a trunk "0"/"8" or an area code in parentheses
# first, then groups; amounts with thousands separators ("1 500 000") are laid out otherwise.
_PHONE_LAYOUT_RE = re.compile(r"(?:\+|\(|0|8[ \-(]).*[0-9][ \-.)][0-9]")
_THOUSANDS_RE = re.compile(r"[0-9]{1,3}(?:([ ,.])[0-9]{3})(?:\1[0-9]{3})*")
# Above this many phone-library calls in one message, phone-shaped spans are redacted
# without asking the library: over-redact rather than stall on a megabyte of digits.
_MAX_PHONE_LOOKUPS = 64
_PHONE_CACHE_ENTRIES = 100_000


class NumberFinder:
    """Cards, IBANs and phone numbers; remembers the phone library's answers.

    Args:
        regions: ISO 3166 region codes for numbers written without a ``+`` prefix.
    """

    def __init__(self, regions: list[str]) -> None:
        self._regions = [region.upper() for region in regions] or ["US"]
        # Phone lookups are the slowest rule; chats repeat the same numbers, so remember them.
        self._phone_cache: dict[str, tuple[tuple[int, int], ...]] = {}

    def find(self, text: str, spans: list[Span]) -> None:
        """Add the cards, IBANs and phone numbers of `text` to `spans`."""
        for m in _CARD_RUN_RE.finditer(text):
            for start, end in _find_cards(m.group()):
                spans.append(Span(m.start() + start, m.start() + end, "CARD"))
        for m in _IBAN_RE.finditer(text):
            length = _iban_length(m.group())
            if length:
                spans.append(Span(m.start(), m.start() + length, "IBAN"))
        taken = sorted((s.start, s.end) for s in spans if s.kind in ("CARD", "IBAN", "SECRET"))
        lookups = 0
        for m in _PHONE_CANDIDATE_RE.finditer(text):
            candidate = m.group()
            digits = sum(c.isdigit() for c in candidate)
            if (
                digits < 7
                or _DATE_OR_RANGE_RE.fullmatch(candidate)
                or _DECIMAL_RE.fullmatch(candidate)
            ):
                continue
            if overlaps(taken, m.start(), m.end()):
                continue
            if candidate in self._phone_cache or lookups < _MAX_PHONE_LOOKUPS:
                lookups += candidate not in self._phone_cache
                found = self._phone_spans(candidate)
            else:
                found = ((0, len(candidate)),) if digits >= 10 else ()
            spans.extend(Span(m.start() + s, m.start() + e, "PHONE") for s, e in found)

    def _phone_spans(self, candidate: str) -> tuple[tuple[int, int], ...]:
        cached = self._phone_cache.get(candidate)
        if cached is not None:
            return cached
        # A "+" number is the same in every region, so one region is enough for it.
        regions = self._regions[:1] if candidate.startswith("+") else self._regions
        result: tuple[tuple[int, int], ...] = ()
        for region in regions:
            matches = PhoneNumberMatcher(candidate, region, leniency=Leniency.VALID)
            result = tuple((match.start, match.end) for match in matches)
            if result:
                break
        if not result and _written_as_phone(candidate):
            # Numbers the library calls invalid (a mistyped or unassigned area code) but that
            # are unmistakably written as phones.
            result = ((0, len(candidate)),)
        if len(self._phone_cache) > _PHONE_CACHE_ENTRIES:
            self._phone_cache.clear()
        self._phone_cache[candidate] = result
        return result


def _written_as_phone(candidate: str) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    if candidate.startswith("+"):
        return digits >= 10
    if not 10 <= digits <= 12 or _THOUSANDS_RE.fullmatch(candidate):
        return False
    return bool(_PHONE_SHAPED_RE.search(candidate) or _PHONE_LAYOUT_RE.match(candidate))


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _find_cards(run: str) -> list[tuple[int, int]]:
    """Offsets of the card numbers made of whole digit groups in `run`, Luhn-valid or laid out
    as four groups of four digits: the longest first, then the longest of what is left on either
    side of it, and so on (a run can hold several cards: "4111 1111 1111 1111 5500 …")."""
    groups = [(m.start(), m.end()) for m in _DIGIT_RUN_RE.finditer(run)]
    candidates: list[tuple[int, int]] = []
    for i, (first, _) in enumerate(groups):
        # IIN: cards start with 2-6, 81 (UnionPay), 9 (national schemes: ПРОСТІР, БЕЛКАРТ,
        # Troy; 16 digits) or 1800 (old JCB numbers).
        if run[first] not in "234569" and not run.startswith(("81", "1800"), first):
            continue
        window = groups[i : i + 4]
        if len(window) == 4 and all(end - start == 4 for start, end in window):
            # "dddd dddd dddd dddd" is how cards are printed and typed; a mistyped one (Luhn
            # fails) is still somebody's card number, so over-redact.
            candidates.append((first, window[-1][1]))
        digits = ""
        # Cards are written in at most 8 groups (4-4-4-4-3, 4-6-5, …); bounding the window
        # keeps a megabyte of "1 2 3 4" linear.
        for start, end in groups[i : i + _CARD_MAX_GROUPS]:
            digits += run[start:end]
            if len(digits) > 19:
                break
            # Maestro cards can be as short as 12 digits (and start with 5 or 6).
            shortest = 12 if run[first] in "56" else 13
            if run[first] == "9" and len(digits) != 16:
                continue
            if len(digits) >= shortest and _luhn_ok(digits):
                candidates.append((first, end))
    chosen: list[tuple[int, int]] = []  # sorted, never overlapping
    for start, end in sorted(candidates, key=lambda span: (span[0] - span[1], span[0])):
        if not overlaps(chosen, start, end):
            bisect.insort(chosen, (start, end))
    return chosen


def _iban_length(candidate: str) -> int:
    """Length of the IBAN at the start of `candidate` (spaces included), or 0.

    Valid IBANs of any country count; so does a string of a known country's exact IBAN length
    whose check digits fail, written in capitals and digits and ending where a word ends: a
    mistyped IBAN still names somebody's account.
    """
    compact = candidate.replace(" ", "").upper()
    expected = _IBAN_LENGTHS.get(compact[:2])
    length = expected or len(compact)
    if len(compact) < length or length < 15:
        return 0
    # Map the compact length back onto the spaced candidate.
    seen = end = 0
    for pos, ch in enumerate(candidate):
        seen += ch != " "
        if seen == length:
            end = pos + 1
            break
    iban = compact[:length]
    rearranged = iban[4:] + iban[:4]
    if int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1:
        return end
    mistyped = (
        expected is not None
        and (end == len(candidate) or candidate[end] == " ")
        and _IBAN_SHAPED_RE.fullmatch(candidate, 0, end)
    )
    return end if mistyped else 0
