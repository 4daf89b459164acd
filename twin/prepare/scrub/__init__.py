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

from twin.prepare.scrub.common import DEFAULT_REGIONS, PLACEHOLDER_TYPES, normalize_for_detection
from twin.prepare.scrub.scrubber import (
    Scrubber,
    ScrubConfig,
    ScrubReport,
    ScrubResult,
    scrub_text,
)

__all__ = [
    "DEFAULT_REGIONS",
    "PLACEHOLDER_TYPES",
    "ScrubConfig",
    "ScrubReport",
    "ScrubResult",
    "Scrubber",
    "normalize_for_detection",
    "scrub_text",
]
