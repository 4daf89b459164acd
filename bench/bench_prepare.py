"""Speed and peak memory of `twin.prepare.prepare_dataset`, against reading the store alone.

    python bench/bench_prepare.py [--messages 1000000] [--dialogs 200] [--tokenizer]

Fills a fresh SQLite store with generated chats (through `twin.store.upsert_messages`, in
bulk), then in fresh subprocesses (1) reads every message with one SELECT (the baseline: the
fastest the rules could be fed) and (2) runs `prepare_dataset` end to end (store → files).
Prints messages/s, the ratio prepare/baseline, each child's peak RSS, the time split
(read / rules / scrub / write) and the scrubber alone in messages/s. ``--tokenizer`` adds a run
that measures lengths with a small byte-level BPE instead of the character budget.

The machine may be shared: absolute figures move with the load; the ratios are the figures to
compare. Goal: ≥ 20k messages/s on one core and ≤ 1 GB RSS for a million messages.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
mode, data_dir, out_dir, tokenizer = sys.argv[1:5]
from twin.config import Settings
settings = Settings(data_dir=data_dir)
started = time.perf_counter()
timings, extra = {}, {}
if mode == "read":
    import sqlite3
    connection = sqlite3.connect(Path(data_dir) / "twin.sqlite3")
    cursor = connection.execute(
        "SELECT tg_id, sent_unix, out, text, media_kind, service_kind, forwarded FROM message "
        "ORDER BY dialog_id, sent_unix, tg_id")
    n = 0
    while rows := cursor.fetchmany(8192):
        n += len(rows)
else:
    from twin.prepare import prepare_dataset  # pulls in litgpt, lightning and torch
    extra["import_seconds"] = time.perf_counter() - started
    extra["import_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    stats = prepare_dataset(settings=settings, out_dir=Path(out_dir), min_messages=1,
                            tokenizer_dir=Path(tokenizer) if tokenizer else None)
    n, timings = stats.messages, stats.timings
    extra |= {"samples": stats.samples_train + stats.samples_val, "trimmed": stats.trimmed,
             "scrubbed": sum(stats.scrub_totals.values()), "unit": stats.length_unit}
seconds = time.perf_counter() - started
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"n": n, "seconds": seconds, "rss_mb": rss_mb, "timings": timings, **extra}))
"""

VOCABULARY = (
    "привет как дела что делаешь сегодня завтра вечером давай встретимся хорошо ладно да нет "
    "конечно спасибо слушай кстати работа дом кино кофе пицца hi how are you doing today "
    "tomorrow tonight sure thanks lol ok great see you later where when what why maybe"
)
WORDS = VOCABULARY.split()
MEDIA = ["photo", "voice", "sticker", "video_message", "animation"]
SECRETS = ["call me +7 912 345-67-89", "mail me at ivan.petrov@example.com", "пароль: qwe123!"]


def random_text(rng: random.Random) -> str:
    if rng.random() < 0.01:
        return rng.choice(SECRETS)
    return " ".join(rng.choices(WORDS, k=rng.randint(1, 18)))


def fill_store(data_dir: Path, *, n_messages: int, n_dialogs: int, seed: int = 0) -> float:
    """Generate ``n_messages`` over ``n_dialogs`` chats; return the seconds it took."""
    from twin.config import Settings
    from twin.db import session_scope, upgrade_database
    from twin.models import Source
    from twin.store import ChatMessage, upsert_dialog, upsert_messages

    started = time.perf_counter()
    settings = Settings(data_dir=data_dir)
    upgrade_database(settings)
    rng = random.Random(seed)
    per_dialog = n_messages // n_dialogs
    for d in range(n_dialogs):
        at, out, batch = 1_600_000_000, False, []
        for i in range(per_dialog):
            # Runs of one speaker (1–3 messages), minutes apart, now and then days of silence.
            if rng.random() < 0.55:
                out = not out
            at += (
                rng.randint(2 * 86_400, 9 * 86_400) if rng.random() < 0.01 else rng.randint(5, 900)
            )
            media = rng.choice(MEDIA) if rng.random() < 0.05 else None
            batch.append(
                ChatMessage(
                    tg_id=i + 1,
                    sent_unix=at,
                    out=out,
                    text="" if media and rng.random() < 0.7 else random_text(rng),
                    media_kind=media,
                    service_kind="phone_call" if rng.random() < 0.003 else None,
                    forwarded=rng.random() < 0.02,
                )
            )
        with session_scope(settings) as session:
            dialog = upsert_dialog(session, peer_id=10_000 + d, name=f"Friend {d}")
            assert dialog.id is not None
            upsert_messages(session, dialog_id=dialog.id, messages=batch, source=Source.export)
    return time.perf_counter() - started


