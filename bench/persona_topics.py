"""The conversations `make_persona_export.py` combines: openers, topics and closers per register.

The phrases are in `persona_topics.json`. A turn is ``(speaker, variants)``: ``speaker`` is
``"me"`` or ``"them"``, one variant is picked, ``{slots}`` are filled from `SLOTS` and `` | ``
splits a turn into consecutive messages. My turns are written the way the persona writes
(lowercase, no final period, "ахах", "ну да", "го"); the persona's smileys and emoji are added by
the generator, the contacts' style too.

The registers: friends, in Russian (how a conversation starts, what it is about, how it ends);
mum (the same lowercase person, warmer, without slang); a colleague (polite, short);
English-speaking contacts (the same persona in English: lowercase, short, "haha"); and a friend
who mixes languages, as IT people in Moscow do.
"""

from __future__ import annotations

import json
from pathlib import Path

Turn = tuple[str, list[str]]
Dialogue = list[Turn]

_DATA = json.loads((Path(__file__).with_suffix(".json")).read_text(encoding="utf-8"))

SLOTS: dict[str, list[str]] = _DATA["slots"]


def _dialogues(name: str) -> list[Dialogue]:
    return [[(speaker, variants) for speaker, variants in turns] for turns in _DATA[name]]


FRIEND_TOPICS = _dialogues("friend_topics")
REGISTERS: dict[str, tuple[list[Dialogue], list[Dialogue], list[Dialogue]]] = {
    "friend": (_dialogues("friend_openers"), FRIEND_TOPICS, _dialogues("friend_closers")),
    "mum": (_dialogues("mum_openers"), _dialogues("mum_topics"), _dialogues("mum_closers")),
    "work": ([[]], _dialogues("work_topics"), [[]]),
    "english": (_dialogues("en_openers"), _dialogues("en_topics"), _dialogues("en_closers")),
    "mixed": (
        _dialogues("friend_openers"),
        _dialogues("mixed_topics") + FRIEND_TOPICS[:6],
        _dialogues("friend_closers"),
    ),
}
