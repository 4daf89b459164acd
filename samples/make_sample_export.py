"""Write samples/sample_export/result.json: a synthetic full-account Telegram Desktop export.

Everything in it is invented. The owner, Alex, writes in lowercase, rarely uses full stops,
says "короче", "ну такое", "ахах" and "lol ok", and ends jokes with "))" or 🙃. Three personal
chats (Russian and English), a bot chat, saved messages and a group to be skipped; edits,
replies, forwards, media, phone calls and a few planted secrets for the scrubber.

Run ``python samples/make_sample_export.py`` (seeded: the same file every time).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

OWNER_ID = 5550001
OWNER = "Alex Morozov"
START_UNIX = 1_704_103_200  # 2024-01-01 10:00 UTC
OUT = Path(__file__).resolve().parent / "sample_export" / "result.json"

# The scrubber must find these: an email, a phone, a Luhn-valid card, a password, a code. Each
# sits in a short exchange, so that it reaches a sample (as my reply, or as context) and the
# dataset preview shows its placeholder.
SECRET_EXCHANGES: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "masha",
        [
            ("them", "Скинь свой мейл, пришлю билеты"),
            ("me", "мой мейл alex.morozov91@gmail.com, кидай туда"),
        ],
    ),
    (
        "dan",
        [
            ("them", "what number should I call when I land?"),
            ("me", "call me at +7 916 123-45-67 if anything"),
        ],
    ),
    (
        "mom",
        [
            ("them", "Куда тебе деньги перевести?"),
            ("me", "карта 4276 3801 2345 6787, переведи туда плиз"),
        ],
    ),
    (
        "masha",
        [
            ("them", "какой пароль от вайфая у тебя?"),
            ("me", "пароль от вайфая: kotik2019, только никому))"),
        ],
    ),
    (
        "mom",
        [
            ("them", "Пришёл код подтверждения 482915, это что?"),
            ("me", "мам, никому его не говори, это мошенники"),
        ],
    ),
]

# (speaker, text); "me" is the owner. Media as ("them", "<photo>") etc.
EXCHANGES: dict[str, list[list[tuple[str, str]]]] = {
    "masha": [
        [
            ("them", "Привет! Ты сегодня свободен?"),
            ("me", "привет) вечером да"),
            ("me", "а что такое"),
            ("them", "Хочу в кино сходить, на новый фильм"),
            ("me", "о, давай"),
            ("me", "во сколько?"),
            ("them", "В восемь?"),
            ("me", "ок, я за тобой заеду 🙃"),
        ],
        [
            ("them", "Как прошёл день?"),
            ("me", "ну такое"),
            ("me", "на работе завал"),
            ("them", "Бедный("),
            ("me", "короче завтра расскажу"),
            ("me", "сил нет уже"),
        ],
        [
            ("them", "<photo>"),
            ("them", "Смотри какой кот"),
            ("me", "ахах какой толстый"),
            ("me", "это чей?"),
            ("them", "Соседский) Приходит к нам каждый день"),
            ("me", "кормите его поди))"),
        ],
        [
            ("me", "слушай"),
            ("me", "а ты помнишь как того кафе название"),
            ("me", "где мы завтракали в прошлый раз"),
            ("them", "«Пышка» вроде"),
            ("me", "точно, спасибо"),
        ],
        [
            ("them", "Ты купил продукты?"),
            ("me", "неа, забыл"),
            ("me", "щас зайду"),
            ("them", "Молоко и хлеб не забудь"),
            ("me", "ок"),
        ],
        [
            ("them", "Поедем на выходных к моим?"),
            ("me", "давай"),
            ("me", "в субботу?"),
            ("them", "Да, к обеду"),
            ("me", "норм, я тогда торт куплю"),
        ],
        [
            ("me", "<voice>"),
            ("them", "Не могу слушать голосовые, напиши"),
            ("me", "ахах ладно"),
            ("me", "короче я опоздаю минут на 15"),
            ("them", "Ок, жду"),
        ],
        [
            ("them", "Что подарим Лёше на др?"),
            ("me", "хз"),
            ("me", "может наушники?"),
            ("them", "У него уже есть"),
            ("me", "ну тогда сертификат какой-нибудь"),
            ("me", "в спортмагаз например"),
        ],
        [
            ("them", "Ты спишь?"),
            ("me", "почти"),
            ("them", "Спокойной ночи)"),
            ("me", "спокойной 🙃"),
        ],
        [
            ("me", "<sticker>"),
            ("them", "Ахаха"),
            ("me", "лучший стикер"),
            ("them", "Откуда ты их берёшь"),
            ("me", "секрет))"),
        ],
    ],
    "dan": [
        [
            ("them", "Hey, did you push the fix?"),
            ("me", "yep, just now"),
            ("me", "tests are green"),
            ("them", "Great, thanks!"),
            ("me", "np"),
        ],
        [
            ("them", "Are you joining the standup?"),
            ("me", "5 min"),
            ("me", "coffee machine broke lol"),
            ("them", "Classic"),
        ],
        [
            ("them", "Can you review my PR when you get a chance?"),
            ("me", "sure"),
            ("me", "after lunch ok?"),
            ("them", "Perfect"),
            ("me", "left a couple comments, nothing major tbh"),
        ],
        [
            ("me", "lol ok"),
            ("me", "so the deploy failed again"),
            ("them", "What's the error?"),
            ("me", "same timeout as yesterday"),
            ("me", "i'll bump the limit and retry"),
            ("them", "Sounds good"),
        ],
        [
            ("them", "Any plans for the weekend?"),
            ("me", "not really"),
            ("me", "maybe hiking if the weather is ok"),
            ("them", "Nice, where?"),
            ("me", "somewhere near the lake, haven't decided yet 🙃"),
        ],
        [
            ("them", "<photo>"),
            ("them", "Look at this dashboard"),
            ("me", "wow that spike"),
            ("me", "what happened at 3am"),
            ("them", "No idea, checking logs"),
            ("me", "ping me if you need help"),
        ],
        [
            ("them", "Lunch?"),
            ("me", "yes pls"),
            ("me", "thai place?"),
            ("them", "Sure, 12:30"),
            ("me", "ok"),
        ],
        [
            ("me", "<video_message>"),
            ("them", "Haha, the office dog again?"),
            ("me", "she stole my sandwich lol"),
        ],
        [
            ("them", "Thanks for covering for me yesterday"),
            ("me", "no worries"),
            ("me", "you owe me a coffee tho))"),
        ],
        [
            ("them", "Did you see the new release notes?"),
            ("me", "skimmed them"),
            ("me", "the config change is gonna hurt tbh"),
            ("them", "Yeah..."),
            ("me", "we'll survive lol"),
        ],
    ],
    "mom": [
        [
            ("them", "Сынок, ты поел?"),
            ("me", "да мам"),
            ("me", "всё хорошо"),
            ("them", "Не забудь шапку, холодно"),
            ("me", "ок))"),
        ],
        [
            ("them", "Позвони бабушке, у неё день рождения"),
            ("me", "ой точно"),
            ("me", "щас позвоню"),
            ("them", "Молодец"),
        ],
        [
            ("them", "Когда приедешь?"),
            ("me", "в субботу наверно"),
            ("me", "короче напишу точно в пятницу"),
            ("them", "Хорошо, пирог испеку"),
        ],
        [
            ("them", "<photo>"),
            ("them", "Смотри какие помидоры выросли"),
            ("me", "ого)) огромные"),
            ("me", "мам ты лучшая"),
        ],
        [
            ("them", "Как на работе?"),
            ("me", "нормально"),
            ("me", "проект сдали наконец"),
            ("them", "Поздравляю! Отдохни теперь"),
            ("me", "постараюсь 🙃"),
        ],
        [("them", "Ты видел, что папа прислал?"), ("me", "неа, щас гляну"), ("me", "ахах смешно")],
    ],
}

PEERS = {
    "masha": (5550002, "Маша", 6),
    "dan": (5550003, "Dan Whitaker", 5),
    "mom": (5550004, "Мама", 4),
}

MEDIA: dict[str, dict[str, Any]] = {
    "<photo>": {"photo": "photos/photo_1@01-01-2024_10-00-00.jpg", "width": 1280, "height": 960},
    "<voice>": {
        "file": "voice_messages/audio_1.ogg",
        "media_type": "voice_message",
        "mime_type": "audio/ogg",
        "duration_seconds": 7,
    },
    "<sticker>": {
        "file": "stickers/sticker.webp",
        "media_type": "sticker",
        "sticker_emoji": "😂",
        "width": 512,
        "height": 512,
    },
    "<video_message>": {
        "file": "round_video_messages/file_1.mp4",
        "media_type": "video_message",
        "mime_type": "video/mp4",
        "duration_seconds": 9,
    },
}


def _iso(unix: int) -> str:
    # Telegram Desktop writes the exporting machine's local time; we pretend it was UTC+3.
    return (dt.datetime.fromtimestamp(unix, dt.UTC) + dt.timedelta(hours=3)).strftime(
        "%Y-%m-%dT%H:%M:%S"
    )


def _text(text: str) -> dict[str, Any]:
    """``text`` and ``text_entities`` the way the exporter writes them (links as entities)."""
    parts: list[Any] = []
    entities = []
    for word in text.split(" "):
        kind = "link" if word.startswith("http") else "email" if "@" in word else "plain"
        piece = word if not parts else " " + word
        if kind != "plain":
            if parts:
                parts.append(" ")
                entities.append({"type": "plain", "text": " "})
            parts.append({"type": kind, "text": word})
            entities.append({"type": kind, "text": word})
        elif parts and isinstance(parts[-1], str):
            parts[-1] += piece
            entities[-1]["text"] += piece
        else:
            parts.append(piece)
            entities.append({"type": "plain", "text": piece})
    if all(isinstance(p, str) for p in parts):
        return {"text": "".join(parts), "text_entities": entities}
    return {"text": parts, "text_entities": entities}


class _Chat:
    def __init__(self, rng: random.Random, peer_id: int, name: str) -> None:
        self.rng, self.peer_id, self.name = rng, peer_id, name
        self.messages: list[dict[str, Any]] = []

    def add(self, ids: list[int], unix: int, speaker: str, text: str) -> dict[str, Any]:
        ids[0] += 1
        mine = speaker == "me"
        m: dict[str, Any] = {
            "id": ids[0],
            "type": "message",
            "date": _iso(unix),
            "date_unixtime": str(unix),
            "from": OWNER if mine else self.name,
            "from_id": f"user{OWNER_ID if mine else self.peer_id}",
        }
        if text in MEDIA:
            m.update(MEDIA[text])
            m.update(_text(""))
        else:
            m.update(_text(text))
        self.messages.append(m)
        return m

    def call(self, ids: list[int], unix: int) -> None:
        ids[0] += 1
        self.messages.append(
            {
                "id": ids[0],
                "type": "service",
                "date": _iso(unix),
                "date_unixtime": str(unix),
                "actor": OWNER,
                "actor_id": f"user{OWNER_ID}",
                "action": "phone_call",
                "duration_seconds": self.rng.randint(20, 900),
                "text": "",
                "text_entities": [],
            }
        )


def build_export(seed: int = 7) -> dict[str, Any]:
    """The whole export as a dict (pure: same seed, same export)."""
    rng = random.Random(seed)
    ids = [100]
    chats = {key: _Chat(rng, peer_id, name) for key, (peer_id, name, _) in PEERS.items()}
    sessions: list[tuple[str, list[tuple[str, str]]]] = []
    for key, exchanges in EXCHANGES.items():
        for _ in range(PEERS[key][2]):
            sessions += [(key, ex) for ex in exchanges]
    sessions += SECRET_EXCHANGES
    rng.shuffle(sessions)
    unix = START_UNIX
    for key, exchange in sessions:
        unix += rng.randint(1, 4) * 86_400 + rng.randint(0, 36_000)  # days apart: new session
        chat = chats[key]
        first = len(chat.messages)
        for speaker, text in exchange:
            unix += rng.randint(5, 240)
            m = chat.add(ids, unix, speaker, text)
            roll = rng.random()
            if roll < 0.06 and len(chat.messages) > first + 1:
                m["reply_to_message_id"] = chat.messages[
                    rng.randrange(first, len(chat.messages) - 1)
                ]["id"]
            elif roll < 0.10 and speaker == "me" and text not in MEDIA:
                m["edited"] = _iso(unix + 30)
                m["edited_unixtime"] = str(unix + 30)
        if rng.random() < 0.12:
            unix += 60
            chat.call(ids, unix)
        if rng.random() < 0.06:
            unix += 30
            m = chat.add(
                ids,
                unix,
                rng.choice(["me", "them"]),
                "смотри что пишут https://example.org/news/42",
            )
            m["forwarded_from"] = "Новости дня"
    unsupported = chats["dan"].add(ids, unix + 60, "them", "")
    unsupported.update({"type": "unsupported"})
    personal = [
        {"name": c.name, "type": "personal_chat", "id": c.peer_id, "messages": c.messages}
        for c in chats.values()
    ]
    skipped = [
        _other("bot_chat", 93372553, "BotFather", ["/start", "/newbot"], ids, unix),
        _other(
            "saved_messages",
            OWNER_ID,
            None,
            ["список покупок: молоко, хлеб", "idea: bike"],
            ids,
            unix,
        ),
        _other("private_group", 4000001, "Друзья", ["кто в субботу на шашлыки?", "я!"], ids, unix),
    ]
    return {
        "about": "Here is the data you requested. Remember: Telegram is ad free, it doesn't "
        "use your data for ad targeting and doesn't sell it to others.",
        "personal_information": {
            "user_id": OWNER_ID,
            "first_name": "Alex",
            "last_name": "Morozov",
            "phone_number": "+7 916 123 4567",
            "username": "@alexmor",
            "bio": "",
        },
        "chats": {
            "about": "This page lists all chats from this export.",
            "list": personal + skipped,
        },
        "left_chats": {
            "about": "This page lists all supergroups and channels you've left.",
            "list": [],
        },
    }


def _other(
    kind: str, chat_id: int, name: str | None, texts: list[str], ids: list[int], unix: int
) -> dict[str, Any]:
    chat: dict[str, Any] = {"type": kind, "id": chat_id}
    if name:
        chat = {"name": name, **chat}
    messages = []
    for i, text in enumerate(texts):
        ids[0] += 1
        messages.append(
            {
                "id": ids[0],
                "type": "message",
                "date": _iso(unix + i),
                "date_unixtime": str(unix + i),
                "from": OWNER,
                "from_id": f"user{OWNER_ID}",
                **_text(text),
            }
        )
    chat["messages"] = messages
    return chat


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(build_export(), ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
