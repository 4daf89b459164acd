"""How a set of replies *sounds*: the style figures a person notices, as pure functions.

A reply is one turn (one speaker's consecutive messages, joined by ``"\\n"``; see
`twin.prepare.format`). Each figure is computed the same way for my real replies, the twin's
and the base model's to the same contexts, so their ratios (twin/me, base/me) say how close
the twin's habits are to mine: 1 is the same.

- **length**: characters per reply (mean and spread) and messages per reply;
- **lowercase**: share of replies with letters and no capital letter ("ахах да", "ok sure");
- **final period**: share of replies ending in a single ``.`` (not ``...``);
- **emoji**: emoji per reply (a flag or a family counts as one);
- **bracket smileys**: ``)``/``(`` runs per reply that close or open nothing ("да)))", ":(");
- **language**: share of replies in the chat's language (`lingua`, restricted to `LANGUAGES`;
  replies too short to tell are left out, for everyone alike);
- **typical words**: the words I use most, more than the people I talk to (`typical_words`,
  chosen from my training replies: words picked from the judged replies themselves would be
  the ones that happen to be frequent there, and favour me), and how often each set of
  replies uses them (per reply).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import regex
from pydantic import BaseModel

from twin.prepare.format import TURN_SEPARATOR, Turn, record_speakers, tag_turn
from twin.prepare.scrub.common import PLACEHOLDER_RE

if TYPE_CHECKING:
    from lingua import LanguageDetector

TYPICAL_WORDS = 20
"""How many of my typical words to count."""
MIN_WORD_COUNT = 2
"""A typical word appears in my replies at least this often."""
LANGUAGES = (
    "ENGLISH",
    "RUSSIAN",
    "UKRAINIAN",
    "POLISH",
    "GERMAN",
    "FRENCH",
    "SPANISH",
    "ITALIAN",
    "PORTUGUESE",
    "TURKISH",
)
"""Candidate languages. Telling 75 languages apart on a two-word chat reply mostly guesses
(tried: "hahaha yes" came out Tagalog); a short list of the languages chats are written in
keeps the guesses honest. Names as in `lingua.Language`."""
# How sure lingua must be (distance between the best and the second-best language's
# confidence) before a short text counts as written in a language.
MIN_LANGUAGE_DISTANCE = 0.1

CYRILLIC_EITHER = "ru|uk"
"""`language_of` a short Cyrillic text whose letters fit Russian and Ukrainian alike."""
_SHORT_WORDS = 4
_RUSSIAN_ONLY = regex.compile(r"[ыэёъ]")
_UKRAINIAN_ONLY = regex.compile(r"[іїєґ]")
_WORD = regex.compile(r"[\p{L}\p{M}']+")
_CYRILLIC_WORD = regex.compile(r"[\p{Cyrillic}\p{M}']+")
_GRAPHEME = regex.compile(r"\X")
_PICTOGRAPHIC = regex.compile(r"\p{Extended_Pictographic}|\p{Regional_Indicator}")
# A parenthesis hugs its words: "(really)". A bracket next to another bracket, or one with a
# space inside ("( ok)"), is a smiley.
_PARENTHESIS = regex.compile(r"(?<!\()\((?=[^\s()])[^()]*(?<=[^\s()])\)(?!\))")
_TAG = regex.compile(r"(?m)^[^:\n]+: ")
_BRACKET_RUN = regex.compile(r"\)+|\(+")


class StyleFigures(BaseModel):
    """The style of one set of replies."""

    replies: int
    length_chars_mean: float
    length_chars_std: float
    messages_per_reply_mean: float
    messages_per_reply_std: float
    lowercase_share: float
    final_period_share: float
    emoji_per_reply: float
    smileys_per_reply: float
    language_match_share: float | None
    """None when no reply's (or no chat's) language could be told."""
    language_checked: int
    """Replies whose language and whose chat's language could both be told."""
    typical_words_per_reply: float
    """Uses of my typical words per reply."""


