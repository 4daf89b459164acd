"""The one prompt format shared by the dataset and the chat.

A sample is litgpt's JSON record: ``instruction`` names who I am talking to, ``input`` is the
conversation so far with every turn tagged by its speaker, ``output`` is my next turn (untagged).
At inference the chat builds its prompt with the same functions, so the model sees exactly the
shape it was trained on, and a reply ends where the next speaker tag would begin.

Example (``render_context``)::

    Anna: are you coming tonight?
    Anna: <photo>
    Me: yes! what time?
    Anna: 8, at Marco's

(a merged turn keeps its own line breaks; each turn starts on a new line with ``Name: ``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from twin.errors import PrepareError
from twin.prepare.scrub import Scrubber
from twin.prepare.scrub.common import FORMAT_CHARS_RE, PLACEHOLDER_RE

TAG_SEPARATOR = ": "
"""Between a speaker's name and their text."""
TURN_SEPARATOR = "\n"
"""Between two tagged turns."""
# litgpt's JSON data module defaults to its Alpaca prompt style; training and chat use the same
# template so that `litgpt finetune_lora --data JSON` and twin read the files the same way. It is
# spelled out here because importing litgpt.prompts loads torch (seconds, hundreds of MB) for
# every process that only prepares data; tests/test_prepare_format.py checks that it stays equal
# to litgpt's `Alpaca().apply`.
_ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
_ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


class Turn(BaseModel):
    """One speaker's consecutive messages, merged."""

    speaker: str
    """Display name used in the tag."""
    text: str
    mine: bool
    """True when the owner said it."""


def clean_name(name: str) -> str:
    """A display name safe to use as a tag: one line, no separator, never empty.

    Args:
        name: the raw display name.

    >>> clean_name("  Anna\\n: K. ")
    'Anna K.'
    """
    return _one_line(name) or "Someone"


def _one_line(name: str) -> str:
    # Invisible characters go too: a name of only zero-width spaces would be an invisible tag.
    return " ".join(FORMAT_CHARS_RE.sub("", name).replace(":", " ").split())


NEUTRAL_ME = "Me"
NEUTRAL_PEER = "Contact"


def speaker_names(*, me: str, peer: str, scrubber: Scrubber | None = None) -> tuple[str, str]:
    """The ``(me, peer)`` names to tag turns with, safe to train on and tell apart.

    A contact saved as "+7 916 555 12 34" or "Вася ivan.petrov@mail.ru" would put that number
    or address into every sample: the scrubber (with its blocklist) runs over names too, and
    what it finds is dropped. A name with nothing left becomes a neutral tag; a peer with the
    owner's own name gets a suffix, so tags and stop sequences never collide.

    Args:
        me: the owner's display name.
        peer: the other person's display name.
        scrubber: the dataset's scrubber; names are only cleaned when omitted.

    >>> speaker_names(me="Alex", peer="alex")
    ('Alex', 'alex (contact)')
    """
    me_tag = _scrubbed_name(me, scrubber) or NEUTRAL_ME
    peer_tag = _scrubbed_name(peer, scrubber) or NEUTRAL_PEER
    if peer_tag.casefold() == me_tag.casefold():
        peer_tag = f"{peer_tag} ({NEUTRAL_PEER.lower()})"
    return me_tag, peer_tag


def _scrubbed_name(name: str, scrubber: Scrubber | None) -> str:
    cleaned = _one_line(name)
    if cleaned and scrubber is not None:
        result = scrubber.scrub(cleaned)
        if result.found:
            words = PLACEHOLDER_RE.sub(" ", result.text).split()
            cleaned = " ".join(w for w in words if any(c.isalnum() for c in w))
    return _one_line(cleaned)


def tag_turn(turn: Turn) -> str:
    """``"Name: text"`` for one turn.

    Args:
        turn: the turn to tag.
    """
    return f"{clean_name(turn.speaker)}{TAG_SEPARATOR}{turn.text}"


def render_context(turns: Sequence[Turn]) -> str:
    """The tagged conversation, oldest first, one turn per line (a sample's ``input``).

    Args:
        turns: the turns before the reply.
    """
    return TURN_SEPARATOR.join(tag_turn(t) for t in turns)


def render_instruction(*, me: str, peer: str) -> str:
    """The sample's ``instruction``: who I am and who I am talking to.

    Args:
        me: the owner's display name.
        peer: the other person's display name.
    """
    return (
        f"You are {clean_name(me)}. Write {clean_name(me)}'s next message "
        f"in this private chat with {clean_name(peer)}."
    )


