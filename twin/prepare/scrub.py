"""Replace secrets and personal data in chat messages with typed placeholders.

A password that reaches the training set stays in the model's weights, so every message goes
through `Scrubber.scrub` before it becomes a sample. The module is pure: no I/O, no clock.

Placeholders (the text found is never kept, only its type):

=================  ===========================================================================
``<EMAIL>``        e-mail addresses, also ``ivan [at] mail [dot] ru`` style spellings
``<PHONE>``        phone numbers (libphonenumber, configurable regions; any ``+`` number)
``<CARD>``         payment cards: 13–19 digits, optional spaces/dashes, Luhn-valid, IIN 2–6;
                   also any 4×4-digit group layout (a mistyped card is still a card)
``<IBAN>``         IBANs with or without spaces, mod-97 valid
``<SECRET>``       API keys and tokens (detect-secrets plugins plus own rules: Telegram bot
                   tokens, JWTs, PEM private key blocks, ``sk-``, ``ghp_``, ``xox?-``, ``AKIA``,
                   ``AIza``, ``key: <random>`` assignments, long random-looking tokens)
``<PASSWORD>``     the value of a password stated in words (ru/uk/en/pl/de); the keyword stays
``<CODE>``         one-time / PIN / CVV codes next to their keyword, on either side
``<SEED>``         runs of 12 or more BIP39 English words
``<URL_SECRET>``   a whole URL that carries credentials (``user:pass@``) or a token-like query
                   or fragment parameter (``token``, ``key``, ``sig``, ``session``…). The whole
                   URL goes, because the rest of such a URL is usually just as identifying
``<BLOCKED>``      any string of the user's blocklist (case-insensitive)
=================  ===========================================================================

Detection runs on a normalized copy (invisible and bidi characters removed, then NFKC), so
look-alike or hidden characters cannot split a secret. A message where nothing is found is
returned exactly as given (apart from lone surrogates, which become U+FFFD); a message with a
finding is returned normalized, with placeholders. Scrubbing is idempotent: placeholders are
masked before detection and the result is re-scanned until nothing more is found.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector
from mnemonic import Mnemonic
from phonenumbers import Leniency, PhoneNumberMatcher
from pydantic import BaseModel, Field

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
_PRIORITY = {kind: rank for rank, kind in enumerate(PLACEHOLDER_TYPES)}
DEFAULT_REGIONS: tuple[str, ...] = ("RU", "UA", "US", "GB", "PL", "DE")

# --- normalization -------------------------------------------------------------------------
# Zero-width, bidi, soft hyphen, variation selectors, Hangul fillers, tag characters and C0
# controls: all invisible, all able to split a secret so that no rule sees it.
_INVISIBLE_RE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
    "\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0"
    "\U000e0000-\U000e007f]"
)
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_PLACEHOLDER_RE = re.compile("<(?:" + "|".join(PLACEHOLDER_TYPES) + ")>")


def normalize_for_detection(text: str) -> str:
    """Return the form of `text` the rules look at: invisible characters removed, then NFKC.

    Args:
        text: a message without lone surrogates.
    """
    if text.isascii():
        return _INVISIBLE_RE.sub("", text) if not text.isprintable() else text
    if _INVISIBLE_RE.search(text):
        text = _INVISIBLE_RE.sub("", text)
    if not unicodedata.is_normalized("NFKC", text):
        # NFKC can expand a character into an invisible one (rare); strip once more.
        text = _INVISIBLE_RE.sub("", unicodedata.normalize("NFKC", text))
    return text


# --- rules ---------------------------------------------------------------------------------
_EMAIL_RE = re.compile(
    # The look-behind keeps the scan linear: a local part starts only where a run starts.
    r"(?<![\w.%+\-])[\w.%+\-]{1,64}@(?:[\w\-]{1,63}\.){1,8}[^\W\d_]{2,24}(?![\w\-])"
)
_EMAIL_OBFUSCATED_RE = re.compile(
    r"(?<![\w.%+\-])[\w.%+\-]{1,64}\s*"
    r"(?:[\[({<]\s*(?:at|собака|собачка)\s*[\])}>]|\s(?:at|собака)\s)\s*"
    r"(?:[\w\-]{1,63}\s*(?:\.|[\[({<]\s*(?:dot|точка)\s*[\])}>]|\s(?:dot|точка)\s)\s*){1,4}"
    r"[^\W\d_]{2,24}(?![\w\-])",
    re.IGNORECASE,
)
_EMAIL_OBFUSCATED_GATE = re.compile(r"[\[({<]\s*(?:at|собака)|\b(?:dot|точка|собака)\b", re.I)

_URL_RE = re.compile(r"\b(?:(?:https?|ftp|wss?)://|www\.)[^\s<>\"'`\x00]+", re.IGNORECASE)
_URL_USERINFO_RE = re.compile(r"^[a-z]+://[^/?#@\s]*:[^/@\s]+@", re.IGNORECASE)
_URL_PARAM_RE = re.compile(r"[?&#;]([^=&#?;/]{1,64})=([^&#;]+)")
_URL_SECRET_PARAM_RE = re.compile(
    r"(?:^|[_\-.\[])(?:token|tokens|key|apikey|secret|pass|password|passwd|pwd|sig|signature|"
    r"auth|authorization|session|sessionid|sid|otp|jwt|code|credential|credentials|ticket|"
    r"hash|oauth_verifier)(?:$|[_\-.\]])",
    re.IGNORECASE,
)
_URL_TRAILING = ".,;:!?)]}»"

_PRIVATE_KEY_RE = re.compile(
    r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    r"(?:.*?-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|.*)",
    re.DOTALL,
)
_KEY_RE = re.compile(
    "|".join(
        (
            r"\b\d{8,10}:[A-Za-z0-9_\-]{35}(?![A-Za-z0-9_\-])",  # Telegram bot token
            r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*",  # JWT
            r"\bsk-(?:proj-|ant-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}",  # OpenAI, Anthropic
            r"\b[rsp]k_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe
            r"\bgh[pousr]_[A-Za-z0-9]{30,}|\bgithub_pat_[A-Za-z0-9_]{30,}",  # GitHub
            r"\bxox[abposr]-[A-Za-z0-9\-]{10,}|\bxapp-[A-Za-z0-9\-]{10,}",  # Slack
            r"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b",  # AWS key id
            r"\bAIza[0-9A-Za-z_\-]{35}",  # Google API key
            r"\bya29\.[0-9A-Za-z_\-]{20,}",  # Google OAuth access token
            r"\bglpat-[A-Za-z0-9_\-]{20,}|\bhf_[A-Za-z0-9]{30,}|\bnpm_[A-Za-z0-9]{36}",
            r"\b[Bb]earer\s+[A-Za-z0-9._~+/\-]{16,}=*",
        )
    )
)
# `key: <value>` style assignments; the value must look machine-made (see _looks_like_key).
_KEY_ASSIGNMENT_RE = re.compile(
    r"\b(?:api[\s_\-]?key|apikey|api[\s_\-]?token|secret(?:[\s_\-]?key)?|access[\s_\-]?key|"
    r"client[\s_\-]?secret|auth[\s_\-]?token|access[\s_\-]?token|token|токен\w{0,3}|"
    r"ключ(?:\s+api)?|api[\s\-]?ключ\w{0,3}|klucz(?:\s+api)?|schlüssel)"
    r"(?:\s+(?:от|для|for|do|für|бота|bot)\s+\S{1,30})?"
    r"\s*(?:[:=]|\bis\b|это|це|—|-)\s*[\"'«]?(?P<v>[A-Za-z0-9_\-+/=.:]{12,})",
    re.IGNORECASE,
)
_LONG_TOKEN_RE = re.compile(r"\S{16,}")
# Every key the plugins know has a digit and a run of 8+ key characters; prose tokens do not.
_MAY_BE_KEY_RE = re.compile(r"[0-9].*[A-Za-z0-9_\-+/=]{8}|[A-Za-z0-9_\-+/=]{8}.*[0-9]")
_RANDOM_RUN_RE = re.compile(r"(?<![A-Za-z0-9_\-+/=])[A-Za-z0-9_\-+/=]{20,}(?![A-Za-z0-9_\-+/=])")
_WORDLIKE_RE = re.compile(r"[A-Z]?[a-z]{4,}|[A-Z]{4,}")
_HEX_RE = re.compile(r"[0-9a-fA-F\-]+")
_ENTROPY = Base64HighEntropyString()
_PLUGINS: tuple[RegexBasedDetector, ...] = (
    AWSKeyDetector(),
    AzureStorageKeyDetector(),
    BasicAuthDetector(),
    DiscordBotTokenDetector(),
    GitHubTokenDetector(),
    GitLabTokenDetector(),
    JwtTokenDetector(),
    MailchimpDetector(),
    NpmDetector(),
    OpenAIDetector(),
    PypiTokenDetector(),
    SendGridDetector(),
    SlackDetector(),
    StripeDetector(),
    TelegramBotTokenDetector(),
    TwilioKeyDetector(),
)
# Some plugin regexes use `.+`; bounding the input keeps them linear on huge tokens, and a
# per-message budget keeps a pasted log from taking minutes (own rules still see every token).
_PLUGIN_MAX_TOKEN = 2048
_PLUGIN_MAX_TOKENS = 500
# Texts up to this long are remembered with their result, up to this many at a time.
_SHORT_CACHE_CHARS = 32
_SHORT_CACHE_ENTRIES = 100_000

_CARD_MAX_GROUPS = 8
_CARD_RUN_RE = re.compile(r"(?<![0-9+])[0-9]+(?:[ \-][0-9]+)*(?![0-9])")
_IBAN_RE = re.compile(r"\b[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]){11,32}\b")
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
_DIGIT_RE = re.compile(r"[0-9]")
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
# Above this many phone-library calls in one message, phone-shaped spans are redacted
# without asking the library: over-redact rather than stall on a megabyte of digits.
_MAX_PHONE_LOOKUPS = 64

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

_SEED_WORD_RE = re.compile(r"[a-z]+")
# Between two words of a seed phrase: spaces, commas, dashes, or list numbering ("1. ", "2)").
_SEED_GAP_RE = re.compile(r"[\s,;.\-]*(?:[0-9]{1,2}[.):]?[\s,;.\-]*)?")
_BIP39_WORDS = frozenset(Mnemonic("english").wordlist)
# BIP39 words that are also everyday English; a run made mostly of these is a sentence.
_COMMON_BIP39_TEXT = """
    about above across act action add address after again age agree all alone also always
    among another any area arm around art ask auto away baby back bag ball bar base basic be
    because before begin behind believe below best better between big bird black blue boat
    body book both box boy bring brother build business busy but buy call can car card care
    carry case cat catch cause chair change check child city class clean clever close cloud
    come cook cool copy correct cost could country course cover crazy cup custom cute day deal
    dinner dog door double dream drink drive during early easy eat eight either else end enjoy
    enough enter even evening ever every exact example exit face fact fall family fan feel few
    file film find fine fire first fish five fix floor follow food foot for force forget four
    friend from front fun funny future game garden gas get gift girl give glad glass goal good
    great green group grow guess half hand happy hard have head hello help here high hold home
    hope hour house how hundred idea image into jacket job join joke just keep key kid kind
    kitchen know large last late later laugh learn leave left legal lesson letter level life
    light like list little live long lot love lucky lunch mail make man many match matter may
    maybe mean meet member message middle minute miss moment money month more morning mother
    move movie much music must name near need never news next nice night nine noise normal
    north nose not note nothing now number object off office often old once one only open
    option order other outside over own page paper parent park part party pass people perfect
    phone photo picture place plan play please point post price problem put question quick
    quite rain random rather reach ready real reason recall record remember rent report rest
    rich ride right room run sad safe same save say school screen sea season seat second see
    seed sell send service seven share she shoe shop short shoulder show sick side sign simple
    since sister six size sleep slow small smile snow social soon sorry sound soup south space
    speak special spend sport spot spring stay still stock stop story street strong student
    stuff such sugar summer sun sure surprise system table talk task taxi teach team tell ten
    term test text thank that then there they thing this three ticket time tired today
    together tomorrow tonight top total tourist town track trade train travel tree trip true
    try turn twelve twenty two type under until upon use usual very video view visit voice
    wait walk wall want warm wash water way wear weather web wedding week weekend what when
    where which while white whole why wide wife will win window winter wish with woman wonder
    word work world worry write wrong yard year yellow you young"""
_COMMON_BIP39 = frozenset(_COMMON_BIP39_TEXT.split()) & _BIP39_WORDS


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


class _Span(NamedTuple):
    start: int
    end: int
    kind: str


_MAX_PASSES = 16
"""Detection passes before a message that keeps yielding new matches is redacted whole."""


class Scrubber:
    """Compiled rules, built once and reused for every message.

    Args:
        config: regions and blocklist; the defaults when omitted.
    """

    def __init__(self, config: ScrubConfig | None = None) -> None:
        self.config = config or ScrubConfig()
        self._regions = [region.upper() for region in self.config.regions] or ["US"]
        entries = {
            normalize_for_detection(_fix_surrogates(e)).strip() for e in self.config.blocklist
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
        # Phone lookups are the slowest rule; chats repeat the same numbers, so remember them.
        self._phone_cache: dict[str, tuple[tuple[int, int], ...]] = {}
        # Chats repeat short messages ("ok", "да", "😂") thousands of times: scrub each once.
        self._short_cache: dict[str, tuple[str, tuple[str, ...]]] = {}

    def scrub(self, text: str) -> ScrubResult:
        """Replace every secret or personal datum in `text` with its placeholder.

        Args:
            text: one chat message, any length, any unicode.
        """
        cached = self._short_cache.get(text)
        if cached is not None:
            return ScrubResult(text=cached[0], found=list(cached[1]))
        result = self._scrub(text)
        if len(text) <= _SHORT_CACHE_CHARS:
            if len(self._short_cache) >= _SHORT_CACHE_ENTRIES:
                self._short_cache.clear()
            self._short_cache[text] = (result.text, tuple(result.found))
        return result

    def _scrub(self, text: str) -> ScrubResult:
        text = _fix_surrogates(text)
        current = normalize_for_detection(text)
        found: set[str] = set()
        # Replacing can expose a new match ("код 4821код 4821": the second code only has its
        # boundary once the first is a placeholder); repeat until stable.
        for _ in range(_MAX_PASSES):
            spans = self._detect(current)
            if not spans:
                break
            current = _apply(current, spans, found)
        else:
            if self._detect(current):
                # Still finding more after many passes: a pathological chain. Over-redact the
                # whole message rather than leak its tail (and stay idempotent).
                current = "<SECRET>"
                found.add("SECRET")
        if not found:
            return ScrubResult(text=text, found=[])
        return ScrubResult(text=current, found=sorted(found, key=_PRIORITY.__getitem__))

    # -- detection ------------------------------------------------------------------------
    def _detect(self, text: str) -> list[_Span]:
        """Find all spans to replace in normalized `text`; placeholders are never touched."""
        if "<" in text:
            # Same length, so offsets stay valid; NUL never matches any rule.
            text = _PLACEHOLDER_RE.sub(lambda m: "\x00" * len(m.group()), text)
        spans: list[_Span] = []
        url_spans = self._urls(text, spans) if ("://" in text or "www." in text) else []
        if "-----BEGIN" in text:
            spans.extend(
                _Span(m.start(), m.end(), "SECRET") for m in _PRIVATE_KEY_RE.finditer(text)
            )
        if len(text) >= 16 and _LONG_TOKEN_RE.search(text):
            self._keys(text, url_spans, spans)
        if "@" in text:
            spans.extend(_Span(m.start(), m.end(), "EMAIL") for m in _EMAIL_RE.finditer(text))
        if _may_hide_email(text) and _EMAIL_OBFUSCATED_GATE.search(text):
            spans.extend(
                _Span(m.start(), m.end(), "EMAIL") for m in _EMAIL_OBFUSCATED_RE.finditer(text)
            )
        keywords = _keyword_positions(text)
        if keywords:
            self._keywords(text, keywords, spans)
        # Most messages hold no digit at all: one search settles them before any counting.
        if _DIGIT_RE.search(text) and _count_digits(text) >= 7:
            self._numbers(text, spans)
        if len(text) >= self.config.seed_min_words * 4 and self._may_hold_seed(text):
            self._seeds(text, spans)
        if self._blocklist_re is not None:
            spans.extend(
                _Span(m.start(), m.end(), "BLOCKED") for m in self._blocklist_re.finditer(text)
            )
        return spans

    def _urls(self, text: str, spans: list[_Span]) -> list[tuple[int, int]]:
        url_spans = []
        for m in _URL_RE.finditer(text):
            url = m.group().rstrip(_URL_TRAILING)
            start, end = m.start(), m.start() + len(url)
            url_spans.append((start, end))
            if _URL_USERINFO_RE.match(url) or any(
                value and _URL_SECRET_PARAM_RE.search(name)
                for name, value in _URL_PARAM_RE.findall(url)
            ):
                spans.append(_Span(start, end, "URL_SECRET"))
        return url_spans

    def _keys(self, text: str, url_spans: list[tuple[int, int]], spans: list[_Span]) -> None:
        plugin_budget = _PLUGIN_MAX_TOKENS
        for m in _LONG_TOKEN_RE.finditer(text):
            # "Bearer <token>" has its keyword just before the token.
            for key in _KEY_RE.finditer(text, max(0, m.start() - 8), m.end()):
                spans.append(_Span(key.start(), key.end(), "SECRET"))
            token = m.group()
            plugin_budget -= 1
            if (
                plugin_budget < 0
                or len(token) > _PLUGIN_MAX_TOKEN
                or _overlaps(url_spans, m.start(), m.start() + 1)
                or not _MAY_BE_KEY_RE.search(token)
            ):
                continue
            for plugin in _PLUGINS:
                for secret in plugin.analyze_string(token):
                    offset = token.find(secret) if secret else -1
                    if offset >= 0:
                        start = m.start() + offset
                        spans.append(_Span(start, start + len(secret), "SECRET"))
            for run in _RANDOM_RUN_RE.finditer(token):
                if _looks_random(run.group()):
                    spans.append(_Span(m.start() + run.start(), m.start() + run.end(), "SECRET"))

    def _keywords(self, text: str, keywords: dict[str, list[int]], spans: list[_Span]) -> None:
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
                spans.append(_Span(value[0], value[1], "PASSWORD"))
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
                    spans.append(_Span(m.start("v"), m.end("v"), "CODE"))
        for pos in keywords.get("key", ()):
            m = _KEY_ASSIGNMENT_RE.match(text, pos)
            if m:
                value = m.group("v").rstrip(".,:")
                if _looks_like_key(value):
                    spans.append(_Span(m.start("v"), m.start("v") + len(value), "SECRET"))

    def _numbers(self, text: str, spans: list[_Span]) -> None:
        for m in _CARD_RUN_RE.finditer(text):
            for start, end in _find_cards(m.group()):
                spans.append(_Span(m.start() + start, m.start() + end, "CARD"))
        for m in _IBAN_RE.finditer(text):
            length = _iban_length(m.group())
            if length:
                spans.append(_Span(m.start(), m.start() + length, "IBAN"))
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
            if _overlaps(taken, m.start(), m.end()):
                continue
            if candidate in self._phone_cache or lookups < _MAX_PHONE_LOOKUPS:
                lookups += candidate not in self._phone_cache
                found = self._phone_spans(candidate)
            else:
                found = ((0, len(candidate)),) if digits >= 10 else ()
            spans.extend(_Span(m.start() + s, m.start() + e, "PHONE") for s, e in found)

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
        digits = sum(c.isdigit() for c in candidate)
        if not result and (
            (candidate.startswith("+") and digits >= 10)
            or (digits in (10, 11) and _PHONE_SHAPED_RE.search(candidate))
        ):
            # Numbers the library calls invalid but that are unmistakably written as phones.
            result = ((0, len(candidate)),)
        if len(self._phone_cache) > 100_000:
            self._phone_cache.clear()
        self._phone_cache[candidate] = result
        return result

    def _may_hold_seed(self, text: str) -> bool:
        # Cheap count before the exact scan: most long messages have few BIP39 words.
        # A word that strips to a BIP39 word is ASCII: counting those is a cheap upper bound.
        words = text.lower().split()
        if sum(map(str.isascii, words)) < self.config.seed_min_words:
            return False
        stripped = (w.strip(",.;:-()") for w in words)
        return sum(w in _BIP39_WORDS for w in stripped) >= self.config.seed_min_words

    def _seeds(self, text: str, spans: list[_Span]) -> None:
        lowered = _lower_same_length(text)
        run: list[re.Match[str]] = []
        for m in _SEED_WORD_RE.finditer(lowered):
            joined = bool(run) and _SEED_GAP_RE.fullmatch(lowered, run[-1].end(), m.start())
            if m.group() in _BIP39_WORDS and (joined or not run):
                run.append(m)
                continue
            self._flush_seed(run, spans)
            run = [m] if m.group() in _BIP39_WORDS else []
        self._flush_seed(run, spans)

    def _flush_seed(self, run: list[re.Match[str]], spans: list[_Span]) -> None:
        if len(run) < self.config.seed_min_words:
            return
        common = sum(m.group() in _COMMON_BIP39 for m in run)
        if common * 2 <= len(run):
            spans.append(_Span(run[0].start(), run[-1].end(), "SEED"))


def _overlaps(sorted_spans: list[tuple[int, int]], start: int, end: int) -> bool:
    """Whether [start, end) overlaps any of the sorted, non-nested spans."""
    i = bisect.bisect_right(sorted_spans, (start, 1 << 62))
    before = sorted_spans[i - 1] if i else None
    after = sorted_spans[i] if i < len(sorted_spans) else None
    return bool((before and before[1] > start) or (after and after[0] < end))


def _may_hide_email(text: str) -> bool:
    # Cheap substring tests before the spelled-out e-mail pattern ("ivan [at] mail [dot] ru").
    lowered = text.lower()
    return "at" in lowered and (
        "dot" in lowered
        or "точк" in lowered
        or "собак" in lowered
        or any(c in text for c in "[({<")
    )


def _keyword_positions(text: str) -> dict[str, list[int]]:
    """Start offsets of the words that begin with a known stem, by rule family."""
    found: dict[str, list[int]] = {}
    for m in _STEM_RE.finditer(_lower_same_length(text)):
        for family in _STEMS[m.group()]:
            found.setdefault(family, []).append(m.start())
    return found


def _lower_same_length(text: str) -> str:
    lowered = text.lower()
    if len(lowered) != len(text):  # "İ" and a few others grow when lowered; keep offsets valid
        lowered = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    return lowered


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


def _fix_surrogates(text: str) -> str:
    # Lone surrogates cannot be encoded as UTF-8; anything downstream would crash on them.
    if text.isascii():
        return text
    return _SURROGATE_RE.sub("\ufffd", text)


def _count_digits(text: str) -> int:
    return sum(map(text.count, "0123456789"))


def _apply(text: str, spans: list[_Span], found: set[str]) -> str:
    """Replace spans with placeholders; overlapping findings become one placeholder."""
    spans.sort(key=lambda s: (s.start, -s.end))
    merged: list[list[int | str]] = []  # [start, end, kind]
    for start, end, kind in spans:
        if merged and start < int(merged[-1][1]):
            last = merged[-1]
            last[1] = max(int(last[1]), end)
            if _PRIORITY[kind] < _PRIORITY[str(last[2])]:
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
    m: re.Match[str], spans: list[_Span], *, strong: bool, latin_is_enough: bool
) -> None:
    value = _group_value(m)
    if value and _looks_like_password(value[2], strong=strong, latin_is_enough=latin_is_enough):
        spans.append(_Span(value[0], value[1], "PASSWORD"))


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


def _looks_like_key(value: str) -> bool:
    has_digit = any(c.isdigit() for c in value)
    has_alpha = any(c.isalpha() for c in value)
    return has_digit and has_alpha and len(value) >= 12


def _looks_random(token: str) -> bool:
    """Long mixed-case alphanumeric runs that read like keys, not words, hashes or UUIDs."""
    if _HEX_RE.fullmatch(token):  # git hashes, UUIDs, checksums: not credentials
        return False
    upper = sum(c.isupper() for c in token)
    lower = sum(c.islower() for c in token)
    digits = sum(c.isdigit() for c in token)
    if upper < 3 or lower < 3 or digits < 2:
        return False
    # Identifiers and paths ("Base64HighEntropyString", "EleutherAI/pythia-160m") are made of
    # words; in a random base62 string letters rarely form word-like runs.
    wordy = sum(len(m) for m in _WORDLIKE_RE.findall(token))
    if wordy > 0.55 * len(token):
        return False
    return _ENTROPY.calculate_shannon_entropy(token) >= 3.8


def _char_class(c: str) -> int:
    return 0 if c.islower() else 1 if c.isupper() else 2 if c.isdigit() else 3


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
        if run[first] not in "23456":  # IIN: cards start with 2-6
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
            if len(digits) >= 13 and _luhn_ok(digits):
                candidates.append((first, end))
    chosen: list[tuple[int, int]] = []  # sorted, never overlapping
    for start, end in sorted(candidates, key=lambda span: (span[0] - span[1], span[0])):
        if not _overlaps(chosen, start, end):
            bisect.insort(chosen, (start, end))
    return chosen


def _iban_length(candidate: str) -> int:
    """Length of the valid IBAN at the start of `candidate` (spaces included), or 0."""
    compact = candidate.replace(" ", "").upper()
    expected = _IBAN_LENGTHS.get(compact[:2])
    lengths = [expected] if expected else [len(compact)]
    for length in lengths:
        if len(compact) < length or length < 15:
            continue
        iban = compact[:length]
        rearranged = iban[4:] + iban[:4]
        if int("".join(str(int(c, 36)) for c in rearranged)) % 97 != 1:
            continue
        # Map the compact length back onto the spaced candidate.
        seen = 0
        for pos, ch in enumerate(candidate):
            seen += ch != " "
            if seen == length:
                return pos + 1
    return 0


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
