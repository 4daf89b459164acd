"""Generate the held-out scrub corpus: planted secrets in phrasings the scrubber was not tuned on.

A second corpus, built by a different method than tests/data/make_scrub_corpus.py so that its
recall says how the scrubber generalizes:

- structured values come from Faker's locale providers (phones as each locale writes them,
  cards of every scheme, IBANs of many countries, e-mails), not from libphonenumber examples;
- passwords, codes and tokens are planted by composing independent parts (a chat opener, a
  cue written in one of several registers, a connector, the value, a tail), with cue lists
  written separately from the scrubber's keyword lists and never edited to make it pass (the
  parts are in phrases.json);
- clean lines are real human-written text: the Russian translations and English originals of
  the gettext catalogs shipped with the operating system (/usr/share/locale/ru), filtered
  to prose (no format strings, options or markup).

Each line of holdout.jsonl is {"text", "kind", "value", "family", "lang"}: the secret
planted, its type and the family of phrasing. clean.jsonl has {"text", "lang"}.
Keep both files out of tuning: rules are built on the other corpus and on unit tests.
Run from the repository root: python tests/data/scrub_holdout/make_holdout.py
"""

from __future__ import annotations

import gettext
import json
import random
import re
import string
from pathlib import Path

import phonenumbers
from faker import Faker

HERE = Path(__file__).parent
rng = random.Random(7_2026_11)

LOCALES = {"ru_RU": "RU", "uk_UA": "UA", "en_US": "US", "en_GB": "GB", "pl_PL": "PL", "de_DE": "DE"}
FAKERS = {loc: Faker(loc) for loc in LOCALES}
for i, f in enumerate(FAKERS.values()):
    f.seed_instance(1000 + i)

PHRASES = json.loads((HERE / "phrases.json").read_text(encoding="utf-8"))
"""The parts lines are composed of: openers, tails, cues, connectors and frames per language."""
PASSWORD = PHRASES["password"]
CODE = PHRASES["code"]


def pick(items: list[str]) -> str:
    return rng.choice(items)


def lang(ru: bool) -> str:
    return "ru" if ru else "en"


def pick_opener(ru: bool) -> str:
    return pick(PHRASES["openers"][lang(ru)])


def pick_tail(ru: bool) -> str:
    return pick(PHRASES["tails"][lang(ru)])


def framed(frame: str, value: str, ru: bool) -> str:
    """A frame with an opener, the value and a tail put in (picked in that order)."""
    return frame.format(o=pick_opener(ru), v=value, t=pick_tail(ru))


def said_after(value: str, ru: bool, tails: list[str]) -> str:
    """The value first, then what it is (the tail picked before the opener)."""
    tail = pick(tails)
    return f"{pick_opener(ru)}{value}{tail}"


def cue(
    family: str, ru: bool, cues: dict[str, list[str]], inflected: list[str]
) -> tuple[str, bool]:
    """A cue word for the family, and whether the line is Russian: ``cross_language`` writes
    the line in the other language with a cue in its own, ``inflected`` picks from
    ``inflected``."""
    if family == "cross_language":
        ru = not ru
        return pick(cues["en"] if ru else cues["ru"]), ru
    if family == "inflected":
        return pick(inflected), ru
    return pick(cues[lang(ru)]), ru


def secret_line(text: str, kind: str, value: str, family: str, ru: bool) -> dict[str, str]:
    return {"text": text, "kind": kind, "value": value, "family": family, "lang": lang(ru)}


# --- values ---------------------------------------------------------------------------------
def random_token(n: int) -> str:
    while True:
        s = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))
        if (
            any(c.isupper() for c in s)
            and any(c.islower() for c in s)
            and any(c.isdigit() for c in s)
        ):
            return s


def mixed_password() -> str:
    base = pick(PASSWORD["words"]["en"] + PASSWORD["words"]["ru_latin"])
    base = base.capitalize() if rng.random() < 0.6 else base
    return base + pick(PASSWORD["symbols"]) + str(rng.randint(1, 2025))


def dictionary_password() -> str:
    words = PASSWORD["words"]
    return pick(words["en"] + words["ru_latin"] + words["ru"])


def otp() -> str:
    n = pick(["4", "5", "6", "6", "6", "8"])
    digits = "".join(rng.choice(string.digits) for _ in range(int(n)))
    if n == "6" and rng.random() < 0.25:
        return digits[:3] + pick(["-", " "]) + digits[3:]
    return digits