class StyleRow(BaseModel):
    """One figure for me, the twin and the base model, with the ratios to mine."""

    figure: str
    me: float | None
    twin: float | None
    base: float | None
    twin_ratio: float | None
    """twin / me (None when mine is 0 or unknown)."""
    twin_ratio_low: float | None = None
    """95% interval of twin / me (`ratio_interval`; None: too rare in my replies to tell, or a
    report from before intervals were computed)."""
    twin_ratio_high: float | None = None
    base_ratio: float | None


class StyleComparison(BaseModel):
    """The three sets of replies side by side, figure by figure."""

    rows: list[StyleRow]
    typical_words: list[str]
    """My typical words, most typical first."""


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def words(text: str) -> list[str]:
    """Lower-cased words of a text (letters, marks and apostrophes).

    Args:
        text: any text.

    >>> words("Да, I'm OK)")
    ['да', "i'm", 'ok']
    """
    return [w.lower() for w in _WORD.findall(text)]


def messages(reply: str) -> list[str]:
    """The messages of a reply (its non-empty lines).

    Args:
        reply: one turn.
    """
    return [line for line in reply.split("\n") if line.strip()]


def is_lowercase(reply: str) -> bool:
    """The reply has letters and none of them is a capital.

    Args:
        reply: one turn.
    """
    letters = [c for c in reply if c.isalpha()]
    return bool(letters) and not any(c.isupper() for c in letters)


def ends_with_period(reply: str) -> bool:
    """The reply's last message ends in one ``.`` (an ellipsis is not a period).

    Args:
        reply: one turn.
    """
    text = reply.rstrip()
    return text.endswith(".") and not text.endswith("..")


def count_emoji(reply: str) -> int:
    """Emoji in a reply, a multi-code-point emoji (👍🏽, 👨‍👩‍👧, 🇺🇦) counting once.

    Args:
        reply: one turn.
    """
    return sum(1 for g in _GRAPHEME.findall(reply) if _PICTOGRAPHIC.search(g))


def count_bracket_smileys(reply: str) -> int:
    """Runs of ``)`` or ``(`` that are smileys, not a parenthesis: "да)))" → 1, ":( ((" → 2,
    "(really) :)" → 1.

    Args:
        reply: one turn.
    """
    text = reply
    while True:  # drop (balanced (nested)) parentheses, innermost first
        stripped = _PARENTHESIS.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    return len(_BRACKET_RUN.findall(text))


@cache
def _detector() -> LanguageDetector:
    from lingua import Language, LanguageDetectorBuilder

    languages = [getattr(Language, name) for name in LANGUAGES]
    return (
        LanguageDetectorBuilder.from_languages(*languages)
        .with_minimum_relative_distance(MIN_LANGUAGE_DISTANCE)
        # All n-gram models, loaded at once (~2 s for these languages): the trigram-only mode
        # took "thanks" for Turkish and "Merry Christmas!" for German.
        .with_preloaded_language_models()
        .build()
    )


def language_of(text: str) -> str | None:
    """ISO 639-1 code of the text's language among `LANGUAGES`, or None when unsure.

    Placeholders (``<PASSWORD>``) are no words of any language. Russian and Ukrainian share
    most short words ("ага", "давай", "норм"), where the letters can tell them: a text with
    "ы", "э", "ё" or "ъ" is not Ukrainian, one with "і", "ї", "є" or "ґ" is not Russian; a
    short text taken for Ukrainian with none of them is `CYRILLIC_EITHER` (see
    `same_language`).

    Args:
        text: a reply or a conversation.
    """
    text = PLACEHOLDER_RE.sub(" ", text)
    if not words(text):
        return None
    language = _detector().detect_language_of(text)
    code = language.iso_code_639_1.name.lower() if language is not None else None
    if code not in ("ru", "uk", None):
        return code
    lowered = text.lower()
    russian, ukrainian = _RUSSIAN_ONLY.search(lowered), _UKRAINIAN_ONLY.search(lowered)
    if russian and not ukrainian:
        return "ru"
    if ukrainian and not russian:
        return "uk"
    if code is None:
        # Too short to tell ("норм", "ну да"): among `LANGUAGES`, Cyrillic words are Russian or
        # Ukrainian, and with no letter to tell them apart, either.
        cyrillic = all(_CYRILLIC_WORD.fullmatch(w) for w in words(text))
        return CYRILLIC_EITHER if cyrillic else None
    # The models lean Ukrainian on short Russian ("да без проблем": 0.97 Ukrainian).
    if code == "uk" and not ukrainian and len(words(text)) <= _SHORT_WORDS:
        return CYRILLIC_EITHER
    return code


