"""A realistic multilingual Telegram Desktop export of an invented person, to measure fidelity.

Artём Белов (fictional) writes in lowercase, short, without a final period, ends friendly
messages with ")" or "))", now and then 😂 👍 🙃, and says "ахах", "ну да", "го", "норм". With
his mum he is warmer and drops the slang; with a colleague he is polite; with three English
friends he writes the same way in English; with one friend he mixes Russian and English.
Fourteen contacts, each with their own habits (capitals, full stops, emoji, laughter), talk to
him in sessions spread over nine months, built from combinable openers, topics and closers
(`persona_topics.py`), so the same exchange rarely repeats word for word.

    python bench/make_persona_export.py [--out persona.json] [--sessions 400] [--seed 1]

Importable: `build_persona_export` returns the export as a dict (same seed, same export).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "samples"))

from make_sample_export import _iso, _text  # noqa: E402
from persona_topics import REGISTERS, SLOTS, Dialogue  # noqa: E402

OWNER_ID = 7770001
OWNER = "Артём Белов"
START_UNIX = 1_706_770_800  # 2024-02-01 07:00 UTC
DAYS = 270
SMILEY_EMOJI = ["😂", "👍", "🙃", "🔥"]


@dataclass(frozen=True)
class Contact:
    """Someone the persona talks to, and how they write."""

    peer_id: int
    name: str
    register: str
    """Which conversations (`persona_topics.REGISTERS`) and which of my habits apply."""
    weight: int
    """How often we talk, relative to the others."""
    capitals: bool = True
    full_stop: float = 0.0
    """The share of their messages that end with a full stop."""
    emoji: str = ""
    emoji_rate: float = 0.0


CONTACTS = [
    Contact(7770002, "Мама", "mum", 6, full_stop=0.6, emoji="❤️🌸", emoji_rate=0.15),
    Contact(7770003, "Папа", "mum", 2, full_stop=0.8),
    Contact(7770004, "Дима", "friend", 6, capitals=False, emoji="😂", emoji_rate=0.2),
    Contact(7770005, "Костя Лебедев", "friend", 4),
    Contact(7770006, "Лена", "friend", 4, emoji="😅😊", emoji_rate=0.25),
    Contact(7770007, "Катя", "friend", 6, capitals=False, emoji="😘😊", emoji_rate=0.3),
    Contact(7770008, "Никита", "friend", 3, capitals=False),
    Contact(7770009, "Саша Ким", "friend", 3, full_stop=0.3),
    Contact(7770010, "Оля", "friend", 2, emoji="🙈", emoji_rate=0.2),
    Contact(7770011, "Миша", "mixed", 5, capitals=False, emoji="🤦", emoji_rate=0.1),
    Contact(7770012, "Игорь Петрович", "work", 3, full_stop=0.9),
    Contact(7770013, "Tom Baker", "english", 4, full_stop=0.2, emoji="😂", emoji_rate=0.1),
    Contact(7770014, "Priya Nair", "english", 3, emoji="😊🙌", emoji_rate=0.25),
    Contact(7770015, "Jonas Weber", "english", 2, full_stop=0.5),
]

# How likely the persona is to add ")" / an emoji to a turn, by register.
SMILEY_RATE = {"friend": 0.3, "mixed": 0.25, "mum": 0.2, "english": 0.15, "work": 0.0}
EMOJI_RATE = {"friend": 0.07, "mixed": 0.07, "mum": 0.0, "english": 0.05, "work": 0.0}
SLOT = re.compile(r"\{(\w+)\}")


def my_style(text: str, register: str, rng: random.Random) -> str:
    """The persona's habits applied to one message: lowercase, no final period, ")" smileys."""
    text = text.lower().rstrip(".")
    if text and not text[-1].isalnum():
        return text  # already ends in an emoji, ")" or "?"
    roll = rng.random()
    if roll < SMILEY_RATE[register]:
        return text + rng.choice([")", ")", "))"])
    if roll < SMILEY_RATE[register] + EMOJI_RATE[register]:
        return f"{text} {rng.choice(SMILEY_EMOJI)}"
    return text