def record_speakers(record: Mapping[str, Any]) -> tuple[str, str]:
    """``(me, peer)`` of a dataset record: prepare writes the names next to the instruction it
    renders from them, so nothing has to read them back out of the sentence.

    Args:
        record: a sample of ``train.json`` or ``val.json``.
    """
    me, peer = record.get("me"), record.get("peer")
    if not (isinstance(me, str) and me and isinstance(peer, str) and peer):
        raise PrepareError(
            "A sample of the dataset does not say who speaks in it (no `me` and `peer`).",
            hint="Rebuild the dataset with `twin prepare` (older versions did not write them).",
        )
    return me, peer


def render_prompt(*, instruction: str, input: str) -> str:
    """The full model prompt for a sample or a chat request (the litgpt prompt style applied).

    Args:
        instruction: from `render_instruction`.
        input: from `render_context`.
    """
    if input:
        return _ALPACA_WITH_INPUT.format(instruction=instruction, input=input)
    return _ALPACA_NO_INPUT.format(instruction=instruction)


def stop_sequences(*, me: str, peer: str) -> list[str]:
    """Strings that mark the end of my reply: the start of the next tagged turn.

    Args:
        me: the owner's display name.
        peer: the other person's display name.
    """
    return [f"{TURN_SEPARATOR}{clean_name(n)}{TAG_SEPARATOR}" for n in (peer, me)]


def scaffold_markers(*, me: str, peer: str) -> list[str]:
    """Prompt text that never belongs in a reply: the template's section headers, its opening
    sentence and the instruction line (a model may write them after its turn).

    Args:
        me: the owner's display name.
        peer: the other person's display name.
    """
    # "###" opens every section header; a model may also write a header of its own making, or a
    # header's name without its "###" ("later Input: later").
    opening = _ALPACA_NO_INPUT.split(". ", 1)[0]  # "Below is an instruction that describes a task"
    headers = ["Instruction:", "Input:", "Response:"]
    return ["###", *headers, opening, render_instruction(me=me, peer=peer)]


BROKEN_CHAR = "\ufffd"
"""What a decoder writes for bytes that are not a whole UTF-8 character (a letter or emoji cut
between tokens, or bytes a small model strung together that spell nothing)."""
# ... and the control characters such bytes also decode to (a small model's byte tokens), which
# a browser draws as empty boxes; line breaks and tabs stay.
_BROKEN_RE = re.compile(f"[{BROKEN_CHAR}\x00-\x08\x0b-\x1f\x7f-\x9f]")


def reply_stops(*, me: str, peer: str) -> list[str]:
    """Text that ends my reply wherever it appears: a speaker's tag — also glued to my last
    words with no line break before it, as a small model writes ("hiOlga Owner: ") — and the
    prompt's scaffolding (`scaffold_markers`).

    Args:
        me: my display name.
        peer: the other person's display name.
    """
    colon = TAG_SEPARATOR.rstrip()
    tags = [f"{clean_name(n)}{colon}{after}" for n in (peer, me) for after in (" ", "\n")]
    return [*tags, *scaffold_markers(me=me, peer=peer)]


def without_broken_chars(text: str) -> str:
    """``text`` without `BROKEN_CHAR` and control characters: a reply never shows half a
    character or a stray byte.

    >>> without_broken_chars("ok\\ufffd\\x03 fine\\n")
    'ok fine\\n'
    """
    return _BROKEN_RE.sub("", text)


def clean_reply(text: str, *, me: str, peer: str) -> str:
    """Only my words from what a model wrote for my turn.

    The reply ends at the first of `reply_stops`, or before a tag it ends on (the length limit
    cut the next turn's header after its colon); my own tag opening it is dropped, and so are
    broken characters and trailing blanks. A streamed reply shows the same text
    (`twin.chat.generate`).

    Args:
        text: what the model wrote after the prompt.
        me: my display name.
        peer: the other person's display name.

    >>> clean_reply("Olga: ok\\ufffd, 8 it isAnna:", me="Olga", peer="Anna")
    'ok, 8 it is'
    """
    text = without_broken_chars(text).removeprefix(f"{clean_name(me)}{TAG_SEPARATOR}")
    cuts = [i for i in (text.find(s) for s in reply_stops(me=me, peer=peer)) if i >= 0]
    text = text[: min(cuts, default=len(text))].rstrip()
    colon = TAG_SEPARATOR.rstrip()
    for name in (clean_name(peer), clean_name(me)):
        text = text.removesuffix(f"{name}{colon}")
    return text.rstrip()
