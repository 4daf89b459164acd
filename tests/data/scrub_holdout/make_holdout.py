"""Generate the held-out scrub corpus: planted secrets in phrasings the scrubber was not tuned on.

A second corpus, built by a different method than tests/data/make_scrub_corpus.py so that its
recall says how the scrubber generalizes:

- structured values come from Faker's locale providers (phones as each locale writes them,
  cards of every scheme, IBANs of many countries, e-mails), not from libphonenumber examples;
- passwords, codes and tokens are planted by composing independent parts (a chat opener, a
  cue written in one of several registers, a connector, the value, a tail), with cue lists
  written separately from the scrubber's keyword lists and never edited to make it pass;
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

OPENERS_RU = [
    "",
    "",
    "слушай, ",
    "короче ",
    "ну вот, ",
    "напоминаю: ",
    "держи ",
    "сорян, ",
    "кстати ",
]
OPENERS_EN = ["", "", "hey, ", "ok so ", "fyi ", "here you go: ", "btw ", "quick one - "]
TAILS_RU = ["", "", " только никому", ", не потеряй", " ))", " если что", ". запиши"]
TAILS_EN = ["", "", " thx", ", don't share it", " :)", " asap", ". write it down"]


def pick(items: list[str]) -> str:
    return rng.choice(items)


def pick_opener(ru: bool) -> str:
    return pick(OPENERS_RU if ru else OPENERS_EN)


def pick_tail(ru: bool) -> str:
    return pick(TAILS_RU if ru else TAILS_EN)


def framed(frame: str, value: str, ru: bool) -> str:
    """A frame with an opener, the value and a tail put in (picked in that order)."""
    return frame.format(o=pick_opener(ru), v=value, t=pick_tail(ru))


def secret_line(text: str, kind: str, value: str, family: str, ru: bool) -> dict[str, str]:
    return {
        "text": text,
        "kind": kind,
        "value": value,
        "family": family,
        "lang": "ru" if ru else "en",
    }


# --- values ---------------------------------------------------------------------------------
WORDS_RU_LAT = ["solnyshko", "kotenok", "malina", "zvezda", "lapochka", "medved", "rybka"]
WORDS_EN = ["bluebird", "marigold", "pancake", "thunder", "voyager", "whiskey", "snowfall"]
PATTERNS = [
    "qwerty",
    "1q2w3e4r",
    "zaq12wsx",
    "123456789",
    "asdfgh",
    "qazwsx",
    "11111111",
    "1qaz2wsx",
]


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
    base = pick(WORDS_EN + WORDS_RU_LAT)
    base = base.capitalize() if rng.random() < 0.6 else base
    return base + pick(["!", "@", "#", "_", ""]) + str(rng.randint(1, 2025))


def dictionary_password() -> str:
    return pick(WORDS_EN + WORDS_RU_LAT + ["ромашка", "лисичка", "чебурашка"])


def otp() -> str:
    n = pick(["4", "5", "6", "6", "6", "8"])
    digits = "".join(rng.choice(string.digits) for _ in range(int(n)))
    if n == "6" and rng.random() < 0.25:
        return digits[:3] + pick(["-", " "]) + digits[3:]
    return digits


# --- password / code families ---------------------------------------------------------------
PW_WORDS_RU = [
    "пароль",
    "пароли",
    "пароля",
    "паролем",
    "паролик",
    "парольчик",
    "пароль-то",
    "пасс",
    "пассворд",
    "пасворд",
    "пэсворд",
    "парольку",
    "паролька",
    "пароль от вайфая",
    "пароль от почты",
    "пароль от инсты",
    "пароль на вход",
    "пароль к роутеру",
]
PW_WORDS_EN = [
    "password",
    "pass",
    "passwd",
    "pwd",
    "pw",
    "passphrase",
    "wifi password",
    "the password",
    "login password",
    "pword",
]
PW_CONNECT = [": ", " - ", " — ", " ", " = ", ": ", " это ", " is ", ":  ", " -> "]
CODE_WORDS_RU = [
    "код",
    "кодик",
    "код из смс",
    "смс-код",
    "код подтверждения",
    "одноразовый код",
    "пин",
    "пин-код",
    "код для входа",
    "проверочный код",
    "код с смс",
]
CODE_WORDS_EN = [
    "code",
    "verification code",
    "OTP",
    "2FA code",
    "PIN",
    "sms code",
    "one-time code",
    "login code",
    "security code",
]
LOGIN_CUES = [
    "вход",
    "вход:",
    "логин/пароль",
    "login",
    "данные для входа",
    "для входа",
    "креды",
    "доступ к серверу",
    "sign in",
    "login details",
    "credentials",
]
USERS = ["ivanov", "olga.k", "admin", "petrov77", "m.sidorova", "alex_2001", "root", "anna.b"]


def password_line() -> dict[str, str]:
    family = pick(
        ["inflected", "cross_language", "pair", "before", "dictionary", "pattern", "plain"]
    )
    ru = rng.random() < 0.6
    value = mixed_password()
    if family == "dictionary":
        value = dictionary_password()
    elif family == "pattern":
        value = pick(PATTERNS)
    if family == "pair":
        user = pick(USERS)
        sep = pick([" / ", " ", ":", " | ", "  ", ", пароль ", " pass "])
        text = f"{pick_opener(ru)}{pick(LOGIN_CUES)} {user}{sep}{value}"
    elif family == "before":
        tail = pick(
            [
                " — это пароль",
                " это пароль от вайфая",
                " is the password",
                " is my wifi pass",
                " - новый пароль",
                " (пароль)",
                " is the new passwd",
            ]
        )
        text = f"{pick_opener(ru)}{value}{tail}"
    else:
        if family == "cross_language":
            ru = not ru
            kw = pick(PW_WORDS_EN) if ru else pick(PW_WORDS_RU)
        elif family == "inflected":
            kw = pick(PW_WORDS_RU[1:]) if ru else pick(PW_WORDS_EN[1:])
        else:
            kw = pick(PW_WORDS_RU) if ru else pick(PW_WORDS_EN)
        frame_ru = [
            "{o}{kw}{c}{v}{t}",
            "{o}вот {kw}{c}{v}{t}",
            "{o}новый {kw}{c}{v}{t}",
            "{o}{kw} сменил{c}{v}{t}",
        ]
        frame_en = [
            "{o}{kw}{c}{v}{t}",
            "{o}my {kw}{c}{v}{t}",
            "{o}new {kw}{c}{v}{t}",
            "{o}{kw} for the router{c}{v}{t}",
        ]
        frame = pick(frame_ru if ru else frame_en)
        text = frame.format(
            o=pick_opener(ru),
            kw=kw,
            c=pick(PW_CONNECT),
            v=value,
            t=pick_tail(ru),
        )
    return secret_line(text, "PASSWORD", value, family, ru)


def code_line() -> dict[str, str]:
    family = pick(["after", "after", "before", "cross_language", "inflected"])
    ru = rng.random() < 0.6
    value = otp()
    if family == "before":
        tail = pick(
            [
                " is your verification code",
                " — ваш код для входа",
                " is your Telegram code",
                " - код подтверждения",
                " это код из смс",
                " is your one-time code. Do not share",
                " — одноразовый пароль",
            ]
        )
        text = f"{pick_opener(ru)}{value}{tail}"
    else:
        if family == "cross_language":
            ru = not ru
            kw = pick(CODE_WORDS_EN) if ru else pick(CODE_WORDS_RU)
        elif family == "inflected":
            kw = pick(["кодик", "кодом", "коды", "пинкод", "пин-кодик", "смску с кодом", "codes"])
        else:
            kw = pick(CODE_WORDS_RU) if ru else pick(CODE_WORDS_EN)
        connect = pick([": ", " ", " - ", " — ", " это ", " is ", ":"])
        opener, tail = pick_opener(ru), pick_tail(ru)
        text = f"{opener}{kw}{connect}{value}{tail}"
    return secret_line(text, "CODE", value, family, ru)


def token_line() -> dict[str, str]:
    value = random_token(rng.randint(8, 14))
    ru = rng.random() < 0.5
    frame = pick(
        [
            "{o}{v}{t}",
            "{o}вставь вот это {v}{t}",
            "{o}на, {v}{t}",
            "{o}try {v}{t}",
            "{o}{v} — вот{t}",
            "{o}use {v} then{t}",
        ]
    )
    text = framed(frame, value, ru)
    return {
        "text": text,
        "kind": "TOKEN",
        "value": value,
        "family": "random",
        "lang": "ru" if ru else "en",
    }


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
    frame = pick(
        ["{o}мой номер {v}{t}", "{o}звони на {v}{t}", "{o}{v}{t}", "{o}тел. {v}{t}"]
        if ru
        else [
            "{o}call me at {v}{t}",
            "{o}{v}{t}",
            "{o}my number is {v}{t}",
            "{o}ring {v} tomorrow{t}",
        ]
    )
    text = framed(frame, value, ru)
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
    frame = pick(
        ["{o}{v}{t}", "{o}вот: {v}{t}", "{o}кидай на {v}{t}", "{o}реквизиты {v}{t}"]
        if ru
        else ["{o}{v}{t}", "{o}send it to {v}{t}", "{o}details: {v}{t}"]
    )
    text = framed(frame, value, ru)
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
