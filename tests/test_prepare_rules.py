"""The pure dataset rules: sessions, turns, samples, split scores."""

from __future__ import annotations

import doctest
import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from twin.prepare.format import render_instruction, render_prompt
from twin.prepare.scrub import Scrubber
from twin.prepare.sessions import (
    DAY_SECONDS,
    CharBudget,
    ChatMessage,
    build_samples,
    is_said,
    iter_sessions,
    merge_consecutive,
    render_message,
    split_into_sessions,
)
from twin.prepare.split import session_score

BIG = CharBudget(max_seq_length=4096)


def said(*lines: str, start: int = 0, step: int = 60) -> list[ChatMessage]:
    """``"me: hi"`` / ``"them: hey"`` lines → messages ``step`` seconds apart."""
    messages = []
    for i, line in enumerate(lines):
        who, text = line.split(": ", 1)
        messages.append(ChatMessage(i + 1, start + i * step, who == "me", text))
    return messages


def samples_of(messages: list[ChatMessage], budget: CharBudget = BIG, peer: str = "Anna"):
    turns = merge_consecutive(messages, me="Me", peer=peer)
    return build_samples(turns, me="Me", peer=peer, budget=budget)


# --- sessions ------------------------------------------------------------------------------


def ids(sessions: list[list[ChatMessage]]) -> list[list[int]]:
    return [[m.tg_id for m in s] for s in sessions]


def test_a_gap_of_a_day_or_more_starts_a_new_session() -> None:
    at = [0, DAY_SECONDS + 120, 2 * DAY_SECONDS + 120, 3 * DAY_SECONDS + 119]
    messages = [ChatMessage(i + 1, t, i % 2 == 0, f"m{i}") for i, t in enumerate(at)]
    # 1 day 2 min → split; exactly 1 day → split; 23:59:59 → same session.
    assert ids(split_into_sessions(messages)) == [[1], [2], [3, 4]]


def test_sessions_sort_by_time_then_id() -> None:
    messages = [
        ChatMessage(3, 10, True, "c"),
        ChatMessage(1, 10, False, "a"),
        ChatMessage(2, 5, False, "b"),
    ]
    assert ids(split_into_sessions(messages, gap_seconds=3600)) == [[2, 1, 3]]


# --- turns ---------------------------------------------------------------------------------


def test_one_speakers_consecutive_messages_become_one_turn() -> None:
    turns = merge_consecutive(
        said("them: are you coming?", "them: tonight", "me: yes", "me: what time?"),
        me="Me",
        peer="Anna",
    )
    assert [(t.speaker, t.text, t.mine) for t in turns] == [
        ("Anna", "are you coming?\ntonight", False),
        ("Me", "yes\nwhat time?", True),
    ]


def test_media_become_typed_placeholders_and_captions_follow() -> None:
    messages = [
        ChatMessage(1, 0, False, "", media_kind="photo"),
        ChatMessage(2, 1, False, "look at this", media_kind="photo"),
        ChatMessage(3, 2, False, "", media_kind="voice"),
        ChatMessage(4, 3, False, "", media_kind="video_message"),
        ChatMessage(5, 4, False, "", media_kind="sticker"),
    ]
    (turn,) = merge_consecutive(messages, me="Me", peer="Anna")
    assert turn.text == "<photo>\n<photo> look at this\n<voice>\n<video_message>\n<sticker>"


def test_service_messages_and_empty_texts_are_dropped() -> None:
    messages = [
        ChatMessage(1, 0, True, "calling you"),
        ChatMessage(2, 1, False, "", service_kind="phone_call"),
        ChatMessage(3, 2, False, "   "),
        ChatMessage(4, 3, True, "pick up"),
    ]
    turns = merge_consecutive(messages, me="Me", peer="Anna")
    assert [(t.speaker, t.text) for t in turns] == [("Me", "calling you\npick up")]


# --- samples -------------------------------------------------------------------------------


def test_each_reply_of_mine_is_a_sample_with_the_session_so_far() -> None:
    result = samples_of(said("them: hi", "me: hey", "them: dinner?", "me: sure", "me: 8pm?"))
    assert [(s.input, s.output) for s in result.samples] == [
        ("Anna: hi", "hey"),
        ("Anna: hi\nMe: hey\nAnna: dinner?", "sure\n8pm?"),
    ]
    assert result.samples[0].instruction == render_instruction(me="Me", peer="Anna")
    assert "private chat with Anna" in result.samples[0].instruction


def test_a_session_opened_by_me_gives_no_sample_for_the_opening() -> None:
    result = samples_of(said("me: you up?", "them: yes", "me: great"))
    assert [s.output for s in result.samples] == ["great"]
    assert result.skipped == {"no_context": 1}


def test_forwarded_messages_are_context_never_my_words() -> None:
    messages = [
        ChatMessage(1, 0, False, "what do you think?"),
        ChatMessage(2, 1, True, "an article", forwarded=True),
        ChatMessage(3, 2, True, "this one is good"),
        ChatMessage(4, 3, False, "ok"),
        ChatMessage(5, 4, True, "spam", forwarded=True),
        ChatMessage(6, 5, False, "and?"),
        ChatMessage(7, 6, True, "that's all"),
    ]
    result = samples_of(messages)
    assert [s.output for s in result.samples] == ["this one is good", "that's all"]
    assert "Me: <forwarded> an article\nthis one is good" in result.samples[1].input
    assert result.skipped == {"forwarded_only": 1}


def test_media_only_replies_are_skipped_but_a_captioned_one_is_kept() -> None:
    messages = [
        ChatMessage(1, 0, False, "show me"),
        ChatMessage(2, 1, True, "", media_kind="sticker"),
        ChatMessage(3, 2, False, "and the cat?"),
        ChatMessage(4, 3, True, "here", media_kind="photo"),
    ]
    result = samples_of(messages)
    assert [s.output for s in result.samples] == ["<photo> here"]
    assert result.skipped == {"media_only": 1}


