"""Passwords stated in words (ru/uk/en/pl/de): after their keyword, before it ("X is the
password"), or as a login/password pair after a sign-in cue. The keyword stays; the value goes.

Rules are built for families of phrasing, not for sentences: any inflected, diminutive or slang
form of the keyword ("паролька", "пассворд", "pword"), a keyword in another language than the
sentence, a value that is a dictionary word or a well-known pattern ("qwerty", "1q2w3e4r").
"""

from __future__ import annotations

import re

from zxcvbn.frequency_lists import FREQUENCY_LISTS

from twin.prepare.scrub.common import Span

# Every inflection, diminutive and slang spelling of the word "password".
_PW_STRONG_KW = (
    r"парол\w*(?:-то|-таки)?|пасс?в[оа]р[дт]\w*|пэсв[оа]р[дт]\w*|гасл\w*|passw\w*|"
    r"pass(?:phrase|code|wort)\w*|p(?:ass)?word|pwd|pswd|kennw\w*|has(?:ł|l)(?:o|a|em|e|u)|"
    r"parol\w*|кодов\w* слов\w*"
)
# Words that are not always about a password: only with a clear separator and a clear value.
_PW_WEAK_KW = r"pass|pw|p/w|пасс|пас"
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
# Up to four words may stand between the keyword and its separator ("пароль от вайфая:").
_PW_BETWEEN = rf"(?:\s+(?!(?:{_PW_SEP_WORDS})\b|-(?:\s|$))[^\s:=—–.,!?;]{{1,24}}){{0,4}}?"
_PASSWORD_RE = re.compile(
    rf"(?<![^\W_])(?:{_PW_STRONG_KW})(?!\w){_PW_BETWEEN}{_PW_SEP}{_PW_VALUE}", re.IGNORECASE
)
_PASSWORD_WEAK_RE = re.compile(
    rf"(?<![^\W_])(?:{_PW_WEAK_KW})(?!\w)(?P<sep>\s*[:=]\s*|\s+(?:-|—|is|это)\s+){_PW_VALUE}",
    re.IGNORECASE,
)
_PASSWORD_BARE_RE = re.compile(
    rf"(?<![^\W_])(?:{_PW_STRONG_KW}|{_PW_WEAK_KW})(?!\w)"
    r"(?:\s+(?:от|для|від|к|до|на|for|to|do|für|zum|zur|of)\s+[^\s:=]{1,24})?"
    rf"\s+{_PW_VALUE}",
    re.IGNORECASE,
)
# "Kx7pQ2zRw — это пароль", "hunter2 is my wifi pass": the value, a link, a few words, then
# the keyword (which ends the searched window).
_PW_BEFORE_RE = re.compile(
    r"(?<![^\s\"'«(])(?P<v>[^\s<>\x00\"'«»()]{3,63}[^\s<>\x00\"'«»():,.;!?])[\"'»)]?"
    r"(?P<link>\s*[—–:(]\s*|\s+-\s+|\s+)(?:(?:это|is|was|—|-|будет|ist|jest|це)\s+)?"
    r"(?:[^\W\d_][\w\-]{0,15}\s+){0,3}\(?$",
    re.IGNORECASE,
)
_CRED_KW = (
    r"логин\w{0,2}(?:/парол\w*)?|логін\w{0,2}|log[\s\-]?in(?:/password)?|sign[\s\-]?in|"
    r"user(?:name)?|юзер|креды|creds|credentials|доступ\w{0,2}|учетк\w{0,2}|учётк\w{0,2}|"
    r"аккаунт\w{0,2}|account|konto|dane logowania|zugangsdaten|benutzer\w{0,4}|anmeldedaten|"
    r"вход\w{0,2}|войти|увійти|вхід|logowanie|anmeldung"
)
_CRED_PAIR_RE = re.compile(
    rf"(?<![^\W_])(?:{_CRED_KW})(?!\w)[^\n]{{0,40}}?(?<![\w/])(?P<user>[\w.@+\-]{{2,64}})"
    rf"(?:\s*[/|]\s*|:(?=\S))(?P<v>[^\s<>\x00/|]{{2,64}})(?=\s|$|[,;!?)])",
    re.IGNORECASE,
)
_CRED_WEAK_PAIR_RE = re.compile(
    rf"(?<![^\W_])(?:{_CRED_KW})(?!\w)\s*[:=]?\s*\S{{1,64}}\s+(?:{_PW_WEAK_KW})\s+"
    r"(?P<v>[^\s<>\x00]{1,64})",
    re.IGNORECASE,
)
# "вход: ivanov Qwerty!2024": a user name and a value separated by spaces only.
_CRED_SPACE_PAIR_RE = re.compile(
    rf"(?<![^\W_])(?:{_CRED_KW})(?!\w)(?:\s+(?:для|в|на|to|for|do|на|у)\s+\S{{1,24}})?"
    r"\s*[:—–\-]?\s*(?P<user>[\w.@+\-]{2,64})[,;]?\s+(?P<v>[^\s<>\x00]{4,64})",
    re.IGNORECASE,
)
_PW_STOPWORDS_TEXT = """
    не нет тот та то такой такая такое такий тот же тоже же как какой какая верный неверный
    неправильный правильный старый новый сложный простой другой не знаю забыл помню сменил
    у в на от для the a an not no none same wrong correct incorrect invalid expired too old new
    changed reset saved required empty what which here there below above same? ok yes jest nie
    to ten ta złe błędne takie samo inne stare nowe ist nicht falsch richtig das der die gleich
    zu alt neu geändert abgelaufen ні та той інший старий новий правильний неправильний
    this that it its is was will be been my your our his her their me you we they he she
    with via through by from at in on of and or but if so as then than also still just only
    now later soon again please pls plz thanks thx where when why how who whom whose
    вот это что где когда кто чем чтобы или и а но если то так тут там здесь сейчас потом
    позже скоро ещё еще уже тоже мне тебе нам вам им его её ее их мой моя моё твой твоя наш
    ваш через с со по при про за под над из без до после"""
