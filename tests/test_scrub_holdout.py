"""Recall of the scrubber on the held-out corpus (tests/data/scrub_holdout), never tuned on.

A planted value counts as caught when it no longer appears in the scrubbed text. Run with
`-s` (or `python tests/test_scrub_holdout.py`) to print recall per type and per family.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from twin.prepare.scrub import Scrubber

HOLDOUT = Path(__file__).parent / "data" / "scrub_holdout"
GOALS = {"PASSWORD": 0.90, "CODE": 0.90, "TOKEN": 0.90, "PHONE": 0.95}
GOALS |= {"EMAIL": 0.99, "CARD": 0.99, "IBAN": 0.99, "IBAN_TYPO": 0.99}
MAX_CLEAN_CHANGED = 0.005


def _read(name: str) -> list[dict[str, str]]:
    lines = (HOLDOUT / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def measure(scrubber: Scrubber) -> tuple[dict[str, float], dict[str, float], float, list[str]]:
    """Recall per type, recall per type/family, share of clean lines changed, missed lines."""
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    missed: list[str] = []
    for line in _read("holdout.jsonl"):
        caught = line["value"] not in scrubber.scrub(line["text"]).text
        for key in (line["kind"], f"{line['kind']}/{line['family']}"):
            totals[key] += 1
            hits[key] += caught
        if not caught:
            missed.append(line["text"])
    recall = {key: hits[key] / totals[key] for key in totals}
    clean = _read("clean.jsonl")
    changed = [line["text"] for line in clean if scrubber.scrub(line["text"]).text != line["text"]]
    per_type = {k: v for k, v in recall.items() if "/" not in k}
    per_family = {k: v for k, v in recall.items() if "/" in k}
    return per_type, per_family, len(changed) / len(clean), missed + changed


def test_holdout_recall_meets_the_goals() -> None:
    per_type, _, changed, _ = measure(Scrubber())
    for kind, goal in GOALS.items():
        assert per_type[kind] >= goal, (kind, per_type[kind])
    assert changed <= MAX_CLEAN_CHANGED


if __name__ == "__main__":
    per_type, per_family, changed, missed = measure(Scrubber())
    for key, value in sorted(per_type.items()) + sorted(per_family.items()):
        print(f"{key:<28} {value:.3f}")
    print(f"clean lines changed        {changed:.4f}")
