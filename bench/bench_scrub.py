"""Throughput of `Scrubber.scrub` on a realistic mix of chat messages.

Prints messages/s for the scrubber and for NFKC normalization alone (the floor any scrubber
pays), measured in the same run on the same messages. Run: python bench/bench_scrub.py [N]
"""

from __future__ import annotations

import random
import sys
import time
import unicodedata

from twin.prepare.scrub import Scrubber

ORDINARY = [
    "привет, как дела?",
    "ок",
    "буду через 10 минут",
    "купи молока и хлеба",
    "ахахах 😂",
    "see you at 5",
    "sounds good, thanks!",
    "what time is the meeting tomorrow?",
    "цена 1 500 ₽, доставка завтра",
    "рейс SU 1234 задерживается на 2 часа",
    "order #123456 shipped",
    "созвонимся вечером?",
    "дякую, до зустрічі",
    "cześć, jutro o 18?",
    "bis später im Büro",
    "встреча 12.05.2024 в 10:30 у метро",
    "скинь фотки с выходных",
    "I forgot my password again",
    "забыл пароль от почты",
    "the code review is on Friday",
    "https://youtu.be/dQw4w9WgXcQ",
    "ну давай тогда в субботу, если погода будет нормальная, можно и на шашлыки съездить",
    "обнови до v1.2.3, там починили",
    "коммит 3f2a9c1 всё сломал",
    "@durov глянь",
    "ладно",
]
SECRETS = [
    "пиши на ivan.petrov@gmail.com",
    "звони +7 916 123-45-67",
    "карта 4111 1111 1111 1111",
    "пароль от wifi — qwerty123",
    "код 4821",
    "IBAN DE89 3704 0044 0532 0130 00",
    "токен 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0",
    "password is hunter2",
    "https://example.com/reset?token=abc123def456",
    "your code is 55-21-90",
]


def make_messages(n: int, secret_share: float = 0.03, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    pool = [rng.choice(SECRETS if rng.random() < secret_share else ORDINARY) for _ in range(n)]
    # Vary the text a little so that no cache sees only a handful of distinct strings.
    return [f"{text} {rng.randint(0, 99)}" if rng.random() < 0.3 else text for text in pool]


def rate(fn, messages: list[str]) -> float:
    start = time.perf_counter()
    for message in messages:
        fn(message)
    return len(messages) / (time.perf_counter() - start)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    messages = make_messages(n)
    scrubber = Scrubber()
    scrubber.scrub("warm up +7 916 123-45-67")
    baseline = rate(lambda text: unicodedata.normalize("NFKC", text), messages)
    scrubbed = rate(scrubber.scrub, messages)
    print(f"messages:            {n}")
    print(f"NFKC only:           {baseline:,.0f} msg/s")
    print(f"Scrubber.scrub:      {scrubbed:,.0f} msg/s")
    print(f"scrub / NFKC ratio:  {scrubbed / baseline:.3f}")


if __name__ == "__main__":
    main()
