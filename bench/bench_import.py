"""Import speed and peak memory of `twin.importer.import_export`, against ijson parsing alone.

    python bench/bench_import.py [--sizes 100000 1000000]

For each size, writes a full-account export (streamed: never held in memory) into a temp dir,
then in fresh subprocesses (1) parses it with ijson alone (the baseline: the fastest a
streamed reader can go), (2) writes the same number of ready-made rows into a fresh database
through `twin.store.upsert_message_rows` (the other floor: SQLite's own insert speed with the
schema's indexes) and (3) imports it into a fresh database. Prints messages/s, the ratio
import/parse, the ratio import/write and each child's peak RSS. An import can be no faster
than the slower of the two floors (it does both, one after the other). On a shared machine the
absolute figures move with the load; the ratios and the RSS growth between sizes are the
figures to compare.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
mode, path, data_dir = sys.argv[1:4]
started = time.perf_counter()
if mode == "parse":
    import ijson
    with open(path, "rb") as f:
        n = sum(1 for _ in ijson.items(f, "chats.list.item.messages.item", use_float=True))
elif mode.startswith("write"):
    from twin.config import Settings
    from twin.db import session_scope, upgrade_database
    from twin.store import upsert_dialog, upsert_message_rows
    settings = Settings(data_dir=data_dir)
    upgrade_database(settings)
    n = int(mode.removeprefix("write"))
    started = time.perf_counter()
    with session_scope(settings) as session:
        dialog_id = upsert_dialog(session, peer_id=1000, name="Peer").id
        for start in range(0, n, 5000):
            rows = [(dialog_id, i, 1_704_100_000 + i, i % 2 == 1,
                     f"сообщение номер {i}, how are you doing today?",
                     None, None, None, None, False, "export") for i in range(start, start + 5000)]
            upsert_message_rows(session, rows=rows)
else:
    from twin.config import Settings
    from twin.db import upgrade_database
    from twin.importer import import_export
    settings = Settings(data_dir=data_dir)
    upgrade_database(settings)
    started = time.perf_counter()
    n = import_export(settings=settings, path=Path(path)).messages_new
seconds = time.perf_counter() - started
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"n": n, "seconds": seconds, "rss_mb": rss_mb}))
"""


def write_export(path: Path, n_messages: int, n_chats: int = 4) -> None:
    """A full-account export with ``n_messages`` spread over ``n_chats`` personal chats."""
    per_chat = n_messages // n_chats
    tg_id = 0
    with path.open("w", encoding="utf-8") as f:
        f.write('{\n "personal_information": {"user_id": 1, "first_name": "Me"},\n')
        f.write(' "chats": {\n  "list": [\n')
        for c in range(n_chats):
            head = {"name": f"Peer {c}", "type": "personal_chat", "id": 1000 + c}
            f.write(("," if c else "") + json.dumps(head)[:-1] + ', "messages": [\n')
            for i in range(per_chat):
                tg_id += 1
                text = f"сообщение номер {tg_id}, how are you doing today?"
                message = {
                    "id": tg_id,
                    "type": "message",
                    "date": "2024-01-01T12:00:00",
                    "date_unixtime": str(1_704_100_000 + tg_id),
                    "from": "Me" if i % 2 else f"Peer {c}",
                    "from_id": f"user{1 if i % 2 else 1000 + c}",
                    "text": text,
                    "text_entities": [{"type": "plain", "text": text}],
                }
                f.write(("," if i else "") + json.dumps(message, ensure_ascii=False, indent=1))
            f.write("]}\n")
        f.write("  ]\n }\n}\n")


def run_child(mode: str, path: Path, data_dir: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(path), str(data_dir)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    print(
        f"{'messages':>10} {'MB':>6} {'parse k/s':>10} {'write k/s':>10} {'import k/s':>11} "
        f"{'/parse':>7} {'/write':>7} {'parse RSS':>10} {'import RSS':>11}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            path = Path(tmp) / f"export_{n}.json"
            write_export(path, n)
            parse = run_child("parse", path, Path(tmp) / f"parse_{n}")
            write = run_child(f"write{n}", path, Path(tmp) / f"write_{n}")
            imp = run_child("import", path, Path(tmp) / f"db_{n}")
            assert imp["n"] == parse["n"] == n, (imp, parse)
            parse_rate = n / parse["seconds"] / 1e3
            write_rate = n / write["seconds"] / 1e3
            import_rate = n / imp["seconds"] / 1e3
            print(
                f"{n:>10} {path.stat().st_size / 2**20:>6.0f} {parse_rate:>10.0f} "
                f"{write_rate:>10.0f} {import_rate:>11.0f} {import_rate / parse_rate:>7.2f} "
                f"{import_rate / write_rate:>7.2f} {parse['rss_mb']:>8.0f}MB "
                f"{imp['rss_mb']:>9.0f}MB"
            )
            path.unlink()


if __name__ == "__main__":
    main()
