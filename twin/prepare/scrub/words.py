"""Secrets stated in words: passwords, login/password pairs and one-time codes next to their
keyword (ru/uk/en/pl/de). The keyword stays; only the value is replaced."""

from __future__ import annotations

import re

from twin.prepare.scrub.common import Span, lower_same_length
from twin.prepare.scrub.keys import find_key_assignments

_PW_STRONG_KW = (
    r"парол(?:ь|я|ю|ем|е|и|ей)?|паролик\w{0,2}|пасворд\w{0,2}|гасл(?:о|а|у|ом)|"
    r"passw(?:or)?ds?|passwor[td]\w{0,2}|kennw[oö]rt\w{0,2}|has(?:ł|l)(?:o|a|em|e)|passwd|pswd|"
    r"pwd|кодов(?:ое|ым) слов(?:о|ом)|passcode|parola"
)
_PW_WEAK_KW = r"pass|pw|пасс"
_PW_SEP_WORDS = r"это|is|to|ist|jest|це|є|lautet|будет|буде|был|was|war|wird|такой|такий|brzmi"
# A quoted value may hold spaces; a bare one ends at whitespace and never starts a placeholder.
_PW_VALUE = (
    r"(?:\"(?P<q1>[^\"\n]{1,64})\"|«(?P<q2>[^»\n]{1,64})»|'(?P<q3>[^'\n]{1,64})'"
    r"|(?P<v>[^\s<>\x00\"«]{1,64}))"
)
_PW_SEP = (
    rf"(?P<sep>\s*(?:[:=—–]|\s-|->|=>)\s*(?:(?:{_PW_SEP_WORDS})(?!\w)\s*:?\s*)?"
    rf"|\s+(?:{_PW_SEP_WORDS})(?!\w)\s*[:—–\-]?\s*)"
)
_PASSWORD_RE = re.compile(
    rf"(?<![^\W_])(?:{_PW_STRONG_KW})(?:\s+(?!(?:{_PW_SEP_WORDS})\b|-(?:\s|$))[^\s:=—–.,!?;]{{1,24}}){{0,4}}?"
    rf"{_PW_SEP}{_PW_VALUE}",
    re.IGNORECASE,
)
_PASSWORD_WEAK_RE = re.compile(rf"(?<![^\W_])(?:{_PW_WEAK_KW})\s*[:=]\s*{_PW_VALUE}", re.IGNORECASE)
_PASSWORD_BARE_RE = re.compile(
    rf"(?<![^\W_])(?:{_PW_STRONG_KW})"
    r"(?:\s+(?:от|для|від|к|до|на|for|to|do|für|zum|zur|of)\s+[^\s:=]{1,24})?"
    rf"\s+{_PW_VALUE}",
    re.IGNORECASE,
)
_CRED_KW = (
    r"логин\w{0,2}|логін\w{0,2}|login|user(?:name)?|юзер|креды|creds|credentials|доступ\w{0,2}|"
    r"учетк\w{0,2}|учётк\w{0,2}|аккаунт\w{0,2}|account|konto|dane logowania|zugangsdaten|"
    r"benutzer\w{0,4}|anmeldedaten"
)
_CRED_PAIR_RE = re.compile(
    rf"(?<![^\W_])(?:{_CRED_KW})(?!\w)[^\n]{{0,40}}?(?<![\w/])(?P<user>[\w.@+\-]{{2,64}})"
    rf"(?:\s*[/|]\s*|:(?=\S))(?P<v>[^\s<>\x00/|]{{2,64}})(?=\s|$|[,;!?)])",
    re.IGNORECASE,
)
_CRED_WEAK_PAIR_RE = re.compile(
    rf"(?<![^\W_])(?:{_CRED_KW})(?!\w)\s*[:=]?\s*\S{{1,64}}\s+(?:{_PW_WEAK_KW})\s+(?P<v>[^\s<>\x00]{{1,64}})",
    re.IGNORECASE,
)
_PW_STOPWORDS_TEXT = """
    не нет тот та то такой такая такое такий тот же тоже же как какой какая верный неверный
    неправильный правильный старый новый сложный простой другой не знаю забыл помню сменил
    у в на от для the a an not no none same wrong correct incorrect invalid expired too old new
    changed reset saved required empty what which here there below above same? ok yes jest nie
    to ten ta złe błędne takie samo inne stare nowe ist nicht falsch richtig das der die gleich
    zu alt neu geändert abgelaufen ні та той інший старий новий правильний неправильний"""
