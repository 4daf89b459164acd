"""Style figures on hand-made replies equal the values worked out by hand; the discriminator
cannot tell two halves of one person's replies apart, and easily tells a different writer."""

from __future__ import annotations

import random

import pytest

from twin.evaluate.discriminator import discriminate, wilson_interval
from twin.evaluate.style import (
    compare_styles,
    count_bracket_smileys,
    count_emoji,
    language_of,
    others_lines,
    ratio_interval,
    same_language,
    style_figures,
    typical_words,
    typical_words_of,
)

CONTEXTS = [
    "Мама: ты где?",
    "Мама: когда приедешь?",
    "Anna: are you coming tonight?",
    "Мама: купи хлеба",
]
ME = ["ахах да)))", "завтра\nили в пятницу", "yes!! 🎉🎉", "ок."]


def test_style_figures_of_a_hand_made_set() -> None:
    figures = style_figures(ME, contexts=CONTEXTS, typical=["да", "ок"])

    # lengths 10, 20, 8, 3 → mean 41/4; spread by hand
    assert figures.length_chars_mean == pytest.approx(10.25)
    assert figures.length_chars_std == pytest.approx(
        ((0.25**2 + 9.75**2 + 2.25**2 + 7.25**2) / 4) ** 0.5
    )
    # messages 1, 2, 1, 1
    assert figures.messages_per_reply_mean == pytest.approx(1.25)
    assert figures.messages_per_reply_std == pytest.approx(((3 * 0.25**2 + 0.75**2) / 4) ** 0.5)
    assert figures.lowercase_share == 1.0  # every reply has letters, none a capital
    assert figures.final_period_share == 0.25  # "ок."
    assert figures.emoji_per_reply == 0.5  # two 🎉 in four replies
    assert figures.smileys_per_reply == 0.25  # ")))" once
    assert figures.typical_words_per_reply == 0.5  # "да", "ок"
    assert figures.language_checked >= 2 and figures.language_match_share == 1.0


def test_capitals_periods_smileys_and_emoji_by_hand() -> None:
    replies = ["Ok.", "see you...", "fine (really) :)", "no((( ok)", "👍🏽🇺🇦👨‍👩‍👧"]
    figures = style_figures(replies, contexts=["x"] * 5, typical=[])
    assert figures.lowercase_share == pytest.approx(3 / 5)  # not "Ok.", not the emoji-only one
    assert figures.final_period_share == pytest.approx(1 / 5)  # "..." is no period
    assert [count_bracket_smileys(r) for r in replies] == [0, 0, 1, 2, 0]
    assert count_emoji(replies[-1]) == 3  # a skin tone, a flag, a family: one each
    assert figures.emoji_per_reply == pytest.approx(3 / 5)


def test_language_of_chats_and_replies() -> None:
    assert language_of("ну давай, завтра созвонимся") == "ru"
    assert language_of("sure, see you tomorrow then") == "en"
    assert language_of("добре, побачимося завтра ввечері") == "uk"
    assert language_of(")))") is None and language_of("") is None


def test_short_russian_replies_count_as_the_russian_chats_language() -> None:
    """Two-word replies a Russian writes ("ага", "норм)", "да, заходи") read as Ukrainian to a
    trigram model; placeholders are no language (a scrubbed "<PASSWORD>" came out Italian)."""
    chat = "Катя: ты где сейчас? наберу тебе через пять минут, хорошо?"
    replies = ["ага", "норм)", "да, заходи", "давай))", "ну да, давай)", "<PASSWORD>"]
    figures = style_figures(replies, contexts=[chat] * len(replies), typical=[])
    assert figures.language_checked == 5 and figures.language_match_share == 1.0
    assert language_of("так, звісно") == "uk" and language_of("ещё бы") == "ru"
    assert same_language(language_of("ага") or "", "uk")  # could be either: fits both
    mixed = style_figures(["так, звісно", "sure thing"], contexts=[chat] * 2, typical=[])
    assert mixed.language_checked == 2 and mixed.language_match_share == 0.0


def test_a_reply_in_another_language_lowers_the_match() -> None:
    contexts = ["Мама: ты поела?", "Мама: позвони мне вечером, пожалуйста"]
    figures = style_figures(
        ["да, спасибо мам", "hahaha sure, talk to you later"], contexts=contexts, typical=[]
    )
    assert figures.language_checked == 2 and figures.language_match_share == 0.5


def test_typical_words_are_mine_not_theirs() -> None:
    mine = ["ахах да", "ахах ну да", "ну ок", "да ладно"]
    theirs = ["ну что, да или нет?", "когда?"]
    top = typical_words(mine, theirs)
    assert top[0] == "ахах"  # mine twice, never theirs
    assert "ладно" not in top  # once only


