"""Secrets stated in words: one keyword scan wakes the password, credential, code and key
rules; this module holds the one-time code rules (ru/uk/en/pl/de). The keyword stays; only
the value is replaced."""

from __future__ import annotations

import re

from twin.prepare.scrub.common import (
    PLACEHOLDER_RE,
    Span,
    fix_surrogates,
    fold_confusables,
    lower_same_length,
    normalize_for_detection,
)
from twin.prepare.scrub.keys import find_key_assignments
from twin.prepare.scrub.passwords import (
    find_credential_pairs,
    find_passwords,
    is_credential_word,
    looks_like_password,
    says_password,
)

_CODE_KW = (
    r"код(?:а|у|ом|ы|ов|е|ик\w{0,2}|ище)?|kod(?:u|em|y|zik)?|codes?|otp|"
    r"pin(?:[\- ]?(?:code|код|kod))?|пин(?:[\- ]?код\w{0,2}|ы|а)?|пін(?:[\- ]?код\w{0,2})?|"
    r"пинкод\w{0,2}|cvv2?|cvc2?|tan|blik|"
    r"bestätigungscode|verifizierungscode|sicherheitscode|smscode|einmalcode|passcode"
)
_CODE_VALUE = r"(?P<v>(?:[A-Z]-)?(?:[0-9]{1,4}(?:[ \-][0-9]{1,4}){1,3}|[0-9]{3,8}))"
_CODE_NOT_AFTER = (
    r"(?![0-9]|[.,:/][0-9]|\s?(?:₽|руб|р\.|\$|€|£|грн|zł|usd|eur|rub|%|k\b|к\b|тыс|раз|times|"
    r"x\b|мин|min|лет|years|jahre|lat\b|шт|pcs|kg|кг|km|км))"
)
_YEAR_RE = re.compile(r"(?:19|20)[0-9]{2}")
_CODE_AFTER_KW_RE = re.compile(
    rf"(?<![^\W_])(?P<kw>{_CODE_KW})(?!\w)(?:[\s:,\-—–]+(?:[^\W\d]{{1,16}}|sms|смс)){{0,3}}"
    rf"\s*(?:[:=—–#№\-]|\bis\b|это|to|ist|lautet)?\s*(?<![\w\-]){_CODE_VALUE}{_CODE_NOT_AFTER}",
    re.IGNORECASE,
)
# "4821 — код", "55-21-90 is your code": only these short words may stand between.
_CODE_LINK_WORDS = (
    r"это|is|your|ваш|ваш|твой|твій|мой|мій|my|the|to|twój|twoj|twój|dein|ihr|ist|der|das|"
    r"verification|confirmation|security|one-time|sms|смс|новый|новий|nowy|neuer"
)
_CODE_BEFORE_KW_RE = re.compile(
    rf"(?<![\w.,:/\-]){_CODE_VALUE}{_CODE_NOT_AFTER}(?:\s*[:,\-—–]?\s*(?:{_CODE_LINK_WORDS})(?!\w)){{0,3}}?"
    rf"\s*[:,\-—–]?\s*(?P<kw>{_CODE_KW})(?!\w)",
    re.IGNORECASE,
)
# "739201 is your Telegram code", "4821 — ваш новый код": after a linking verb or dash, any
# few words may stand between the value and its keyword.
_CODE_BEFORE_LINKED_RE = re.compile(
    rf"(?<![\w.,:/\-]){_CODE_VALUE}{_CODE_NOT_AFTER}\s*(?:[:—–\-]|\s(?:is|это|ist|jest|це|—))"
    rf"(?:\s+[^\W\d_][\w\-]{{0,15}}){{0,3}}?\s+(?P<kw>{_CODE_KW})(?!\w)",
    re.IGNORECASE,
)
# Numbers that sit next to "code" but are not secrets: postal, area, error, region codes.
_CODE_CONTEXT_WORDS = (
    r"zip|postal|post|area|country|error|region|status|http|exit|source|qr|bar|iso|product|"
    r"почтов\w*|индекс\w*|ошибк\w*|регион\w*|страны|города|товара|штрих\w*|pocztow\w*|"
    r"błędu|kraju|fehler\w*|postleitzahl|ländercode|vorwahl|промо\w*|promo|помилк\w*|міста"
)
_CODE_CONTEXT_BEFORE_RE = re.compile(rf"(?:{_CODE_CONTEXT_WORDS})\W*$", re.IGNORECASE)
_CODE_CONTEXT_INSIDE_RE = re.compile(rf"(?<!\w)(?:{_CODE_CONTEXT_WORDS})(?!\w)", re.IGNORECASE)

# Keyword stems (lowercase word prefixes) and the rule families they wake up. Finding them
# with one pass over the words and then anchoring each rule at its keyword is much faster
# than letting every rule scan the whole message.
_STEMS: dict[str, frozenset[str]] = {}
for _family, _stems in {
    "password": "парол пасс пас пасв пэсв гасл pass pw p/w pwd pswd pword hasł hasl kennw passw "
    "кодов parola",
    "cred": "логин логін login log user юзер кред cred доступ учетк учётк аккаунт account konto "
    "dane zugang benutzer anmelde вход войти увійти вхід sign logowanie anmeldung",
    "code": "код kod code otp pin пин пін cvv cvc tan blik bestätigungscode verifizierungscode "
    "sicherheitscode smscode einmalcode passcode",
    "key": "api secret access client auth token токен ключ klucz schlüssel bearer",
}.items():
    for _stem in _stems.split():
        _STEMS[_stem] = _STEMS.get(_stem, frozenset()) | {_family}
