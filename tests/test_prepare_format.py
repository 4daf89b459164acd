"""The prompt template stays litgpt's Alpaca style, so litgpt and twin read datasets alike."""

from __future__ import annotations

import pytest
from litgpt.prompts import Alpaca

from twin.errors import PrepareError
from twin.prepare.format import (
    Turn,
    clean_reply,
    record_speakers,
    render_context,
    render_instruction,
    render_prompt,
    stop_sequences,
)


@pytest.mark.parametrize("context", ["Anna: привет\nMe: hi", ""])
def test_render_prompt_equals_litgpt_alpaca(context: str) -> None:
    instruction = render_instruction(me="Ivan", peer="Anna")
    assert render_prompt(instruction=instruction, input=context) == Alpaca().apply(
        instruction, input=context
    )


def test_tags_are_one_line_names_and_stop_sequences_match_them() -> None:
    turns = [Turn(speaker="Anna\n: K.", text="are you coming?", mine=False)]
    assert render_context(turns) == "Anna K.: are you coming?"
    assert stop_sequences(me="Ivan", peer="Anna\n: K.") == ["\nAnna K.: ", "\nIvan: "]


@pytest.mark.parametrize(
    ("generated", "shown"),
    [
        ("hiOlga Owner: how are you", "hi"),
        ("hiOlga Owner:", "hi"),
        ("fine\ufffd\ufffd", "fine"),
        ("ok\x03\x12 then\x0b", "ok then"),  # stray bytes of a small model
        ("Olga Owner: sure\n### Input:", "sure"),
        ("Anna is late", "Anna is late"),
    ],
)
def test_clean_reply_keeps_only_my_words(generated: str, shown: str) -> None:
    assert clean_reply(generated, me="Olga Owner", peer="Anna") == shown


def test_a_sample_that_does_not_say_who_speaks_asks_for_a_rebuild() -> None:
    older = {"instruction": render_instruction(me="Ivan", peer="Anna"), "input": "", "output": "x"}
    with pytest.raises(PrepareError, match="who speaks") as raised:
        record_speakers(older)
    assert "twin prepare" in (raised.value.hint or "")