def their_style(text: str, contact: Contact, rng: random.Random) -> str:
    """A contact's habits: capitals or not, full stops, their own emoji."""
    if not contact.capitals:
        text = text.lower()
    if text[-1].isalnum() and rng.random() < contact.full_stop:
        text += "."
    if contact.emoji and rng.random() < contact.emoji_rate:
        text += " " + rng.choice(list(contact.emoji.replace("\ufe0f", "")))
    return text


def fill(text: str, rng: random.Random) -> str:
    """Fill each ``{slot}`` with one of its values."""
    return SLOT.sub(lambda m: rng.choice(SLOTS[m.group(1)]), text)


def session_turns(contact: Contact, rng: random.Random) -> list[tuple[str, str]]:
    """One conversation: an opener, one to three topics, maybe a closer; as (speaker, text)."""
    openers, topics, closers = REGISTERS[contact.register]
    parts: list[Dialogue] = [rng.choice(openers)]
    parts += rng.sample(topics, k=min(len(topics), rng.choice([1, 1, 2, 2, 3])))
    parts.append(rng.choice(closers))
    messages = []
    for dialogue in parts:
        for speaker, variants in dialogue:
            for piece in fill(rng.choice(variants), rng).split(" | "):
                if speaker == "me":
                    messages.append(("me", my_style(piece, contact.register, rng)))
                else:
                    messages.append(("them", their_style(piece, contact, rng)))
    return messages


def _message(msg_id: int, unix: int, speaker: str, text: str, contact: Contact) -> dict[str, Any]:
    mine = speaker == "me"
    return {
        "id": msg_id,
        "type": "message",
        "date": _iso(unix),
        "date_unixtime": str(unix),
        "from": OWNER if mine else contact.name,
        "from_id": f"user{OWNER_ID if mine else contact.peer_id}",
        **_text(text),
    }


def build_persona_export(*, sessions: int = 400, seed: int = 1) -> dict[str, Any]:
    """The whole export as a dict: ``sessions`` conversations over nine months (pure, seeded).

    Args:
        sessions: conversations in all, shared among the contacts by their weight; each
            contact's fall on different days, so every one is a session of its own.
        seed: the same seed gives the same export.
    """
    rng = random.Random(seed)
    who = rng.choices(CONTACTS, weights=[c.weight for c in CONTACTS], k=sessions)
    chats: dict[int, list[dict[str, Any]]] = {c.peer_id: [] for c in CONTACTS}
    msg_id = 1000
    for contact in CONTACTS:
        count = sum(1 for c in who if c is contact)
        # Distinct days two apart: conversations in one chat are more than a day apart.
        days = sorted(rng.sample(range(0, DAYS, 2), k=min(count, DAYS // 2)))
        for day in days:
            unix = START_UNIX + day * 86_400 + rng.randint(2, 15) * 3600 + rng.randint(0, 3599)
            previous = None
            for speaker, text in session_turns(contact, rng):
                unix += rng.randint(3, 25) if speaker == previous else rng.randint(15, 400)
                previous = speaker
                msg_id += 1
                chats[contact.peer_id].append(_message(msg_id, unix, speaker, text, contact))
    return {
        "about": "Here is the data you requested. Remember: Telegram is ad free, it doesn't "
        "use your data for ad targeting and doesn't sell it to others.",
        "personal_information": {
            "user_id": OWNER_ID,
            "first_name": "Артём",
            "last_name": "Белов",
            "phone_number": "+7 900 000 0000",
            "username": "@artem_example",
            "bio": "",
        },
        "chats": {
            "about": "This page lists all chats from this export.",
            "list": [
                {
                    "name": c.name,
                    "type": "personal_chat",
                    "id": c.peer_id,
                    "messages": chats[c.peer_id],
                }
                for c in CONTACTS
            ],
        },
        "left_chats": {
            "about": "This page lists all supergroups and channels you've left.",
            "list": [],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("persona_export.json"))
    parser.add_argument("--sessions", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    export = build_persona_export(sessions=args.sessions, seed=args.seed)
    args.out.write_text(json.dumps(export, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    mine = sum(
        m["from_id"] == f"user{OWNER_ID}" for c in export["chats"]["list"] for m in c["messages"]
    )
    total = sum(len(c["messages"]) for c in export["chats"]["list"])
    print(f"wrote {args.out}: {total} messages, {mine} mine, {len(CONTACTS)} contacts")


if __name__ == "__main__":
    main()