_PW_STOPWORDS = frozenset(_PW_STOPWORDS_TEXT.split())
# Everyday words in the common-password list ("password", "master", "love") are prose too often.
_COMMON_WORDS = frozenset(FREQUENCY_LISTS["english_wikipedia"][:10000]) | frozenset(
    FREQUENCY_LISTS["us_tv_and_film"][:10000]
)
_COMMON_PASSWORDS = frozenset(FREQUENCY_LISTS["passwords"][:20000]) - _COMMON_WORDS
# Russian adjectives, verbs and adverbs describe a password ("простой", "забыл", "сложно");
# nouns and names can be one ("ромашка").
_RU_PROSE_RE = re.compile(
    r"(?:ый|ий|ой|ая|яя|ое|ее|ые|ие|ого|его|ому|ему|ть|ться|ла|ло|ли|лся|лась|ет|ит|ут|ют|ат|ят|"
    r"ешь|ишь|ем|им|но|ко|ро)$|^(?:не|по|за|вы|при|пере)\w+л$"
)
_CYRILLIC_RE = re.compile(r"[а-яёіїєґ]", re.IGNORECASE)


def find_passwords(text: str, positions: list[int], spans: list[Span]) -> None:
    """Add the values stated after or before the password keywords found at `positions`."""
    for pos in positions:
        m = _PASSWORD_RE.match(text, pos)
        if m:
            sep = m.group("sep")
            strength = "strong" if (":" in sep or "=" in sep) else "linked"
            _add(m, spans, strength=strength, keyword=m.group())
        m = _PASSWORD_WEAK_RE.match(text, pos)
        if m:
            strength = "strong" if ":" in m.group("sep") or "=" in m.group("sep") else "shape"
            _add(m, spans, strength=strength, keyword=m.group())
        m = _PASSWORD_BARE_RE.match(text, pos)
        if m:
            _add(m, spans, strength="bare", keyword=m.group())
        if pos and _PASSWORD_KW_AT.match(text, pos):
            m = _PW_BEFORE_RE.search(text, max(0, pos - 100), pos)
            if m and not re.fullmatch(_CRED_KW, m.group("v"), re.I):
                _add(m, spans, strength="shape", keyword="")


