"""Machine-made secrets: API keys and tokens, private keys, credential URLs, e-mail addresses,
and random-looking strings wherever they stand."""

from __future__ import annotations

import re

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

from twin.prepare.scrub.common import Span, overlaps

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
# A random-looking word of 8+ letters and digits standing alone ("Kx7pQ2zRw"): not part of a
# URL, path, address, mention or hashtag.
_SHORT_RANDOM_RE = re.compile(r"(?<![\w@#/.:\-+=&%~])[A-Za-z0-9]{8,64}(?![\w@/\-+=&%]|\.\w)")
_DIGIT_RE = re.compile(r"[0-9]")
_CLASS_SWITCH_RE = re.compile(r"[a-z](?=[A-Z0-9])|[A-Z](?=[a-z0-9])|[0-9](?=[A-Za-z])")


def find_emails(text: str, spans: list[Span]) -> None:
    """Add the e-mail addresses of `text`, plain or spelled out."""
    if "@" in text:
        spans.extend(Span(m.start(), m.end(), "EMAIL") for m in _EMAIL_RE.finditer(text))
    if _may_hide_email(text) and _EMAIL_OBFUSCATED_GATE.search(text):
        spans.extend(Span(m.start(), m.end(), "EMAIL") for m in _EMAIL_OBFUSCATED_RE.finditer(text))


def find_urls(text: str, spans: list[Span]) -> list[tuple[int, int]]:
    """Add the URLs that carry credentials; return the spans of all URLs (sorted)."""
    url_spans: list[tuple[int, int]] = []
    if "://" not in text and "www." not in text:
        return url_spans
    for m in _URL_RE.finditer(text):
        url = m.group().rstrip(_URL_TRAILING)
        start, end = m.start(), m.start() + len(url)
        url_spans.append((start, end))
        if _URL_USERINFO_RE.match(url) or any(
            value and _URL_SECRET_PARAM_RE.search(name)
            for name, value in _URL_PARAM_RE.findall(url)
        ):
            spans.append(Span(start, end, "URL_SECRET"))
    return url_spans


def find_keys(text: str, url_spans: list[tuple[int, int]], spans: list[Span]) -> None:
    """Add private key blocks, known key formats and long random-looking tokens."""
    if "-----BEGIN" in text:
        spans.extend(Span(m.start(), m.end(), "SECRET") for m in _PRIVATE_KEY_RE.finditer(text))
    if len(text) < 8:
        return
    if _DIGIT_RE.search(text):  # a random-looking word always holds a digit
        for m in _SHORT_RANDOM_RE.finditer(text):
            if _looks_random_word(m.group()) and not overlaps(url_spans, m.start(), m.end()):
                spans.append(Span(m.start(), m.end(), "SECRET"))
    if len(text) < 16 or not _LONG_TOKEN_RE.search(text):
        return
    plugin_budget = _PLUGIN_MAX_TOKENS
    for m in _LONG_TOKEN_RE.finditer(text):
        # "Bearer <token>" has its keyword just before the token.
        for key in _KEY_RE.finditer(text, max(0, m.start() - 8), m.end()):
            spans.append(Span(key.start(), key.end(), "SECRET"))
        token = m.group()
        plugin_budget -= 1
        if (
            plugin_budget < 0
            or len(token) > _PLUGIN_MAX_TOKEN
            or overlaps(url_spans, m.start(), m.start() + 1)
            or not _MAY_BE_KEY_RE.search(token)
        ):
            continue
        for plugin in _PLUGINS:
            for secret in plugin.analyze_string(token):
                offset = token.find(secret) if secret else -1
                if offset >= 0:
                    start = m.start() + offset
                    spans.append(Span(start, start + len(secret), "SECRET"))
        for run in _RANDOM_RUN_RE.finditer(token):
            if _looks_random(run.group()):
                spans.append(Span(m.start() + run.start(), m.start() + run.end(), "SECRET"))


def find_key_assignments(text: str, positions: list[int], spans: list[Span]) -> None:
    """Add the values of ``key: <value>`` assignments whose keyword starts at `positions`."""
    for pos in positions:
        m = _KEY_ASSIGNMENT_RE.match(text, pos)
        if m:
            value = m.group("v").rstrip(".,:")
            if looks_like_key(value):
                spans.append(Span(m.start("v"), m.start("v") + len(value), "SECRET"))


def _may_hide_email(text: str) -> bool:
    # Cheap substring tests before the spelled-out e-mail pattern ("ivan [at] mail [dot] ru").
    lowered = text.lower()
    return "at" in lowered and (
        "dot" in lowered
        or "точк" in lowered
        or "собак" in lowered
        or any(c in text for c in "[({<")
    )


def looks_like_key(value: str) -> bool:
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


def _looks_random_word(word: str) -> bool:
    """A word of letters and digits that no one would type as prose, a name or a model number.

    Random base62 text mixes all three classes and switches between them every two or three
    characters; words, names and product codes ("iPhone15", "Ivan1990", "SHA256") are made of
    runs of one class.
    """
    if word.isdigit() or word.isalpha() or word.islower() or word.isupper():
        return False
    if not any(c.isdigit() for c in word):
        return False
    if sum(len(m) for m in _WORDLIKE_RE.findall(word)) * 2 > len(word):
        return False
    return len(_CLASS_SWITCH_RE.findall(word)) * 3 >= len(word)