# Case-sensitive on lowered text: an IGNORECASE alternation is many times slower in `re`.
_STEM_RE = re.compile(
    r"(?<![^\W_])(?:" + "|".join(re.escape(s) for s in sorted(_STEMS, key=len, reverse=True)) + ")"
)
_WORD_RE = re.compile(r"[^\W_]+")


def find_stated_secrets(text: str, spans: list[Span]) -> bool:
    """Add the passwords, codes and key assignments that follow or precede their keyword;
    return whether `text` holds a password, login or code keyword (a cue for what follows)."""
    keywords = _keyword_positions(text)
    if not keywords:
        return False
    passwords = keywords.get("password", [])
    find_passwords(text, passwords, spans)
    find_credential_pairs(text, keywords.get("cred", []) + passwords, spans)
    for pos in keywords.get("code", ()):
        word_end = _WORD_RE.match(text, pos)
        end = word_end.end() if word_end else pos
        matches = [_CODE_AFTER_KW_RE.match(text, pos)]
        matches.extend(_CODE_BEFORE_KW_RE.finditer(text, max(0, pos - 40), end))
        matches.extend(_CODE_BEFORE_LINKED_RE.finditer(text, max(0, pos - 80), end))
        for m in matches:
            if m and _is_code(text, m):
                spans.append(Span(m.start("v"), m.end("v"), "CODE"))
    find_key_assignments(text, keywords.get("key", []), spans)
    return any(family in keywords for family in _CUE_FAMILIES)


def _keyword_positions(text: str) -> dict[str, list[int]]:
    """Start offsets of the words that begin with a known stem, by rule family."""
    found: dict[str, list[int]] = {}
    for m in _STEM_RE.finditer(lower_same_length(text)):
        for family in _STEMS[m.group()]:
            found.setdefault(family, []).append(m.start())
    return found


def _is_code(text: str, m: re.Match[str]) -> bool:
    """Reject numbers next to "code" that are not secrets: years, ranges, postal codes."""
    value = m.group("v")
    digits = sum(c.isdigit() for c in value)
    short_ok = m.group("kw").lower().startswith(("cvv", "cvc", "pin", "пин", "пін"))
    if not (3 if short_ok else 4) <= digits <= 8:
        return False
    if not value.isdigit() and digits < 5:  # "50-80", "12 34": ranges, scores
        return False
    between = text[m.end("kw") : m.start("v")] if m.start("kw") < m.start("v") else ""
    if _YEAR_RE.fullmatch(value) and re.search(r"[^\W\d]{3}", between):
        return False  # "Summer of Code since 2007"
    kw_start = min(m.start("kw"), m.start("v"))
    if _CODE_CONTEXT_BEFORE_RE.search(text, max(0, kw_start - 24), kw_start):
        return False
    return not _CODE_CONTEXT_INSIDE_RE.search(text, m.start(), m.end())


# How far back a keyword may stand and still name the value sent after it.
_CUE_CHARS = 160
_CUE_FAMILIES = ("password", "cred", "code")
# A whole message that is one value: a word, or digits in two or three groups.
_LONE_VALUE_RE = re.compile(
    r"\s*[\"'«]?(?P<v>[^\s<>\x00\"'«»]{3,64}|[0-9]{2,4}(?:[ \-][0-9]{2,4}){1,2})[\"'»]?[.!]?\s*"
)
_LONE_CODE_RE = re.compile(r"[0-9]{4,8}|[0-9]{2,4}(?:[ \-][0-9]{2,4}){1,2}")


def cue_of(context: str) -> str:
    """The tail of `context` from its first password, login or code keyword near the end, in
    the form the rules read; empty when there is none.

    Args:
        context: the messages before the one being scrubbed, joined with newlines.
    """
    tail = normalize_for_detection(fix_surrogates(context[-_CUE_CHARS:]))
    if "<" in tail:
        tail = PLACEHOLDER_RE.sub(lambda m: "\x00" * len(m.group()), tail)
    tail = fold_confusables(tail)
    keywords = _keyword_positions(tail)
    starts = [pos for family in _CUE_FAMILIES for pos in keywords.get(family, ())]
    return tail[min(starts) :] if starts else ""


def find_answer_to_cue(cue: str, text: str, spans: list[Span]) -> None:
    """Add `text` whole when it is a lone value answering the keyword of `cue`."""
    m = _LONE_VALUE_RE.fullmatch(text)
    if not m:
        return
    value = m.group("v")
    keywords = _keyword_positions(cue)
    if "code" in keywords and _LONE_CODE_RE.fullmatch(value):
        spans.append(Span(m.start("v"), m.end("v"), "CODE"))
    elif ("password" in keywords or "cred" in keywords) and not is_credential_word(value):
        # After "пас"/"pass" alone ("не, я пас" → "норм") only a password-shaped value counts.
        plain = "cred" in keywords or says_password(cue)
        if looks_like_password(value, strength="linked" if plain else "shape"):
            spans.append(Span(m.start("v"), m.end("v"), "PASSWORD"))
