"""The scrubber on families of phrasing (not single sentences), secrets split over messages,
look-alike letters, and names; properties over where a secret sits in a session."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.prepare.format import speaker_names
from twin.prepare.scrub import Scrubber, ScrubConfig, ScrubReport
from twin.prepare.sessions import (
    CharBudget,
    ChatMessage,
    build_samples,
    merge_consecutive,
    scrub_session,
)

SCRUBBER = Scrubber()


def scrub(text: str, context: str = "") -> str:
    return SCRUBBER.scrub(text, context=context.split("\n") if context else ()).text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        # passwords: inflected, diminutive and slang forms of the keyword
        ("парольчик от ноута: Lisa_2019", "Lisa_2019"),
        ("держи парольку — zebra77", "zebra77"),
        ("пассворд на роутер Gh5!kk", "Gh5!kk"),
        ("паролем будет tulip#4", "tulip#4"),
        ("the pword = Nemo1985", "Nemo1985"),
        ("passwd: tr0ub4dor", "tr0ub4dor"),
        # a keyword in another language than the sentence
        ("скинул тебе password: Elka_2020", "Elka_2020"),
        ("my new пароль is Rybka77", "Rybka77"),
        # a login and a password as a pair after a sign-in cue
        ("вход: m.orlova Lipa2023!", "Lipa2023!"),
        ("для входа petya_k / Osen'2022", "Osen'2022"),
        ("login jdoe Zx9-wq-41", "Zx9-wq-41"),
        # the value before its keyword
        ("Vesna_2021 — это пароль от почты", "Vesna_2021"),
        ("gH7kLm2p is the new wifi pass", "gH7kLm2p"),
        # dictionary words and patterns after a cue
        ("пароль: подсолнух", "подсолнух"),
        ("the password is cornflower", "cornflower"),
        ("пароль 1q2w3e4r5t", "1q2w3e4r5t"),
        ("пароль от вайфая qazwsx", "qazwsx"),
        # codes: the value before its keyword, and slang forms of the keyword
        ("401832 is your Instagram code", "401832"),
        ("5930 — ваш код для входа в приложение", "5930"),
        ("кодик пришёл: 22 81 90", "22 81 90"),
        ("пинкод 7731", "7731"),
    ],
)
def test_password_and_code_families(text: str, value: str) -> None:
    assert value not in scrub(text)


@pytest.mark.parametrize(
    "text",
    [
        "я вставил R7bQx2Lm и всё заработало",
        "ключ hT4nW9zE8k",
        "try uV3sK8pD2q first",
    ],
)
def test_random_looking_words_are_redacted_anywhere(text: str) -> None:
    assert scrub(text).count("<SECRET>") == 1


@pytest.mark.parametrize(
    "text",
    [
        "пароль неверный, попробуй ещё",
        "the password is wrong again",
        "password is required to continue",
        "пароль — простой, ты его знаешь",
        "новый iPhone15 уже продают",
        "Ivan1990 это мой ник",
        "SHA256 или MD5?",
        "COVID19 tests are free",
        "обновил Windows10 вчера",
        "сколько стоит 1 500 000 руб",
        "я пас, устал",
        "вход через госуслуги",
        "login with google",
        "код ошибки 40401",
        "в 2019 — это год, когда код был написан",
    ],
)
def test_prose_around_the_keywords_is_kept(text: str) -> None:
    assert scrub(text) == text


@pytest.mark.parametrize(
    "text",
    ["DE89 3704 0044 0532 0130 01", "GB82WEST12345698765433", "PL61109010140000071219812875"],
)
def test_a_mistyped_iban_is_still_an_iban(text: str) -> None:
    assert scrub(f"переведи на {text} пожалуйста") == "переведи на <IBAN> пожалуйста"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pаssword: hunter", "pаssword: <PASSWORD>"),  # Cyrillic а
        ("пaроль: zima", "пaроль: <PASSWORD>"),  # Latin a
        ("cоde 4821", "cоde <CODE>"),  # Cyrillic о
    ],
)
def test_look_alike_letters_in_a_keyword_are_folded(text: str, expected: str) -> None:
    assert scrub(text) == expected


@pytest.mark.parametrize(
    ("context", "text", "expected"),
    [
        ("пароль от вайфая", "Kx7pQ2zRw", "<SECRET>"),
        ("код из смс", "739201", "<CODE>"),
        ("логин ivanov\nпароль", "Qwerty!2024", "<PASSWORD>"),
        ("какой пароль от вайфая?", "ромашка", "<PASSWORD>"),
        ("what's the wifi password?", "bluebird", "<PASSWORD>"),
        ("пароль?", "сейчас посмотрю", "сейчас посмотрю"),
        ("логин ivanov", "пароль", "пароль"),
        ("привет", "739201", "739201"),
    ],
)
def test_a_cue_in_the_messages_before_makes_a_lone_value_a_secret(
    context: str, text: str, expected: str
) -> None:
    assert scrub(text, context) == expected


def test_after_pass_alone_only_a_password_shaped_value_is_a_secret() -> None:
    """ "пас"/"pass" also mean "I'm out" ("не, я пас"): a word after them is prose."""
    assert scrub("норм", "не, я пас\nдавай пораньше") == "норм"
    assert scrub("sounds", "I'll pass\nok then") == "sounds"
    assert scrub("Kx7pQ2zRw", "пас от вайфая?") == "<SECRET>"
    assert scrub("bluebird77", "wifi pass?") == "<PASSWORD>"


def test_names_are_scrubbed_blocklisted_and_fall_back_to_neutral_tags() -> None:
    scrubber = Scrubber(ScrubConfig(blocklist=["Morozov"]))
    assert speaker_names(me="Alex Morozov", peer="+7 916 555 12 34", scrubber=scrubber) == (
        "Alex",
        "Contact",
    )
    assert speaker_names(me="Alex", peer="Вася ivan.petrov@mail.ru", scrubber=scrubber)[1] == "Вася"
    assert speaker_names(me="\u200b\u200b", peer="\u2060", scrubber=scrubber) == ("Me", "Contact")


def test_a_peer_with_my_name_gets_a_distinct_tag() -> None:
    me, peer = speaker_names(me="Alex Morozov", peer="Alex  Morozov")
    assert me != peer and me.casefold() != peer.casefold()


# -- properties ------------------------------------------------------------------------------
FILLER = ["привет", "ок", "как дела?", "сейчас", "see you at 5", "ахах", "ну давай", "спасибо"]
ALNUM = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
password_values = st.text(alphabet=ALNUM, min_size=8, max_size=14).filter(
    lambda v: any(c.isdigit() for c in v) and any(c.isupper() for c in v)
)
code_values = (
    st.integers(min_value=1000, max_value=99_999_999)
    .map(str)
    .filter(lambda v: not v.startswith(("19", "20")))
)
# (messages that carry the secret, as (mine, text) pairs; {} is the value)
PLANTINGS = [
    [(True, "пароль от вайфая: {}")],
    [(False, "скинь пароль от вайфая"), (True, "{}")],
    [(True, "пароль от почты"), (True, "{}")],
    [(True, "логин ivanov"), (True, "пароль"), (True, "{}")],
    [(False, "what's the password?"), (True, "{}")],
    [(True, "{} is the password")],
]
CODE_PLANTINGS = [
    [(True, "код из смс"), (True, "{}")],
    [(False, "какой код пришёл?"), (True, "{}")],
    [(True, "{} is your login code")],
    [(True, "код: {}")],
]


@settings(max_examples=120, deadline=None)
@given(
    before=st.lists(st.tuples(st.booleans(), st.sampled_from(FILLER)), max_size=5),
    after=st.lists(st.tuples(st.booleans(), st.sampled_from(FILLER)), max_size=5),
    planting=st.one_of(
        st.tuples(st.sampled_from(PLANTINGS), password_values),
        st.tuples(st.sampled_from(CODE_PLANTINGS), code_values),
    ),
)
def test_no_planted_secret_survives_prepare_wherever_it_sits(
    before: list[tuple[bool, str]],
    after: list[tuple[bool, str]],
    planting: tuple[list[tuple[bool, str]], str],
) -> None:
    template, value = planting
    lines = [(False, "привет"), *before]
    lines += [(mine, text.format(value)) for mine, text in template] + after
    lines.append((True, "ну пока"))  # a reply of mine, so the session gives samples
    messages = [ChatMessage(i, 1000 + i, mine, text) for i, (mine, text) in enumerate(lines)]
    scrubbed = scrub_session(messages, SCRUBBER, ScrubReport(), "chat")
    turns = merge_consecutive(scrubbed, me="Me", peer="Anna")
    built = build_samples(turns, me="Me", peer="Anna", budget=CharBudget(max_seq_length=4096))
    assert built.samples
    for sample in built.samples:
        assert value not in str(sample.record())