def same_language(reply: str, chat: str) -> bool:
    """Whether a reply's language (`language_of`) is the chat's: a short Cyrillic reply that
    could be either Russian or Ukrainian counts as both.

    Args:
        reply: the reply's language code.
        chat: the chat's language code.
    """
    either = {"ru", "uk", CYRILLIC_EITHER}
    return reply == chat or (CYRILLIC_EITHER in (reply, chat) and {reply, chat} <= either)


def typical_words(
    mine: Sequence[str], theirs: Sequence[str], *, top: int = TYPICAL_WORDS
) -> list[str]:
    """The words I use most, among those I use more often than the people I talk to.

    Ranked by how often I use them, times how much more often than they do (add-one
    smoothed): frequent and mine, not just frequent.

    Args:
        mine: my replies.
        theirs: what the others wrote (e.g. the conversations the replies answer).
        top: how many words.
    """
    my_counts = Counter(w for text in mine for w in words(text))
    their_counts = Counter(w for text in theirs for w in words(text))
    my_total = sum(my_counts.values()) or 1
    their_total = sum(their_counts.values()) or 1

    def lift(word: str) -> float:
        return (my_counts[word] / my_total) / ((their_counts[word] + 1) / their_total)

    candidates = [w for w, n in my_counts.items() if n >= MIN_WORD_COUNT and lift(w) > 1]
    candidates.sort(key=lambda w: (-my_counts[w] * math.log1p(lift(w)), w))
    return candidates[:top]


def others_lines(context: str, *, me: str, peer: str) -> list[str]:
    """What the other person wrote in a tagged conversation (`twin.prepare.format`: each turn
    opens with its speaker's tag, its further messages on lines of their own), without my lines.

    Args:
        context: a sample's ``input``.
        me: my name, as `record_speakers` gives it.
        peer: the other person's name, likewise.

    >>> others_lines("Anna: hi\\nMe: yo\\nAnna: ok\\nsee you", me="Me", peer="Anna")
    ['hi', 'ok', 'see you']
    """
    my_tag, their_tag = (
        tag_turn(Turn(speaker=name, text="", mine=name == me)) for name in (me, peer)
    )
    lines, mine = [], False
    for line in context.split(TURN_SEPARATOR):
        if line.startswith(my_tag):
            mine = True
        elif line.startswith(their_tag):
            mine, line = False, line.removeprefix(their_tag)
        if not mine:
            lines.append(line)
    return lines