_PASSWORD_KW_AT = re.compile(rf"(?:{_PW_STRONG_KW}|{_PW_WEAK_KW})(?!\w)", re.IGNORECASE)
_PASSWORD_STRONG_KW_RE = re.compile(rf"(?<![^\W_])(?:{_PW_STRONG_KW})(?!\w)", re.IGNORECASE)


def says_password(text: str) -> bool:
    """Whether `text` holds a keyword that means "password" and nothing else ("пароль",
    "passwd"), unlike "пас"/"pass" ("я пас": I'm out; "boarding pass")."""
    return bool(_PASSWORD_STRONG_KW_RE.search(text))


def find_credential_pairs(text: str, positions: list[int], spans: list[Span]) -> None:
    """Add the password of a login/password pair written after a sign-in cue."""
    for pos in positions:
        for regex, strength in (
            (_CRED_PAIR_RE, "pair"),
            (_CRED_WEAK_PAIR_RE, "strong"),
            (_CRED_SPACE_PAIR_RE, "shape"),
        ):
            m = regex.match(text, pos)
            if not m or "://" in m.group():
                continue
            user = m.groupdict().get("user") or ""
            if re.fullmatch(_CRED_KW, user, re.I) or user.lower() in _PW_STOPWORDS:
                continue
            if regex is _CRED_SPACE_PAIR_RE and _PASSWORD_KW_AT.match(m.group("v")):
                continue  # "логин: ivan пароль: …": the password rule takes it from here
            _add(m, spans, strength=strength, keyword="")


def is_credential_word(word: str) -> bool:
    """Whether `word` is itself a password or login keyword ("пароль", "login")."""
    return bool(re.fullmatch(rf"(?:{_PW_STRONG_KW}|{_PW_WEAK_KW}|{_CRED_KW})[?:!.]*", word, re.I))


def _group_value(m: re.Match[str]) -> tuple[int, int, str] | None:
    for name in ("q1", "q2", "q3", "v"):
        if name in m.re.groupindex and m.group(name):
            value = m.group(name)
            if name == "v":
                value = value.rstrip(".,;)»\"'")
            if value:
                return m.start(name), m.start(name) + len(value), value
    return None


def _add(m: re.Match[str], spans: list[Span], *, strength: str, keyword: str) -> None:
    value = _group_value(m)
    if value and looks_like_password(value[2], strength=strength, keyword=keyword):
        spans.append(Span(value[0], value[1], "PASSWORD"))


def looks_like_password(value: str, *, strength: str, keyword: str = "") -> bool:
    """Tell a stated password from prose: "password is hunter2" vs "password is wrong".

    Args:
        value: the word found where a password would stand.
        strength: how clearly the text says that `value` is the password: ``strong`` after
            ":" or "=", ``linked`` after "is"/"это"/a dash, ``pair`` as the second half of
            ``user/value``, ``shape`` when only a password-shaped value counts, ``bare`` after
            nothing but a space.
        keyword: the matched text starting with the keyword (its script matters).
    """
    lowered = value.lower().strip("?!")
    if not any(c.isalnum() for c in value) or lowered in _PW_STOPWORDS:
        return False
    has_digit = any(c.isdigit() for c in value)
    has_alpha = any(c.isalpha() for c in value)
    shaped = (has_digit and has_alpha) or (has_alpha and not value.isalnum())
    shaped = shaped or (has_alpha and any(c.isupper() for c in value[1:]) and len(value) >= 6)
    if lowered in _COMMON_PASSWORDS and len(value) >= 4:
        return True
    if strength == "bare":
        return len(value) >= 4 and (shaped or (has_digit and len(value) >= 6))
    if strength == "shape":
        return len(value) >= 4 and (shaped or (has_digit and len(value) >= 6))
    if has_digit or not value.isalnum() or any(c.isupper() for c in value[1:]):
        return True
    if strength in ("strong", "pair"):
        return len(value) >= 3
    # "linked": a dictionary word is a password unless it reads as a description of one.
    if len(value) < 4 or lowered in _COMMON_WORDS:
        return False
    if _CYRILLIC_RE.search(value):
        return not _RU_PROSE_RE.search(lowered)
    return value.isascii() and not re.search(r"(?:ed|ly|ing|ful|ous|ble)$", lowered)