def test_context_is_trimmed_from_the_oldest_turn_to_fit() -> None:
    lines = []
    for i in range(20):
        lines += [f"them: question number {i} " + "x" * 40, f"me: answer {i}"]
    budget = CharBudget(max_seq_length=150)  # 450 characters
    result = samples_of(said(*lines), budget=budget)
    last = result.samples[-1]
    assert last.output == "answer 19"
    assert last.input.endswith("Anna: question number 19 " + "x" * 40)
    assert "question number 0 " not in last.input
    assert last.trimmed and not result.samples[0].trimmed
    prompt = render_prompt(instruction=last.instruction, input=last.input)
    assert last.length == len(prompt) + len(last.output) + 3 <= budget.limit
    for sample in result.samples:
        assert sample.length <= budget.limit


def test_a_reply_too_long_for_the_budget_is_skipped() -> None:
    result = samples_of(
        said("them: tell me everything", "me: " + "y" * 2000), budget=CharBudget(max_seq_length=200)
    )
    assert result.samples == []
    assert result.skipped == {"reply_too_long": 1}


def test_session_scores_are_stable_and_depend_on_the_seed() -> None:
    a = session_score(seed=1, peer_id=5, first_tg_id=10)
    assert a == session_score(seed=1, peer_id=5, first_tg_id=10)
    assert a != session_score(seed=2, peer_id=5, first_tg_id=10)
    scores = [session_score(seed=1, peer_id=5, first_tg_id=i) for i in range(2000)]
    assert 0.07 < sum(s < 0.1 for s in scores) / len(scores) < 0.13


# --- properties ----------------------------------------------------------------------------

GAPS = [0, 1, 59, 3600, DAY_SECONDS - 1, DAY_SECONDS, DAY_SECONDS + 120]


@st.composite
def dialogs(draw: st.DrawFn) -> list[ChatMessage]:
    messages, at = [], 0
    for i in range(draw(st.integers(0, 30))):
        at += draw(st.sampled_from(GAPS))
        messages.append(
            ChatMessage(
                tg_id=i + 1,
                sent_unix=at,
                out=draw(st.booleans()),
                text=draw(st.text(alphabet="ab ?:<>é7+-@", max_size=12)),
                media_kind=draw(st.sampled_from([None, None, None, "photo", "voice_message"])),
                service_kind=draw(st.sampled_from([None] * 6 + ["phone_call"])),
                forwarded=draw(st.booleans()),
            )
        )
    return messages


@settings(max_examples=100, deadline=None)
@given(dialogs(), st.sampled_from(GAPS[1:]))
def test_no_session_spans_a_gap_at_or_over_the_threshold(messages, gap: int) -> None:
    # Gaps are measured between messages someone said; service messages never bridge one.
    sessions = split_into_sessions(messages, gap_seconds=gap)
    assert [m for s in sessions for m in s] == messages
    said = [[m for m in s if is_said(m)] for s in sessions]
    for session in said:
        assert all(b.sent_unix - a.sent_unix < gap for a, b in itertools.pairwise(session))
    for before, after in itertools.pairwise(s for s in said if s):
        assert after[0].sent_unix - before[-1].sent_unix >= gap


def test_a_service_message_does_not_bridge_a_long_gap() -> None:
    hour = 3600
    messages = [
        ChatMessage(1, 0, False, "see you"),
        ChatMessage(2, 20 * hour, False, "", service_kind="pin_message"),
        ChatMessage(3, 40 * hour, True, "morning!"),
    ]
    sessions = split_into_sessions(messages, gap_seconds=DAY_SECONDS)
    assert [[m.tg_id for m in s] for s in sessions] == [[1, 2], [3]]


@settings(max_examples=100, deadline=None)
@given(dialogs())
def test_merging_loses_no_text(messages) -> None:
    turns = merge_consecutive(messages, me="Me", peer="Anna")
    lines = [line for t in turns for line in t.text.split("\n")]
    assert lines == [r for m in messages if (r := render_message(m)) is not None]
    assert all(a.mine != b.mine for a, b in itertools.pairwise(turns))


SCRUBBER = Scrubber()


@settings(max_examples=100, deadline=None)
@given(dialogs(), st.integers(60, 400))
def test_outputs_are_always_my_own_scrubbed_words(messages, max_seq_length: int) -> None:
    scrubbed = [m._replace(text=SCRUBBER.scrub(m.text).text) for m in messages]
    mine = {render_message(m) for m in scrubbed if m.out and not m.forwarded}
    budget = CharBudget(max_seq_length=max_seq_length)
    for session in iter_sessions(scrubbed, gap_seconds=DAY_SECONDS):
        for sample in samples_of(session, budget=budget).samples:
            assert sample.output.strip()
            assert all(line in mine for line in sample.output.split("\n"))
            assert sample.length <= budget.limit


@settings(max_examples=50, deadline=None)
@given(dialogs(), st.randoms(use_true_random=False))
def test_the_rules_are_deterministic(messages, rng: random.Random) -> None:
    shuffled = messages[:]
    rng.shuffle(shuffled)

    def run(ms: list[ChatMessage]) -> list[list[tuple[str, str]]]:
        return [
            [(s.input, s.output) for s in samples_of(session).samples]
            for session in split_into_sessions(ms)
        ]

    assert run(messages) == run(shuffled)


def test_the_examples_in_the_docstrings_hold() -> None:
    from twin.prepare import sessions

    assert doctest.testmod(sessions).failed == 0
