"""Assist latency: from an incoming Telegram message to the twin's saved draft.

Telethon's real client with updates on, against the in-memory Telegram server
(tests/tgserver_updates.py): the server pushes a new message, the listener reads the chat,
generates and saves the draft; the clock stops when the server has answered messages.saveDraft.
The baseline, measured in the same run on the same contexts with the same seeds, is the
generation alone (`Twin.stream_reply`): the difference is what listening, reading the chat,
scrubbing and the draft checks cost.

Without ``--base`` the model is a tiny random demo model (figures then show the overhead, not a
real model's speed); ``--base DIR`` loads a litgpt checkpoint dir instead (e.g. the Gemma 3 270M
conversion), without an adapter.

    python bench/bench_assist.py [--messages 5] [--max-new-tokens 48] [--base DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlmodel import select

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("OMP_NUM_THREADS", "1")  # as steady as 2 threads here (notes/litgpt.md)
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from tgserver import build_world  # noqa: E402
from tgserver_updates import UpdatesServer  # noqa: E402

from twin.assist.drafts import AssistOptions, assist, owner_name, set_assist  # noqa: E402
from twin.assist.rules import context_turns  # noqa: E402
from twin.chat.generate import Twin  # noqa: E402
from twin.chat.load import load_twin  # noqa: E402
from twin.config import Settings  # noqa: E402
from twin.db import session_scope, upgrade_database  # noqa: E402
from twin.models import Dialog  # noqa: E402
from twin.prepare.format import Turn  # noqa: E402
from twin.prepare.scrub import Scrubber, ScrubConfig  # noqa: E402
from twin.telegram.harvest import message_to_row  # noqa: E402
from twin.train.tiny import init_tiny_model  # noqa: E402

ANNA = 2001
QUESTIONS = ["are you free tonight?", "did you see the match?", "coffee tomorrow?", "how was it?"]


def tiny_model(root: Path) -> Path:
    corpus = [f"Anna: {q}\nMe: yes, sounds good, see you later :)" for q in QUESTIONS] * 20
    return init_tiny_model(
        out_dir=root / "tiny", corpus=corpus, vocab_size=512, n_layer=4, n_embd=128, n_head=4,
        block_size=512, pretrain_steps=0, seed=0,
    )  # fmt: skip


def chat_turns(server: UpdatesServer, settings: Settings, peer: str) -> list[Turn]:
    """The turns the listener builds for Anna's chat as it stands now."""
    messages = [r for m in server.world.history[ANNA][-30:] if (r := message_to_row(m)) is not None]
    scrubber = Scrubber(ScrubConfig(regions=list(settings.phone_regions)))
    return context_turns(messages, me=owner_name(settings), peer=peer, scrubber=scrubber)


async def measure(
    server: UpdatesServer, settings: Settings, twin: Twin, options: AssistOptions, count: int
) -> tuple[list[float], list[float], list[int]]:
    stop = asyncio.Event()
    listener = asyncio.create_task(
        assist(
            settings=settings,
            options=options,
            twin=twin,
            client_factory=server.client_factory(settings),
            should_stop=stop.is_set,
        )
    )
    while server.listeners() == 0:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    latencies, generation, lengths = [], [], []
    for i in range(count):
        before = len(server.saved_drafts)
        started = time.perf_counter()
        server.receive(ANNA, QUESTIONS[i % len(QUESTIONS)])
        while len(server.saved_drafts) == before:
            if listener.done():
                listener.result()  # raises what stopped it
                raise RuntimeError("the listener stopped")
            await asyncio.sleep(0.002)
        latencies.append(time.perf_counter() - started)
        lengths.append(len(server.saved_drafts[-1][1]))
        # Baseline: the same context, seed and budget, generation only.
        turns = chat_turns(server, settings, "Anna P0")
        started = time.perf_counter()
        # In a worker thread, as the listener generates (torch runs differently off the main
        # thread; the same place keeps the comparison fair).
        alone = await asyncio.to_thread(
            lambda turns=turns: "".join(
                twin.stream_reply(
                    context=turns,
                    me=owner_name(settings),
                    peer="Anna P0",
                    temperature=options.temperature,
                    max_new_tokens=options.max_new_tokens,
                    seed=options.seed,
                )
            )
        )
        generation.append(time.perf_counter() - started)
        assert alone.strip() == server.saved_drafts[-1][1], "the baseline wrote another reply"
        await asyncio.sleep(1.1)  # the next message arrives in a later second than this draft
    stop.set()
    await listener
    return latencies, generation, lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--base", type=Path, help="a litgpt checkpoint dir (default: tiny)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = Settings(data_dir=root / "data", api_id=1234567, api_hash="0f" * 16)
        upgrade_database(settings)
        server = UpdatesServer(build_world(people=2, messages_per_person=60))
        server.log_in(settings)
        server.harvest(settings)
        with session_scope(settings) as db:
            dialog_id = db.exec(select(Dialog).where(Dialog.peer_id == ANNA)).one().id or 0
        set_assist(settings=settings, dialog_id=dialog_id, on=True)
        base = args.base.resolve() if args.base else tiny_model(root)
        started = time.perf_counter()
        twin = load_twin(base_model_dir=base)
        load_seconds = time.perf_counter() - started
        options = AssistOptions(
            min_interval_seconds=0,
            poll_seconds=0.01,
            seed=7,
            attempts=1,
            max_new_tokens=args.max_new_tokens,
        )
        latencies, generation, lengths = asyncio.run(
            measure(server, settings, twin, options, args.messages)
        )
    model = f"{base.name} (--base)" if args.base else "tiny random demo model (4×128)"
    print(f"model: {model}; loaded in {load_seconds:.1f} s; {args.messages} messages")
    print(f"drafts: {statistics.median(lengths)} chars (median)")
    incoming = statistics.median(latencies)
    alone = statistics.median(generation)
    best, best_alone = min(latencies), min(generation)
    print(f"incoming message → saved draft: best {best * 1000:.0f} ms, "
          f"median {incoming * 1000:.0f} ms")  # fmt: skip
    print(f"generation alone (same context and seed): best {best_alone * 1000:.0f} ms, "
          f"median {alone * 1000:.0f} ms")  # fmt: skip
    print(f"listener overhead (best): {(best - best_alone) * 1000:.0f} ms; "
          f"ratio {best / best_alone:.2f}×")  # fmt: skip


if __name__ == "__main__":
    main()
