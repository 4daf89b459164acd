"""Unicode through the whole pipeline: import → prepare → tokenize → a training step → a reply.

NUL, right-to-left overrides, zero-width characters, combining marks, astral emoji, a dialog of
emoji only and a 1 MB message must pass without a crash; what is stored is exactly what was
sent, the dataset is strict UTF-8 JSON, the tokenizer gives the text back, and the reply is
valid text. Lone surrogates (``\\ud800`` escapes, which JSON allows and UTF-8 cannot hold) have
their own test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import OWNER_ID, connect, db_file, make_export, write_export

from twin.config import Settings
from twin.errors import ImportFailed

pytestmark = pytest.mark.faults

SPECIAL = [
    "before\x00after",
    "abc \u202edlrow olleh\u202c ok",
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffend",
    "e\u0301 n\u0303 \u0627\u0644\u0633\u0644\u0627\u0645",
    "\U0001d518\U0001d52b\U0001d526 \U0001f9d1\u200d\U0001f91d\u200d\U0001f9d1",
]
EMOJI = ["😀", "🎉🎉", "👍🏽", "❤️", "🇺🇦", "🤷\u200d♀️"]
BIG = ("lorem ipsum 😀 " * 70_000)[: 1024 * 1024]


def _chat(peer: int, texts: list[str], start: int) -> dict[str, Any]:
    messages = []
    for i, text in enumerate(texts):
        mine = i % 2 == 1
        messages.append(
            {
                "id": i + 1,
                "type": "message",
                "date": "2024-01-01T00:00:00",
                "date_unixtime": str(start + 60 * i),
                "from": "Me" if mine else "Peer",
                "from_id": f"user{OWNER_ID if mine else peer}",
                "text": text,
                "text_entities": [{"type": "plain", "text": text}],
            }
        )
    return {"name": f"Peer {peer}", "type": "personal_chat", "id": peer, "messages": messages}


def _export() -> dict[str, Any]:
    export = make_export(chats=0)
    special = [t for text in SPECIAL for t in ("tell me: " + text, text)] * 3
    export["chats"]["list"] = [
        _chat(9001, [*special, "and a long one?", BIG], 1_700_000_000),
        _chat(9002, [EMOJI[i % len(EMOJI)] * (1 + i % 3) for i in range(40)], 1_700_100_000),
    ]
    return export


def _stored(settings: Settings) -> dict[int, list[str]]:
    with connect(db_file(settings.data_dir)) as connection:
        rows = connection.execute(
            "SELECT d.peer_id, m.text FROM message m JOIN dialog d ON d.id = m.dialog_id "
            "ORDER BY d.peer_id, m.tg_id"
        ).fetchall()
    found: dict[int, list[str]] = {}
    for peer, text in rows:
        found.setdefault(peer, []).append(text)
    return found


def test_unicode_survives_import_prepare_training_and_chat(db: Settings, tmp_path: Path) -> None:
    from litgpt.tokenizer import Tokenizer
    from trainhelpers import make_tiny_model, train_here, training_config

    from twin.chat.load import load_twin
    from twin.importer import import_export
    from twin.prepare.dataset import prepare_dataset
    from twin.prepare.format import Turn
    from twin.runs import runs_dir
    from twin.train.data import load_split

    export = _export()
    import_export(settings=db, path=write_export(tmp_path / "result.json", export))
    stored = _stored(db)
    for chat in export["chats"]["list"]:  # byte for byte, NUL and the 1 MB message included
        assert stored[chat["id"]] == [m["text"] for m in chat["messages"]]

    model = make_tiny_model(tmp_path / "model", vocab_size=512)
    prepare_dataset(
        settings=db, out_dir=db.dataset_dir, tokenizer_dir=model, max_seq_length=512, min_messages=1
    )
    records = []
    for name in ("train.json", "val.json", "stats.json"):
        raw = (db.dataset_dir / name).read_bytes()
        value = json.loads(raw.decode("utf-8", errors="strict"))  # strict UTF-8 JSON
        if name != "stats.json":
            records += value
    outputs = "".join(r["output"] for r in records)
    everything = "".join(r["input"] + r["output"] for r in records)
    assert any(e in outputs for e in EMOJI), "the emoji-only dialog gave no sample"
    for kept in ("\u202e", "\u200b", "\U0001f9d1", "e\u0301", "\x00"):
        assert kept in everything, f"{kept!r} was dropped from the dataset"

    tokenizer = Tokenizer(model)
    for text in [*SPECIAL, *EMOJI]:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    samples, _ = load_split(db.dataset_dir / "train.json", tokenizer=tokenizer, max_seq_length=512)
    assert samples

    config = training_config(
        r=2, max_steps=2, micro_batch_size=2, global_batch_size=2, eval_max_batches=1
    )
    record = train_here(settings=db, base_model_dir=model, run_id="u", config=config)
    assert record.status == "done"

    twin = load_twin(run_dir=runs_dir(db) / "u")
    for text in (SPECIAL[1], EMOJI[5], SPECIAL[0]):
        pieces = twin.stream_reply(
            context=[Turn(speaker="Peer", text=text, mine=False)],
            me="Me",
            peer="Peer",
            max_new_tokens=24,
            seed=1,
        )
        reply = "".join(pieces)
        reply.encode("utf-8", errors="strict")  # no lone surrogates from split byte sequences
        json.loads(json.dumps({"reply": reply}, ensure_ascii=False))


def test_lone_surrogates_import_or_fail_clearly(db: Settings, tmp_path: Path) -> None:
    from twin.importer import import_export

    export = make_export(chats=1, messages=4)
    message = export["chats"]["list"][0]["messages"][1]
    message["text"] = message["text_entities"][0]["text"] = "broken \ud83d emoji \udc00"
    path = tmp_path / "result.json"
    path.write_text(json.dumps(export), encoding="ascii")  # \ud83d escapes, as JSON allows
    try:
        import_export(settings=db, path=path)
    except ImportFailed:
        return
    texts = [t for texts in _stored(db).values() for t in texts]
    assert all(t.encode("utf-8", errors="strict") for t in texts)
