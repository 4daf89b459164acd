"""The train/validation split and the date bounds of prepare_dataset."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.cli.prepare import summary
from twin.config import Settings
from twin.db import session_scope
from twin.models import Source
from twin.prepare import prepare_dataset
from twin.prepare.split import choose_validation
from twin.store import ChatMessage, upsert_dialog, upsert_messages

T0 = 1_700_000_000
DAY = 86_400


def add_chat(settings: Settings, *, peer_id: int, exchanges: list[int]) -> None:
    """A chat with one session per entry, each of that many question/answer exchanges."""
    messages: list[ChatMessage] = []
    for s, count in enumerate(exchanges):
        for i in range(2 * count):
            at = T0 + s * 3 * DAY + i * 60
            messages.append(
                ChatMessage(
                    tg_id=len(messages) + 1, sent_unix=at, out=i % 2 == 1, text=f"s{s} m{i}"
                )
            )
    with session_scope(settings) as session:
        dialog = upsert_dialog(
            session, peer_id=peer_id, name=f"Peer {peer_id}", source=Source.export
        )
        assert dialog.id is not None
        upsert_messages(session, dialog_id=dialog.id, messages=messages, source=Source.export)


def test_sessions_of_one_one_and_forty_exchanges_keep_validation_small() -> None:
    assert sorted(choose_validation([(0.5, 1), (0.9, 1), (0.05, 40)], val_fraction=0.1)) == [0, 1]


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=200), min_size=2, max_size=40),
    scores=st.lists(st.floats(min_value=0, max_value=1), min_size=40, max_size=40),
    val_fraction=st.floats(min_value=0.01, max_value=0.99),
)
def test_validation_is_never_larger_than_train_and_near_the_fraction(
    sizes: list[int], scores: list[float], val_fraction: float
) -> None:
    sessions = list(zip(scores, sizes, strict=False))
    val = choose_validation(sessions, val_fraction=val_fraction)
    held = sum(sizes[i] for i in val)
    total = sum(sizes)
    assert held <= total - held
    if len(val) > 1:
        assert held <= val_fraction * total
    if min(sizes) <= total - min(sizes):
        assert val  # two sessions or more always give a validation sample


@pytest.mark.parametrize("seed", range(5))
def test_a_big_session_never_makes_validation_larger_than_train(db: Settings, seed: int) -> None:
    add_chat(db, peer_id=1, exchanges=[1, 1, 40])
    stats = prepare_dataset(settings=db, out_dir=db.data_dir / "dataset", min_messages=1, seed=seed)
    assert 0 < stats.samples_val <= stats.samples_train
    assert stats.samples_val == 2


def test_a_split_that_cannot_come_near_the_fraction_warns(db: Settings) -> None:
    add_chat(db, peer_id=1, exchanges=[5, 5])
    stats = prepare_dataset(settings=db, out_dir=db.data_dir / "dataset", min_messages=1)
    assert stats.samples_val == stats.samples_train
    assert any("val.json holds" in w and "10%" in w for w in stats.warnings)


def test_until_with_a_time_is_inclusive(db: Settings) -> None:
    add_chat(db, peer_id=1, exchanges=[3])
    last = datetime.fromtimestamp(T0 + 5 * 60, tz=UTC)  # the session's last message, "s0 m5"
    out = db.data_dir / "dataset"
    prepare_dataset(settings=db, out_dir=out, min_messages=1, until=last)
    text = (out / "train.json").read_text(encoding="utf-8") + (out / "val.json").read_text(
        encoding="utf-8"
    )
    assert "s0 m5" in text
    records = json.loads((out / "train.json").read_text(encoding="utf-8"))
    assert records


def add_greetings(settings: Settings, *, peer_id: int, days: int) -> None:
    """A chat that opens the same way every day ("hi" → "hey"), then says something new."""
    messages: list[ChatMessage] = []
    for day in range(days):
        texts = ["hi", "hey", f"plans for day {day}?", f"cinema on day {day}"]
        for i, text in enumerate(texts):
            messages.append(
                ChatMessage(
                    tg_id=len(messages) + 1,
                    sent_unix=T0 + day * 3 * DAY + i * 60,
                    out=i % 2 == 1,
                    text=text,
                )
            )
    with session_scope(settings) as session:
        dialog = upsert_dialog(session, peer_id=peer_id, name="Anna", source=Source.export)
        assert dialog.id is not None
        upsert_messages(session, dialog_id=dialog.id, messages=messages, source=Source.export)


def test_a_repeated_exchange_is_one_sample_and_never_in_both_splits(db: Settings) -> None:
    add_greetings(db, peer_id=1, days=20)
    out = db.data_dir / "dataset"
    stats = prepare_dataset(settings=db, out_dir=out, min_messages=1, val_fraction=0.3)
    splits = {
        name: [(r["input"], r["output"]) for r in json.loads((out / f"{name}.json").read_text())]
        for name in ("train", "val")
    }
    every = splits["train"] + splits["val"]
    assert every.count(("Anna: hi", "hey")) == 1
    assert len(set(every)) == len(every)
    assert not set(splits["train"]) & set(splits["val"])
    assert stats.duplicates_removed == 19
    assert stats.samples_train + stats.samples_val == 21  # 20 days' plans, one greeting
    saved = json.loads((out / "stats.json").read_text())
    assert saved["duplicates_removed"] == 19
    assert "duplicates removed: 19" in summary(stats)  # what `twin prepare` prints