def test_typical_words_of_training_samples_leave_my_own_context_lines_out() -> None:
    """A word I use all the time is mine even though my earlier lines sit in the contexts the
    replies answer: only the other people's lines count against it."""
    records = [
        {
            "me": "Артём",
            "peer": "Мама",
            "input": "Мама: ты где?\nАртём: щас\nАртём: ахах",
            "output": "щас буду",
        },
        {
            "me": "Артём",
            "peer": "Мама",
            "input": "Мама: купи хлеба\nок?\nАртём: щас",
            "output": "щас куплю",
        },
        {"me": "Артём", "peer": "Мама", "input": "Мама: ок", "output": "ахах щас"},
    ]
    assert others_lines(records[1]["input"], me="Артём", peer="Мама") == ["купи хлеба", "ок?"]
    top = typical_words_of(records)
    assert top[0] == "щас"  # mine 3 times, never Mum's: my own lines in contexts don't count
    assert "ок" not in top  # Mum's word


def test_short_english_replies_in_an_english_chat_are_english() -> None:
    """Short replies in a chat with a German or a Spanish friend who writes English: the
    trigram-only detector took "thanks" for Turkish and "Merry Christmas!" for German."""
    contexts = ["Jonas: Merry Christmas!", "Priya: How are you doing?"]
    figures = style_figures(["thanks", "alive haha"], contexts=contexts, typical=[])
    assert figures.language_checked == 2 and figures.language_match_share == 1.0
    assert language_of("Merry Christmas!") == "en" and language_of("thanks") == "en"
    # Too short to tell a Cyrillic reply's language from the detector: Russian or Ukrainian.
    assert language_of("норм") == "ru|uk" and language_of("ок") == "ru|uk"
    assert language_of("ok") is None  # Latin letters: could be many languages


def test_ratios_compare_the_twin_and_the_base_with_me() -> None:
    comparison = compare_styles(
        contexts=CONTEXTS, me=ME, twin=ME, base=[r.upper() + "." for r in ME]
    )
    rows = {row.figure: row for row in comparison.rows}
    assert all(r.twin_ratio == pytest.approx(1.0) for r in comparison.rows if r.twin_ratio)
    assert rows["lowercase replies"].base == 0 and rows["lowercase replies"].base_ratio == 0
    assert rows["final period"].base_ratio == pytest.approx(3.0)  # "ОК.." is no period


def test_a_ratio_has_an_interval_that_says_how_sure_it_is() -> None:
    """The same contexts resampled for both: a twin that writes twice my length in every reply
    has the ratio 2 and nothing else; a habit in 3 of my 90 replies has a wide interval; one I
    never show has none."""
    mine = [float(n % 7 + 1) for n in range(90)]
    assert ratio_interval([2 * v for v in mine], mine, "mean", seed=0) == pytest.approx((2, 2))
    rare = [1.0 if n % 30 == 0 else 0.0 for n in range(90)]  # my emoji: 3 replies of 90
    low, high = ratio_interval(rare[::-1], rare, "mean", seed=0) or (0, 0)
    assert low <= 0.5 and high >= 2  # equal counts, yet the interval spans 0.5–2
    assert ratio_interval(rare, [0.0] * 90, "mean", seed=0) is None
    # One two-message reply of mine in 90: a spread that rests on one reply has no interval.
    once = [2.0] + [1.0] * 89
    assert ratio_interval([1.0] * 90, once, "std", seed=0) is None
    assert ratio_interval([1.0] * 90, [2.0] * 3 + [1.0] * 87, "std", seed=0) is not None

    twice = ["да да", "ок ок", "ну ну"]
    comparison = compare_styles(
        contexts=["Мама: ?"] * 30, me=["да", "ок", "ну"] * 10, twin=twice * 10, base=twice * 10
    )
    rows = {row.figure: row for row in comparison.rows}
    length = rows["reply length, characters (mean)"]
    assert length.twin_ratio == length.twin_ratio_low == length.twin_ratio_high == 2.5
    assert rows["emoji per reply"].twin_ratio_low is None  # I wrote none: nothing to compare


def test_wilson_interval_by_hand() -> None:
    low, high = wilson_interval(50, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)


def _my_replies(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = ["да", "ну", "ахах", "ок", "завтра", "ладно", "норм", "давай", "щас", "мам"]
    return [
        " ".join(rng.choices(words, k=rng.randint(1, 4))) + rng.choice(["", ")", ")))"])
        for _ in range(count)
    ]


def test_two_halves_of_my_own_replies_cannot_be_told_apart() -> None:
    mine = _my_replies(240, seed=1)
    result = discriminate(mine[:120], mine[120:], seed=0)
    assert 0.4 <= result.accuracy <= 0.6
    assert result.accuracy_low < 0.5 < result.accuracy_high
    assert result.auc_low < 0.5 < result.auc_high


def test_an_obviously_different_writer_is_told_apart() -> None:
    rng = random.Random(2)
    formal = [
        f"Dear {rng.choice(['colleague', 'Sir', 'Madam'])}, thank you for your message. "
        f"I will reply by {rng.choice(['Monday', 'Friday', 'tomorrow'])}."
        for _ in range(60)
    ]
    result = discriminate(_my_replies(60, seed=3), formal, seed=0)
    assert result.accuracy >= 0.95 and result.auc >= 0.99
    assert result.accuracy_low > 0.85


def test_too_few_replies_are_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="hold out more"):
        discriminate(["a", "b"], ["c", "d"])
