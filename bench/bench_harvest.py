"""Harvest cost against the in-memory Telegram server: requests per message and messages/s.

    python bench/bench_harvest.py [--people 20] [--messages 1000]

Prints getHistory requests for a full harvest against the goal ceil(N/100) + D, the requests of
a resume after an interruption (re-fetched messages must be 0), of an incremental run with new
messages in a few dialogs against the one-pass ideal (per dialog, ceil((messages of the recent
window + new ones) / 100)), and the requests sent after a long FLOOD_WAIT (goal: 0). Throughput
is measured in this run and shown next to a baseline in the same process (iterating the same
pages with Telethon alone, no store), because the machine is shared and absolute numbers drift.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from tgserver import CODE, PHONE, TelegramServer, build_world  # noqa: E402

from twin.config import Settings  # noqa: E402
from twin.db import upgrade_database  # noqa: E402
from twin.telegram import login  # noqa: E402
from twin.telegram.client import load_session  # noqa: E402
from twin.telegram.harvest import harvest  # noqa: E402


async def _login(settings: Settings, server: TelegramServer) -> None:
    ticket = await login.start_login(
        settings, phone=PHONE, client_factory=server.client_factory(settings)
    )
    await login.submit_code(ticket.login_id, CODE)


async def _harvest(settings: Settings, server: TelegramServer) -> tuple[int, float]:
    client = server.client_factory(settings)(session=load_session(settings), receive_updates=False)
    before = server.requests["GetHistoryRequest"]
    started = time.perf_counter()
    try:
        await harvest(settings=settings, client=client, pause_seconds=0)
    except Exception as exc:  # the injected interruption
        print(f"  (interrupted: {type(exc).__name__})")
    finally:
        await client.disconnect()
    return server.requests["GetHistoryRequest"] - before, time.perf_counter() - started


async def _baseline(settings: Settings, server: TelegramServer, people: list[int]) -> float:
    """Telethon alone paging the same histories (no conversion, no database)."""
    client = server.client_factory(settings)(session=load_session(settings), receive_updates=False)
    await client.connect()
    started = time.perf_counter()
    for uid in people:
        user = server.world.users[uid]
        async for _ in client.iter_messages(user, reverse=True, wait_time=0):
            pass
    elapsed = time.perf_counter() - started
    await client.disconnect()
    return elapsed


def _recent_counts(server: TelegramServer, ids: list[int], *, since: int) -> dict[int, int]:
    """Per dialog, its messages sent since ``since``: the recent window that one pass reads
    again for edits and deletions, plus the new messages."""
    return {
        uid: sum(1 for m in server.world.history[uid] if m.date.timestamp() >= since) for uid in ids
    }


def settings_in(tmp: str) -> Settings:
    return Settings(data_dir=Path(tmp), api_id=1234567, api_hash="0f" * 16)


async def main(people: int, per_person: int) -> None:
    now = int(time.time())
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_in(tmp)
        upgrade_database(settings)
        world = build_world(people=people, messages_per_person=per_person, end_unix=now - 3600)
        server = TelegramServer(world)
        await _login(settings, server)
        # Every private chat: the people and the deleted account (bots and Saved Messages: no).
        ids = sorted(u.id for u in world.users.values() if not (u.bot or u.is_self))
        n = sum(len(world.history[u]) for u in ids)
        goal = math.ceil(n / 100) + len(ids)

        requests, seconds = await _harvest(settings, server)
        print(f"full harvest: N={n} messages over D={len(ids)} dialogs")
        print(
            f"  getHistory requests: {requests} (goal ≤ ceil(N/100)+D = {goal}); "
            f"{requests / n:.4f} per message"
        )
        baseline = await _baseline(settings, server, ids)
        print(
            f"  {n / seconds:,.0f} messages/s; Telethon-only paging baseline "
            f"{n / baseline:,.0f} messages/s (ratio {baseline / seconds:.2f})"
        )

        new_per_dialog = 150
        for uid in ids[:3]:
            for _ in range(new_per_dialog):
                world.add_message(uid, date=now, out=True, text="new")
        requests, _ = await _harvest(settings, server)
        window = _recent_counts(server, ids, since=now - 48 * 3600)
        ideal = sum(math.ceil(count / 100) for count in window.values())
        # A rescan of the window separate from the fetch of the new messages:
        two_passes = sum(
            math.ceil((count - new_per_dialog * (uid in ids[:3])) / 100)
            + math.ceil(new_per_dialog * (uid in ids[:3]) / 100)
            for uid, count in window.items()
        )
        print(
            f"incremental run ({new_per_dialog} new messages in 3 of {len(ids)} dialogs, "
            f"history of the last {per_person * 600 // 86400} days): {requests} getHistory; "
            f"one-pass ideal {ideal} (ratio {requests / ideal:.2f}); two separate passes would "
            f"need {two_passes}"
        )

    with tempfile.TemporaryDirectory() as tmp:  # resume after an interruption, old history
        settings = settings_in(tmp)
        upgrade_database(settings)
        server = TelegramServer(build_world(people=people, messages_per_person=per_person))
        await _login(settings, server)
        cut = max(1, goal // 2)
        server.fail_next("GetHistoryRequest", *([None] * cut), ConnectionError("killed"))
        first, _ = await _harvest(settings, server)
        fetched = {(k, i) for k, page in server.history_pages[:cut] for i in page}
        server.history_pages.clear()
        second, _ = await _harvest(settings, server)
        refetched = {(k, i) for k, page in server.history_pages for i in page} & fetched
        print(
            f"resume: interrupted after {cut} pages; rerun made {second} getHistory requests "
            f"(total {first - 1 + second}), re-fetched messages: {len(refetched)}"
        )

    with tempfile.TemporaryDirectory() as tmp:  # a day-long FLOOD_WAIT on the 3rd request
        settings = settings_in(tmp)
        upgrade_database(settings)
        server = TelegramServer(build_world(people=people, messages_per_person=per_person))
        await _login(settings, server)
        server.fail_next("GetHistoryRequest", None, None, "FLOOD_WAIT_86400")
        first, _ = await _harvest(settings, server)
        sent = sum(server.requests.values())
        await _harvest(settings, server)
        print(
            f"long flood wait (24 h, on request 3 of {goal}): requests after the wait in that "
            f"run: {first - 3}; requests of any kind in a second run: "
            f"{sum(server.requests.values()) - sent} (goal 0 and 0)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--messages", type=int, default=1000, help="per person (about)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    asyncio.run(main(args.people, args.messages))
