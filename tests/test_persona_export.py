"""The persona export used to measure fidelity imports cleanly and has the habits it promises."""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from pathlib import Path

from twin.config import Settings
from twin.importer import import_export

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from make_persona_export import OWNER_ID, build_persona_export

CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)


def _mine(export: dict, *, names: set[str] | None = None) -> list[str]:
    return [
        m["text"]
        for chat in export["chats"]["list"]
        if names is None or chat["name"] in names
        for m in chat["messages"]
        if m["from_id"] == f"user{OWNER_ID}"
    ]


def test_same_seed_same_export_and_it_imports(db: Settings, tmp_path: Path) -> None:
    export = build_persona_export(sessions=120, seed=3)
    assert export == build_persona_export(sessions=120, seed=3)
    assert export != build_persona_export(sessions=120, seed=4)
    path = tmp_path / "result.json"
    path.write_text(json.dumps(export, ensure_ascii=False), encoding="utf-8")
    summary = import_export(settings=db, path=path)
    assert summary.owner_id == OWNER_ID
    assert summary.dialogs_imported == 14
    assert summary.messages_new == sum(len(c["messages"]) for c in export["chats"]["list"])
    assert summary.messages_skipped == 0


def test_many_contacts_and_sessions_over_months() -> None:
    export = build_persona_export()
    chats = export["chats"]["list"]
    assert len(chats) >= 12
    days = {
        (chat["id"], dt.date.fromisoformat(m["date"][:10]))
        for chat in chats
        for m in chat["messages"]
    }
    assert len(days) >= 350  # a session is a day with one contact
    dates = sorted(d for _, d in days)
    assert (dates[-1] - dates[0]).days >= 240
    mine = _mine(export)
    assert len(set(mine)) / len(mine) > 0.25  # varied, not one exchange repeated


def test_the_persona_habits() -> None:
    export = build_persona_export()
    mine = _mine(export)
    n = len(mine)
    assert sum(t == t.lower() for t in mine) / n > 0.97
    assert sum(t.endswith(".") for t in mine) == 0
    assert 0.12 < sum(t.endswith(")") for t in mine) / n < 0.35
    assert sum(len(t) <= 25 for t in mine) / n > 0.65  # short replies
    english = sum(not CYRILLIC.search(t) and re.search("[a-z]", t) is not None for t in mine)
    assert 0.1 < english / n < 0.35
    words = " ".join(mine)
    for phrase in ("ахах", "ну да", "го", "норм"):
        assert words.count(phrase) >= 10, phrase
    # With mum: no slang, the warm words.
    to_mum = " ".join(_mine(export, names={"Мама", "Папа"}))
    assert "мам" in to_mum
    assert not re.search(r"\b(го|ахах|норм)\b", to_mum)
    # The contacts write in their own ways: capitals and full stops appear.
    theirs = [
        m["text"]
        for chat in export["chats"]["list"]
        for m in chat["messages"]
        if m["from_id"] != f"user{OWNER_ID}"
    ]
    assert sum(t[:1].isupper() for t in theirs) / len(theirs) > 0.4
    assert sum(t.endswith(".") for t in theirs) / len(theirs) > 0.05