# --- password / code families ---------------------------------------------------------------
def password_line() -> dict[str, str]:
    family = pick(PASSWORD["families"])
    ru = rng.random() < 0.6
    value = mixed_password()
    if family == "dictionary":
        value = dictionary_password()
    elif family == "pattern":
        value = pick(PASSWORD["patterns"])
    if family == "pair":
        user = pick(PASSWORD["users"])
        sep = pick(PASSWORD["pair_separators"])
        text = f"{pick_opener(ru)}{pick(PASSWORD['login_cues'])} {user}{sep}{value}"
    elif family == "before":
        text = said_after(value, ru, PASSWORD["said_after"])
    else:
        cues = PASSWORD["cues"]
        inflected = cues[lang(ru)][1:]  # any form but the first, the plain word
        kw, ru = cue(family, ru, cues, inflected)
        text = pick(PASSWORD["frames"][lang(ru)]).format(
            o=pick_opener(ru),
            kw=kw,
            c=pick(PASSWORD["connectors"]),
            v=value,
            t=pick_tail(ru),
        )
    return secret_line(text, "PASSWORD", value, family, ru)


def code_line() -> dict[str, str]:
    family = pick(CODE["families"])
    ru = rng.random() < 0.6
    value = otp()
    if family == "before":
        text = said_after(value, ru, CODE["said_after"])
    else:
        kw, ru = cue(family, ru, CODE["cues"], CODE["inflected_cues"])
        connect = pick(CODE["connectors"])
        opener, tail = pick_opener(ru), pick_tail(ru)
        text = f"{opener}{kw}{connect}{value}{tail}"
    return secret_line(text, "CODE", value, family, ru)


def token_line() -> dict[str, str]:
    value = random_token(rng.randint(8, 14))
    ru = rng.random() < 0.5
    text = framed(pick(PHRASES["token_frames"]), value, ru)
    return secret_line(text, "TOKEN", value, "random", ru)


# --- structured values from Faker -----------------------------------------------------------
def phone_line() -> dict[str, str]:
    while True:
        loc = pick(list(LOCALES))
        value = FAKERS[loc].phone_number()
        if "x" in value or sum(c.isdigit() for c in value) < 9:
            continue
        try:
            number = phonenumbers.parse(value, LOCALES[loc])
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(number):  # a number someone could have
            break
    ru = loc in ("ru_RU", "uk_UA")
    text = framed(pick(PHRASES["phone_frames"][lang(ru)]), value, ru)
    return secret_line(text, "PHONE", value, loc, ru)


def structured_line() -> dict[str, str]:
    kind = pick(["EMAIL", "CARD", "IBAN", "IBAN_TYPO"])
    loc = pick(list(LOCALES))
    fake = FAKERS[loc]
    ru = loc in ("ru_RU", "uk_UA")
    if kind == "EMAIL":
        value = pick([fake.free_email(), fake.company_email(), fake.email()])
    elif kind == "CARD":
        value = fake.credit_card_number()
        if rng.random() < 0.4 and len(value) == 16:
            value = " ".join(value[i : i + 4] for i in range(0, 16, 4))
    else:
        value = FAKERS[pick(["de_DE", "en_GB", "pl_PL", "uk_UA", "de_DE"])].iban()
        if kind == "IBAN_TYPO":
            pos = rng.randrange(4, len(value))
            digit = value[pos]
            alphabet = string.digits if digit.isdigit() else string.ascii_uppercase
            value = value[:pos] + pick([c for c in alphabet if c != digit]) + value[pos + 1 :]
        if rng.random() < 0.4:
            value = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    text = framed(pick(PHRASES["structured_frames"][lang(ru)]), value, ru)
    return secret_line(text, kind, value, loc, ru)


# --- clean real text ------------------------------------------------------------------------
PROSE_RE = re.compile(r"^[^%<>{}\\$_=|/@#`\[\]]{20,160}$")


def clean_lines(limit_per_lang: int = 1500) -> list[dict[str, str]]:
    ru: set[str] = set()
    en: set[str] = set()
    for mo in sorted(Path("/usr/share/locale/ru/LC_MESSAGES").glob("*.mo")):
        with mo.open("rb") as fh:
            catalog = gettext.GNUTranslations(fh)._catalog  # type: ignore[attr-defined]
        for msgid, msgstr in catalog.items():
            if (
                not isinstance(msgid, str)
                or not msgid
                or "\x00" in msgid
                or not isinstance(msgstr, str)
            ):
                continue
            for text, bucket in ((msgid, en), (msgstr, ru)):
                text = " ".join(text.split())
                if PROSE_RE.match(text) and "--" not in text and len(text.split()) >= 4:
                    bucket.add(text)
    out = [{"text": t, "lang": "ru"} for t in rng.sample(sorted(ru), min(limit_per_lang, len(ru)))]
    out += [{"text": t, "lang": "en"} for t in rng.sample(sorted(en), min(limit_per_lang, len(en)))]
    return out


def main() -> None:
    makers = [
        (password_line, 400),
        (code_line, 300),
        (token_line, 150),
        (phone_line, 300),
        (structured_line, 400),
    ]
    planted = [maker() for maker, count in makers for _ in range(count)]
    with (HERE / "holdout.jsonl").open("w", encoding="utf-8") as out:
        for line in planted:
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    with (HERE / "clean.jsonl").open("w", encoding="utf-8") as out:
        for line in clean_lines():
            out.write(json.dumps(line, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