_PW_STOPWORDS = frozenset(_PW_STOPWORDS_TEXT.split())

_CODE_KW = (
    r"код(?:а|у|ом|ы|ик)?|kod(?:u|em|y)?|codes?|otp|pin(?:[\- ]?(?:code|код|kod))?|"
    r"пин(?:[\- ]?код\w{0,2})?|пін(?:[\- ]?код\w{0,2})?|cvv2?|cvc2?|tan|blik|"
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
    "password": "парол пасс пасворд гасл pass pw pwd hasł hasl kennw passw кодов parola",
    "cred": "логин логін login user юзер кред cred доступ учетк учётк аккаунт account konto "
    "dane zugang benutzer anmelde",
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


def find_stated_secrets(text: str, spans: list[Span]) -> None:
    """Add the passwords, codes and key assignments that follow or precede their keyword."""
    keywords = _keyword_positions(text)
    if not keywords:
        return
    for pos in keywords.get("password", ()):
        m = _PASSWORD_RE.match(text, pos)
        if m:
            strong = ":" in m.group("sep") or "=" in m.group("sep")
            cyrillic_kw = bool(re.match(r"[а-яёіїєґ]", m.group(), re.IGNORECASE))
            _add_password(m, spans, strong=strong, latin_is_enough=cyrillic_kw)
        m = _PASSWORD_WEAK_RE.match(text, pos)
        if m:
            _add_password(m, spans, strong=True, latin_is_enough=True)
        m = _PASSWORD_BARE_RE.match(text, pos)
        value = _group_value(m) if m else None
        if value and _looks_like_bare_password(value[2]):
            spans.append(Span(value[0], value[1], "PASSWORD"))
    for pos in keywords.get("cred", []) + keywords.get("password", []):
        for regex in (_CRED_PAIR_RE, _CRED_WEAK_PAIR_RE):
            m = regex.match(text, pos)
            if (
                not m
                or "://" in m.group()
                or re.fullmatch(_CRED_KW, m.groupdict().get("user") or "", re.I)
            ):
                continue
            _add_password(m, spans, strong=regex is _CRED_WEAK_PAIR_RE, latin_is_enough=True)
    for pos in keywords.get("code", ()):
        word_end = _WORD_RE.match(text, pos)
        end = word_end.end() if word_end else pos
        matches = [_CODE_AFTER_KW_RE.match(text, pos)]
        matches.extend(_CODE_BEFORE_KW_RE.finditer(text, max(0, pos - 40), end))
        for m in matches:
            if m and _is_code(text, m):
                spans.append(Span(m.start("v"), m.end("v"), "CODE"))
    find_key_assignments(text, keywords.get("key", []), spans)


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


def _group_value(m: re.Match[str]) -> tuple[int, int, str] | None:
    for name in ("q1", "q2", "q3", "v"):
        if name in m.re.groupindex and m.group(name):
            value = m.group(name)
            if name == "v":
                value = value.rstrip(".,;)»\"'")
            if value:
                return m.start(name), m.start(name) + len(value), value
    return None


def _add_password(
    m: re.Match[str], spans: list[Span], *, strong: bool, latin_is_enough: bool
) -> None:
    value = _group_value(m)
    if value and _looks_like_password(value[2], strong=strong, latin_is_enough=latin_is_enough):
        spans.append(Span(value[0], value[1], "PASSWORD"))


def _looks_like_password(value: str, *, strong: bool, latin_is_enough: bool) -> bool:
    """Tell a stated password from prose: "password is hunter2" vs "password is wrong"."""
    if not any(c.isalnum() for c in value) or value.lower().strip("?!") in _PW_STOPWORDS:
        return False
    if any(c.isdigit() for c in value) or not value.isalnum():
        return True
    if any(c.isupper() for c in value[1:]):
        return True
    if strong:
        return len(value) >= 3
    return latin_is_enough and value.isascii()


def _looks_like_bare_password(value: str) -> bool:
    # "мой пароль qwerty123": without a separator only an unmistakable value counts.
    if len(value) < 4 or value.lower() in _PW_STOPWORDS:
        return False
    has_digit = any(c.isdigit() for c in value)
    has_alpha = any(c.isalpha() for c in value)
    return (has_digit and (has_alpha or len(value) >= 4)) or (has_alpha and not value.isalnum())
