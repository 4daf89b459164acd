"""Generate tests/data/scrub_corpus.jsonl: synthetic chat lines with planted, fake secrets.

Every value is fake but valid in form (Luhn-valid cards, mod-97-valid IBANs, phone numbers
that libphonenumber accepts), so the scrubber is tested on what it must really catch. Each
line is {"text", "expected", "lang"}; `expected` lists the placeholder types, empty for clean
lines. Run from the repository root: python tests/data/make_scrub_corpus.py
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import phonenumbers
from mnemonic import Mnemonic

OUT = Path(__file__).with_name("scrub_corpus.jsonl")
rng = random.Random(20240512)

NAMES = ["ivan", "olga", "petro", "anna", "john", "kasia", "lukas", "marta", "sergey", "oksana"]
SURNAMES = ["petrov", "smith", "kowalska", "mueller", "shevchenko", "ivanova", "brown", "nowak"]
DOMAINS = ["gmail.com", "mail.ru", "yandex.ru", "ukr.net", "wp.pl", "gmx.de", "outlook.com"]


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


IBAN_FORMATS = {
    "DE": "8n10n",
    "GB": "4a14n",
    "PL": "24n",
    "UA": "6n19c",
    "FR": "10n11c2n",
    "ES": "20n",
    "NL": "4a10n",
}


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


PLANTED: dict[str, dict[str, list[str]]] = {
    "EMAIL": {
        "ru": ["пиши на {v}", "мой email {v}, жду резюме", "почта: {v}", "скинь на {v} пожалуйста"],
        "uk": ["пишіть на {v}", "моя пошта {v}"],
        "en": ["email me at {v}", "my address is {v}.", "contact: {v}"],
        "pl": ["napisz na {v}", "mój mail to {v}"],
        "de": ["schreib mir an {v}", "Meine E-Mail: {v}"],
    },
    "PHONE": {
        "ru": ["звони {v}", "мой номер {v}, пиши в любое время", "тел. {v}", "вот номер мамы: {v}"],
        "uk": ["мій номер {v}", "телефонуй {v} після шостої"],
        "en": ["call me at {v}", "my number is {v}", "text {v} when you land"],
        "pl": ["zadzwoń {v}", "mój numer: {v}"],
        "de": ["ruf mich an: {v}", "Meine Nummer ist {v}"],
    },
    "CARD": {
        "ru": ["кидай на карту {v}", "номер карты {v} сбер", "карта {v}, Иван П."],
        "uk": ["картка {v} моно", "скинь на картку {v}"],
        "en": ["my card is {v}", "use card {v} exp 12/27"],
        "pl": ["numer karty {v}"],
        "de": ["Kartennummer: {v}"],
    },
    "IBAN": {
        "ru": ["реквизиты: IBAN {v}", "переведи на {v}"],
        "uk": ["IBAN: {v}, отримувач ФОП"],
        "en": ["wire it to {v} please", "IBAN {v}"],
        "pl": ["numer konta {v}", "przelew na {v}"],
        "de": ["Bitte überweise an {v}", "IBAN: {v} (Sparkasse)"],
    },
    "SECRET": {
        "ru": ["токен бота {v}", "вот ключ {v} не свети", "держи {v}"],
        "uk": ["ось ключ: {v}"],
        "en": ["here is the key {v}", "token: {v}", "use {v} for the api"],
        "pl": ["klucz: {v}"],
        "de": ["der Schlüssel ist {v}"],
    },
    "PASSWORD": {
        "ru": [
            "пароль: {v}",
            "пароль от wifi — {v}",
            "пароль от почты {v}",
            "логин: ivan пароль: {v}",
            "новый пароль {v}, не забудь",
            "пароль такой: {v}",
        ],
        "uk": ["пароль: {v}", "пароль від wifi — {v}", "гасло: {v}"],
        "en": [
            "password is {v}",
            "my pass: {v}",
            "wifi password: {v}",
            "the password for the router is {v}",
            "login admin / {v}",
        ],
        "pl": ["hasło: {v}", "hasło to {v}", "hasło do wifi to {v}"],
        "de": ["Passwort ist {v}", "Kennwort: {v}", "das WLAN-Passwort lautet {v}"],
    },
    "CODE": {
        "ru": ["код {v}", "{v} — код", "код подтверждения: {v}", "код из смс {v}", "ваш код {v}"],
        "uk": ["код {v}", "код підтвердження: {v}"],
        "en": ["code: {v}", "your code is {v}", "{v} is your verification code", "Code {v}"],
        "pl": ["kod {v}", "kod BLIK {v}", "twój kod to {v}"],
        "de": ["Code {v}", "Dein Bestätigungscode: {v}"],
    },
    "SEED": {
        "en": ["seed: {v}", "{v}", "backup words: {v}"],
        "ru": ["сид фраза {v}", "вот мнемоника: {v}"],
    },
    "URL_SECRET": {
        "en": ["open {v}", "link: {v}"],
        "ru": ["заходи {v}", "ссылка {v} работает"],
        "de": ["hier: {v}"],
    },
}
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
COUNTS = {
    "EMAIL": 60,
    "PHONE": 80,
    "CARD": 50,
    "IBAN": 40,
    "SECRET": 60,
    "PASSWORD": 80,
    "CODE": 70,
    "SEED": 30,
    "URL_SECRET": 30,
}

CLEAN = [
    "привет, как дела?",
    "ок, буду в 19:30",
    "цена 1 500 ₽",
    "это стоило $19.99",
    "встреча 12.05.2024 в 10:30",
    "рейс SU 1234 задерживается",
    "order #123456 shipped",
    "обнови до v1.2.3",
    "коммит 3f2a9c1 всё сломал",
    "uuid 123e4567-e89b-12d3-a456-426614174000",
    "в 2023 году",
    "I forgot my password",
    "забыл пароль",
    "какой пароль от wifi?",
    "password is wrong",
    "пароль неправильный",
    "hasło jest złe",
    "Passwort vergessen",
    "error code 404",
    "ZIP code 10001",
    "код ошибки 500",
    "code review в пятницу",
    "send me the code please",
    "напиши код на питоне",
    "kod źródłowy jest na githubie",
    "Der Code ist fertig",
    "скидка 15%",
    "осталось 3 дня",
    "купил 2 кг яблок по 120 р.",
    "встреча с 14:00 до 15:30",
    "счёт 2:1",
    "температура +5",
    "давай в 7",
    "flight LH 2034 at 18:45",
    "ISBN 978-3-16-148410-0",
    "номер заказа 45871236",
    "трек RA123456789RU",
    "версия 2.14.3 вышла",
    "commit a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0",
    "https://youtu.be/dQw4w9WgXcQ",
    "https://www.google.com/search?q=погода+москва",
    "https://example.com/article?utm_source=tg&utm_medium=chat",
    "@durov посмотри",
    "#отпуск2024",
    "😂😂😂",
    "👨‍👩‍👧 семья в сборе",
    "позвони мне",
    "мой номер ты знаешь",
    "сколько стоит? 2 500 грн",
    "zapłaciłem 150 zł",
    "kostet 49,90 €",
    "1/2 стакана",
    "в 1999 году",
    "2024-05-12",
    "с 01.06 по 15.06",
    "квартира 42, этаж 7",
    "дом 15к2",
    "индекс 101000",
    "password reset link expired",
    "reset your password in settings",
    "пароль нужно сменить",
    "пароль от wifi у Маши",
    "what's the wifi password?",
    "the code is in the repo",
    "код домофона не помню",
    "kod rabatowy nie działa",
    "PIN vergessen",
    "пин-код от карты забыл",
    "abandon the ship and swim to the shore",
    "I have a dream that one day this nation will rise up",
    "seed the database first",
]
TEMPLATES_CLEAN = {
    "ru": ["{a} {b}", "{a}, {b}!", "{a}?", "ну {a}", "{a} :)"],
}
RU_WORDS = [
    "привет",
    "пока",
    "завтра",
    "сегодня",
    "в кино",
    "на работе",
    "купить молоко",
    "созвонимся",
    "ладно",
    "спасибо",
    "до встречи",
    "в 18:00",
    "у метро",
    "3 часа",
    "15 минут",
]
EN_WORDS = [
    "see you",
    "tomorrow",
    "at 5",
    "thanks",
    "sounds good",
    "on my way",
    "5 min",
    "let's go",
    "lunch?",
    "at the office",
    "in 2 hours",
    "cool",
    "lol",
    "ok",
]
PL_WORDS = ["cześć", "jutro", "o 18", "dzięki", "jasne", "w pracy", "za 10 minut", "do zobaczenia"]
DE_WORDS = ["hallo", "morgen", "um 8", "danke", "klar", "bis später", "im Büro", "in 20 Minuten"]
UK_WORDS = ["привіт", "завтра", "дякую", "о 18:00", "на роботі", "до зустрічі", "гаразд"]
NUMBERY = [
    "итого {n} руб",
    "{n} ₽",
    "${d}.{c}",
    "{d}.{c} €",
    "в {h}:{m}",
    "{day}.{mon}.20{y}",
    "рейс {al} {f}",
    "order #{o}",
    "заказ №{o}",
    "v{d}.{c}.{h}",
    "сборка {hex7}",
    "{n} шагов сегодня",
    "{h}:{m}-{h}:{m}",
    "{day}/{mon}/20{y}",
    "ticket {al}{f}",
    "в 20{y} году",
    "{d} из {c}",
    "+{d} к карме",
    "{day}.{mon} в {h}:{m}",
    "hash {hex40}",
    "id {uuid}",
    "за {n} грн",
    "{n} zł",
    "seat {d}A",
    "room {f}",
]


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
    lang, words = rng.choice(
        [("ru", RU_WORDS), ("en", EN_WORDS), ("pl", PL_WORDS), ("de", DE_WORDS), ("uk", UK_WORDS)]
    )
    return " ".join(rng.sample(words, rng.randint(1, 4))), lang


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
