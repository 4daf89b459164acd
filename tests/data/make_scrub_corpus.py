"""Generate tests/data/scrub_corpus.jsonl: synthetic chat lines with planted, fake secrets.

Every value is fake but valid in form (Luhn-valid cards, mod-97-valid IBANs, phone numbers
that libphonenumber accepts), so the scrubber is tested on what it must really catch. The lines
values are planted in, the clean lines and what clean lines are made of are in
scrub_corpus_phrases.json. Each line is {"text", "expected", "lang"}; `expected` lists the
placeholder types, empty for clean lines. Run from the repository root:
python tests/data/make_scrub_corpus.py
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import phonenumbers
from mnemonic import Mnemonic

OUT = Path(__file__).with_name("scrub_corpus.jsonl")
PHRASES = json.loads(
    Path(__file__).with_name("scrub_corpus_phrases.json").read_text(encoding="utf-8")
)
rng = random.Random(20240512)

NAMES: list[str] = PHRASES["names"]
SURNAMES: list[str] = PHRASES["surnames"]
DOMAINS: list[str] = PHRASES["domains"]
IBAN_FORMATS: dict[str, str] = PHRASES["iban_formats"]
PLANTED: dict[str, dict[str, list[str]]] = PHRASES["planted"]
"""Per kind of secret and language, the lines a value ``{v}`` is planted in."""
COUNTS: dict[str, int] = PHRASES["counts"]
"""Lines per kind of secret."""
CLEAN: list[str] = PHRASES["clean"]
"""Ordinary lines that look a little like secrets."""
CLEAN_WORDS: dict[str, list[str]] = PHRASES["clean_words"]
"""Per language, words that clean lines are strung from."""
NUMBERY: list[str] = PHRASES["numbery"]
"""Clean lines full of numbers (prices, times, dates, ids)."""


def email() -> str:
    sep = rng.choice([".", "_", "", "-"])
    local = (
        rng.choice(NAMES) + sep + rng.choice(SURNAMES) + rng.choice(["", str(rng.randint(1, 99))])
    )
    return f"{local}@{rng.choice(DOMAINS)}"


def phone() -> str:
    region = rng.choice(["RU", "UA", "US", "GB", "PL", "DE"])
    while True:
        example = phonenumbers.example_number_for_type(
            region, rng.choice([phonenumbers.PhoneNumberType.MOBILE, None])
        )
        if example is None:
            continue
        national = str(example.national_number)
        digits = national[:3] + "".join(rng.choice(string.digits) for _ in national[3:])
        number = phonenumbers.parse(digits, region)
        if phonenumbers.is_valid_number(number):
            break
    style = rng.choice(["intl", "national", "e164", "intl"])
    if style == "e164":
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if style == "national":
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def luhn_complete(prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def card() -> str:
    prefix, length = rng.choice(
        [
            ("4", 16),
            ("51", 16),
            ("55", 16),
            ("2200", 16),
            ("37", 15),
            ("6011", 16),
            ("4", 13),
            ("62", 19),
        ]
    )
    number = luhn_complete(prefix, length)
    sep = rng.choice([" ", "-", "", " "])
    if length == 15:
        return sep.join([number[:4], number[4:10], number[10:]])
    return sep.join(number[i : i + 4] for i in range(0, length, 4))


def iban() -> str:
    country = rng.choice(list(IBAN_FORMATS))
    bban = ""
    fmt = IBAN_FORMATS[country]
    i = 0
    while i < len(fmt):
        j = i
        while fmt[j].isdigit():
            j += 1
        count, kind = int(fmt[i:j]), fmt[j]
        alphabet = {
            "n": string.digits,
            "a": string.ascii_uppercase,
            "c": string.digits + string.ascii_uppercase,
        }[kind]
        bban += "".join(rng.choice(alphabet) for _ in range(count))
        i = j + 1
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(numeric) % 97
    compact = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        return compact
    return " ".join(compact[k : k + 4] for k in range(0, len(compact), 4))


def rand(alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


ALNUM = string.ascii_letters + string.digits


def key() -> str:
    return rng.choice(
        [
            lambda: f"{rng.randint(100000000, 9999999999)}:AA{rand(ALNUM + '_-', 33)}",
            lambda: "sk-" + rand(ALNUM, 48),
            lambda: "sk-proj-" + rand(ALNUM + "_-", 64),
            lambda: "ghp_" + rand(ALNUM, 36),
            lambda: (
                "xoxb-"
                + rand(string.digits, 12)
                + "-"
                + rand(string.digits, 12)
                + "-"
                + rand(ALNUM, 24)
            ),
            lambda: "AKIA" + rand(string.ascii_uppercase + string.digits, 16),
            lambda: "AIza" + rand(ALNUM + "_-", 35),
            lambda: "sk_live_" + rand(ALNUM, 24),
            lambda: (
                "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI"
                + rand(ALNUM, 20)
                + "In0."
                + rand(ALNUM + "_-", 43)
            ),
            lambda: "glpat-" + rand(ALNUM, 20),
            lambda: "hf_" + rand(ALNUM, 34),
        ]
    )()


PRIVATE_KEY = "-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"


def private_key() -> str:
    body = "\n".join(rand(ALNUM + "+/", 64) for _ in range(rng.randint(2, 5)))
    return PRIVATE_KEY.format(kind=rng.choice(["", "RSA ", "OPENSSH ", "EC "]), body=body)


def password() -> str:
    word = rng.choice(
        [
            "hunter",
            "qwerty",
            "sunshine",
            "dragon",
            "Kotik",
            "Sommer",
            "zima",
            "Lato",
            "monkey",
            "Slonik",
        ]
    )
    return word + rng.choice(
        [
            str(rng.randint(1, 9999)),
            "!" + str(rng.randint(10, 99)),
            "_" + str(rng.randint(1990, 2024)),
            "#1",
            "123",
        ]
    )


def code() -> str:
    n = rng.choice([4, 4, 5, 6, 6])
    digits = rand(string.digits, n)
    if n == 6 and rng.random() < 0.3:
        return (
            f"{digits[:3]}-{digits[3:]}"
            if rng.random() < 0.5
            else f"{digits[:2]}-{digits[2:4]}-{digits[4:]}"
        )
    return digits


def seed() -> str:
    words = Mnemonic("english").generate(strength=rng.choice([128, 128, 256]))
    return words if rng.random() < 0.8 else words.replace(" ", ", ")


def url_secret() -> str:
    host = rng.choice(["example.com", "api.service.io", "my-shop.ru", "panel.host.de"])
    return rng.choice(
        [
            lambda: f"https://{rng.choice(NAMES)}:{password()}@{host}/admin",
            lambda: f"https://{host}/reset?token={rand(ALNUM, 24)}",
            lambda: f"https://{host}/v1/data?api_key={rand(ALNUM, 32)}&limit=10",
            lambda: f"https://{host}/login#access_token={rand(ALNUM, 30)}&expires=3600",
            lambda: f"https://{host}/file.pdf?X-Amz-Signature={rand('0123456789abcdef', 64)}",
            lambda: f"https://{host}/s?session={rand(ALNUM, 20)}",
            lambda: f"ftp://admin:{password()}@{host}/",
        ]
    )()


MAKERS = {
    "EMAIL": email,
    "PHONE": phone,
    "CARD": card,
    "IBAN": iban,
    "SECRET": key,
    "PASSWORD": password,
    "CODE": code,
    "SEED": seed,
    "URL_SECRET": url_secret,
}


def clean_line() -> tuple[str, str]:
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(CLEAN), "mix"
    if roll < 0.6:
        t = rng.choice(NUMBERY)
        hexd = "0123456789abcdef"
        value = t.format(
            n=f"{rng.randint(1, 999)} {rng.randint(0, 999):03d}"
            if rng.random() < 0.5
            else rng.randint(1, 99999),
            d=rng.randint(1, 999),
            c=f"{rng.randint(0, 99):02d}",
            h=rng.randint(0, 23),
            m=f"{rng.randint(0, 59):02d}",
            day=f"{rng.randint(1, 28):02d}",
            mon=f"{rng.randint(1, 12):02d}",
            y=f"{rng.randint(0, 25):02d}",
            al=rng.choice(["SU", "LH", "PS", "LO", "BA", "U6"]),
            f=rng.randint(10, 9999),
            o=rng.randint(1000, 999999),
            hex7=rand(hexd, 7),
            hex40=rand(hexd, 40),
            uuid="-".join(rand(hexd, k) for k in (8, 4, 4, 4, 12)),
        )
        return value, "mix"
    lang = rng.choice(list(CLEAN_WORDS))
    return " ".join(rng.sample(CLEAN_WORDS[lang], rng.randint(1, 4))), lang


def main() -> None:
    lines = []
    for kind, count in COUNTS.items():
        for _ in range(count):
            lang = rng.choice(list(PLANTED[kind]))
            template = rng.choice(PLANTED[kind][lang])
            lines.append(
                {"text": template.format(v=MAKERS[kind]()), "expected": [kind], "lang": lang}
            )
    for _ in range(10):
        lines.append(
            {"text": "вот ключ от сервера:\n" + private_key(), "expected": ["SECRET"], "lang": "ru"}
        )
    for _ in range(20):  # two secrets in one message
        lines.append(
            {
                "text": f"почта {email()}, тел {phone()}",
                "expected": ["EMAIL", "PHONE"],
                "lang": "ru",
            }
        )
    seen = set()
    while len(seen) < 1200:
        text, lang = clean_line()
        if text not in seen:
            seen.add(text)
            lines.append({"text": text, "expected": [], "lang": lang})
    rng.shuffle(lines)
    with OUT.open("w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    print(f"wrote {len(lines)} lines to {OUT}")


if __name__ == "__main__":
    main()