def typical_words_of(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """`typical_words` of dataset samples: my replies (``output``) against what the people
    I talk to wrote in their contexts (``input`` without my own lines).

    Args:
        records: samples in the dataset's JSON shape (the training split).
    """
    mine = [r.get("output", "") for r in records]
    theirs = []
    for record in records:
        me, peer = record_speakers(record)
        theirs += others_lines(record.get("input", ""), me=me, peer=peer)
    return typical_words(mine, theirs)


def chat_language(context: str) -> str | None:
    """`language_of` a conversation, its speakers' tags left out (names are no words of it).

    Args:
        context: a sample's ``input``.
    """
    return language_of(_TAG.sub("", context))


def reply_values(
    replies: Sequence[str],
    *,
    contexts: Sequence[str],
    typical: Sequence[str],
    chat_languages: Sequence[str | None] | None = None,
) -> dict[str, list[float | None]]:
    """Each reply's own value of every figure, by the name `MEASURES` gives it (None: the
    reply's or its chat's language could not be told).

    Args:
        replies: one reply per context.
        contexts: the conversation each reply answers (its language is the chat's).
        typical: the words to count (`typical_words` of my real replies).
        chat_languages: `chat_language` of each context, when the caller has them already.
    """
    if len(replies) != len(contexts):
        raise ValueError(f"{len(replies)} replies for {len(contexts)} contexts.")
    chats = chat_languages if chat_languages is not None else list(map(chat_language, contexts))
    language: list[float | None] = []
    for reply, chat in zip(replies, chats, strict=True):
        reply_language = language_of(reply)
        if reply_language is None or chat is None:
            language.append(None)
        else:
            language.append(float(same_language(reply_language, chat)))
    wanted = set(typical)
    return {
        "chars": [len(r.strip()) for r in replies],
        "messages": [len(messages(r)) for r in replies],
        "lowercase": [float(is_lowercase(r)) for r in replies],
        "period": [float(ends_with_period(r)) for r in replies],
        "emoji": [count_emoji(r) for r in replies],
        "smileys": [count_bracket_smileys(r) for r in replies],
        "language": language,
        "typical": [sum(w in wanted for w in words(r)) for r in replies],
    }


MEASURES: dict[str, tuple[str, str]] = {
    "length_chars_mean": ("chars", "mean"),
    "length_chars_std": ("chars", "std"),
    "messages_per_reply_mean": ("messages", "mean"),
    "messages_per_reply_std": ("messages", "std"),
    "lowercase_share": ("lowercase", "mean"),
    "final_period_share": ("period", "mean"),
    "emoji_per_reply": ("emoji", "mean"),
    "smileys_per_reply": ("smileys", "mean"),
    "language_match_share": ("language", "mean"),
    "typical_words_per_reply": ("typical", "mean"),
}
"""`StyleFigures` field → (`reply_values` key, the mean or the spread of those values)."""


def _measure(values: Sequence[float | None], how: str) -> float | None:
    known = [v for v in values if v is not None]
    if not known:
        return None
    mean, std = _mean_std(known)
    return mean if how == "mean" else std


def _figures(values: dict[str, list[float | None]]) -> StyleFigures:
    measured = {field: _measure(values[key], how) for field, (key, how) in MEASURES.items()}
    for field, value in measured.items():  # no replies: 0, except the unknown language
        if value is None and field != "language_match_share":
            measured[field] = 0.0
    return StyleFigures(
        replies=len(values["chars"]),
        language_checked=sum(v is not None for v in values["language"]),
        **measured,
    )


def style_figures(
    replies: Sequence[str], *, contexts: Sequence[str], typical: Sequence[str]
) -> StyleFigures:
    """The style figures of a set of replies.

    Args:
        replies: one reply per context.
        contexts: the conversation each reply answers (its language is the chat's).
        typical: the words to count (`typical_words` of my real replies).
    """
    return _figures(reply_values(replies, contexts=contexts, typical=typical))


BOOTSTRAP_ROUNDS = 1000
"""Resamples of the contexts for a ratio's interval."""
MIN_EVIDENCE = 3
"""My replies that must show a habit (differ from my usual value) for its ratio's interval."""


def ratio_interval(
    twin: Sequence[float | None],
    me: Sequence[float | None],
    how: str,
    *,
    seed: int,
    rounds: int = BOOTSTRAP_ROUNDS,
) -> tuple[float, float] | None:
    """95% interval of the ratio twin/me of one figure, by resampling the contexts (the same
    resample for both, as both replied to the same contexts).

    Resamples in which my figure is 0 or unknown give no ratio and are left out. None when
    fewer than half of them give one, or when a spread or a habit's count rests on fewer than
    `MIN_EVIDENCE` of my replies (one two-message reply in 91 makes a spread that every
    resample without it loses): a habit too rare in my replies to measure.

    Args:
        twin: the twin's (or the base model's) per-reply values (`reply_values`).
        me: mine, to the same contexts.
        how: ``"mean"`` or ``"std"``.
        seed: fixes the resamples.
        rounds: how many resamples.
    """
    known = [v for v in me if v is not None]
    usual = Counter(known).most_common(1)[0][0] if known else None
    driven_by_the_unusual = how == "std" or usual == 0  # a spread; a count of a habit
    if driven_by_the_unusual and sum(v != usual for v in known) < MIN_EVIDENCE:
        return None
    rng = random.Random(seed)
    count = len(me)
    ratios = []
    for _ in range(rounds):
        picked = [rng.randrange(count) for _ in range(count)]
        mine = _measure([me[i] for i in picked], how)
        theirs = _measure([twin[i] for i in picked], how)
        if mine and theirs is not None:
            ratios.append(theirs / mine)
    if len(ratios) < rounds / 2:
        return None
    ratios.sort()
    return ratios[int(0.025 * (len(ratios) - 1))], ratios[int(0.975 * (len(ratios) - 1))]


FIGURES = (
    ("reply length, characters (mean)", "length_chars_mean"),
    ("reply length, characters (spread)", "length_chars_std"),
    ("messages per reply (mean)", "messages_per_reply_mean"),
    ("messages per reply (spread)", "messages_per_reply_std"),
    ("lowercase replies", "lowercase_share"),
    ("final period", "final_period_share"),
    ("emoji per reply", "emoji_per_reply"),
    (")-smileys per reply", "smileys_per_reply"),
    ("reply in the chat's language", "language_match_share"),
    ("my typical words per reply", "typical_words_per_reply"),
)
"""(label, `StyleFigures` field) of each compared figure, in display order."""


def _ratio(value: float | None, mine: float | None) -> float | None:
    if value is None or not mine:
        return None
    return value / mine


def compare_styles(
    *,
    contexts: Sequence[str],
    me: Sequence[str],
    twin: Sequence[str],
    base: Sequence[str],
    typical: Sequence[str] | None = None,
    seed: int = 0,
) -> StyleComparison:
    """Style figures of my replies, the twin's and the base model's to the same contexts, with
    a 95% interval for each ratio twin/me (`ratio_interval`).

    Args:
        contexts: the conversations replied to.
        me: my real replies.
        twin: the twin's replies.
        base: the base model's replies.
        typical: my typical words (`typical_words_of` the training split); default: those of
            ``me`` against ``contexts``, when no other replies of mine are at hand.
        seed: fixes the resamples of the intervals.
    """
    typical = list(typical) if typical is not None else typical_words(me, contexts)
    chats = [chat_language(c) for c in contexts]  # once for the three sets of replies
    values = {
        who: reply_values(replies, contexts=contexts, typical=typical, chat_languages=chats)
        for who, replies in (("me", me), ("twin", twin), ("base", base))
    }
    figures = {who: _figures(v) for who, v in values.items()}
    rows = []
    for label, field in FIGURES:
        mine, theirs, base_value = (getattr(figures[w], field) for w in ("me", "twin", "base"))
        key, how = MEASURES[field]
        interval = ratio_interval(values["twin"][key], values["me"][key], how, seed=seed)
        rows.append(
            StyleRow(
                figure=label,
                me=mine,
                twin=theirs,
                base=base_value,
                twin_ratio=_ratio(theirs, mine),
                twin_ratio_low=interval[0] if interval else None,
                twin_ratio_high=interval[1] if interval else None,
                base_ratio=_ratio(base_value, mine),
            )
        )
    return StyleComparison(rows=rows, typical_words=typical)