def write_tokenizer(directory: Path) -> Path:
    """A small byte-level BPE checkpoint dir trained on the generated vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from twin.prepare.format import render_instruction, render_prompt

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    prompt = render_prompt(instruction=render_instruction(me="Me", peer="Friend 1"), input="x")
    rng = random.Random(1)
    corpus = [prompt] * 50 + [random_text(rng) for _ in range(5000)]
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>"}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


def run_child(mode: str, data_dir: Path, out_dir: Path, tokenizer: Path | None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    args = [sys.executable, "-c", CHILD, mode, str(data_dir), str(out_dir), str(tokenizer or "")]
    out = subprocess.run(args, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def scrub_rate(n: int = 50_000) -> float:
    """Messages/s of `Scrubber.scrub` alone on the generated texts."""
    from twin.prepare.scrub import Scrubber

    rng = random.Random(2)
    texts = [random_text(rng) for _ in range(n)]
    scrubber = Scrubber()
    started = time.perf_counter()
    for text in texts:
        scrubber.scrub(text)
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--dialogs", type=int, default=200)
    parser.add_argument("--tokenizer", action="store_true", help="also run with a BPE tokenizer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="twin-bench-prepare-") as tmp:
        data_dir = Path(tmp) / "data"
        fill_seconds = fill_store(data_dir, n_messages=args.messages, n_dialogs=args.dialogs)
        print(
            f"store: {args.messages:,} messages in {args.dialogs} chats, filled in "
            f"{fill_seconds:.1f} s ({args.messages / fill_seconds:,.0f} msg/s)"
        )
        base = run_child("read", data_dir, Path(tmp) / "unused", None)
        print(
            f"baseline (one SELECT, fetchmany): {base['n'] / base['seconds']:,.0f} msg/s, "
            f"{base['seconds']:.2f} s, peak RSS {base['rss_mb']:.0f} MB"
        )
        runs = [("chars", None)]
        if args.tokenizer:
            runs.append(("tokens", write_tokenizer(Path(tmp) / "tokenizer")))
        for label, tokenizer in runs:
            result = run_child("prepare", data_dir, Path(tmp) / f"dataset-{label}", tokenizer)
            rate = result["n"] / result["seconds"]
            split = ", ".join(f"{k} {v:.1f} s" for k, v in result["timings"].items())
            print(
                f"prepare ({label} budget): {rate:,.0f} msg/s, {result['seconds']:.1f} s, "
                f"peak RSS {result['rss_mb']:.0f} MB, {result['samples']:,} samples "
                f"({result['trimmed']:,} trimmed, {result['scrubbed']:,} scrubbed findings)"
            )
            other = result["seconds"] - sum(result["timings"].values())
            print(
                f"  time split: {split}, other {other:.1f} s "
                f"(+ imports {result['import_seconds']:.1f} s, not counted above)"
            )
            print(f"  ratio prepare/baseline time: {result['seconds'] / base['seconds']:.1f}x")
        print(f"scrub alone: {scrub_rate():,.0f} msg/s")


if __name__ == "__main__":
    main()
