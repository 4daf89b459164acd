"""prepare_dataset end to end: a real SQLite store in, files litgpt reads out."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

import pytest
import typer
from litgpt.data import JSON
from litgpt.tokenizer import Tokenizer
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers
from typer.testing import CliRunner

from twin.cli.prepare import register
from twin.config import Settings
from twin.db import session_scope
from twin.errors import PrepareError
from twin.models import Source
from twin.prepare import prepare_dataset, tokenizer_fingerprint
from twin.prepare.format import record_speakers, render_instruction, render_prompt
from twin.prepare.sessions import TokenBudget, build_samples, merge_consecutive
from twin.store import ChatMessage, get_owner, set_included, upsert_dialog, upsert_messages

T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC
DAY = 86_400
PHONE = "+1 202 555 0147"


def write_tokenizer(directory: Path, *, split_words: bool = True) -> Path:
    """A small byte-level BPE checkpoint dir, as litgpt's `Tokenizer` loads one."""
    tokenizer = HFTokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(
        add_prefix_space=False, use_regex=split_words
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    # Trained on the prompt template itself, so a prompt takes tens of tokens, not hundreds.
    corpus = [
        render_prompt(instruction=render_instruction(me="Me", peer=name), input=f"{name}: hi")
        for name in ("Anna", "Boris")
    ] * 20 + [f"s{i} message {i} bs{i}\nMe: s{i}\nAnna: s{i}" for i in range(100)]
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>"}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def exact_length(tokenizer: Tokenizer, record: dict[str, str]) -> int:
    """Prompt + output + EOS as litgpt's SFTDataset encodes them."""
    prompt = render_prompt(instruction=record["instruction"], input=record["input"])
    output = tokenizer.encode(record["output"], bos=False, eos=True)
    return len(tokenizer.encode(prompt)) + len(output)


def add_chat(
    settings: Settings,
    *,
    peer_id: int,
    name: str,
    messages: list[ChatMessage],
    included: bool = True,
) -> int:
    with session_scope(settings) as session:
        dialog = upsert_dialog(session, peer_id=peer_id, name=name, source=Source.export)
        assert dialog.id is not None
        upsert_messages(session, dialog_id=dialog.id, messages=messages, source=Source.export)
        if not included:
            set_included(session, dialog_ids=[dialog.id], included=False)
        return dialog.id


def conversation(
    sessions: int, *, turns: int = 6, start: int = T0, tag: str = ""
) -> list[ChatMessage]:
    """``sessions`` chats a day and more apart; every text names its session (``s3``)."""
    messages = []
    for s in range(sessions):
        for i in range(turns):
            messages.append(
                ChatMessage(
                    tg_id=len(messages) + 1,
                    sent_unix=start + s * 2 * DAY + i * 60,
                    out=i % 2 == 1,
                    text=f"{tag}s{s} message {i}",
                )
            )
    return messages


def sessions_in(path: Path) -> set[str]:
    records = json.loads(path.read_text(encoding="utf-8"))
    return {
        word for r in records for word in (r["input"] + " " + r["output"]).split() if word[0] == "s"
    }


def leftovers(out_dir: Path) -> list[str]:
    return sorted(p.name for p in out_dir.parent.iterdir() if p.name.startswith(f".{out_dir.name}"))


def test_files_load_with_litgpt_and_fit_the_token_budget(db: Settings, tokenizer_dir: Path) -> None:
    add_chat(db, peer_id=1, name="Anna", messages=conversation(6, turns=12))
    add_chat(db, peer_id=2, name="Boris", messages=conversation(4, turns=8, tag="b"))
    out = db.data_dir / "dataset"
    stats = prepare_dataset(
        settings=db, out_dir=out, tokenizer_dir=tokenizer_dir, max_seq_length=96, min_messages=1
    )
    assert stats.samples_train > 0 and stats.samples_val > 0 and stats.trimmed > 0

    tokenizer = Tokenizer(tokenizer_dir)
    lengths = [
        exact_length(tokenizer, record)
        for split in ("train", "val")
        for record in json.loads((out / f"{split}.json").read_text(encoding="utf-8"))
    ]
    assert max(lengths) <= 96

    data = JSON(json_path=out, mask_prompt=True, num_workers=0)
    data.connect(tokenizer=tokenizer, batch_size=4, max_seq_length=96)
    data.setup()
    batches = list(data.train_dataloader())
    assert sum(len(b["input_ids"]) for b in batches) == stats.samples_train
    assert all(b["input_ids"].shape[1] <= 96 for b in batches)
    assert len(list(data.val_dataloader())) > 0
    for dataset in (data.train_dataset, data.test_dataset):
        for i in range(len(dataset)):
            item = dataset[i]
            # litgpt cut nothing: every sample still ends with EOS and has reply tokens to learn.
            assert int(item["input_ids"][-1]) == tokenizer.eos_id
            assert int((item["labels"] != -100).sum()) >= 2

    written = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    digest = hashlib.sha256((tokenizer_dir / "tokenizer.json").read_bytes()).hexdigest()
    assert written["tokenizer"] == {"dir": str(tokenizer_dir.resolve()), "sha256": digest}
    assert tokenizer_fingerprint(tokenizer_dir) == digest
    assert written["max_seq_length"] == 96
    assert written["samples_train"] == stats.samples_train
    assert written["lengths"]["max"] == max(lengths)
    assert written["lengths"]["mean"] == round(sum(lengths) / len(lengths), 2)


def test_lengths_are_exact_for_a_tokenizer_that_merges_across_lines(tmp_path: Path) -> None:
    # Without word splitting, BPE merges across the line breaks between turns, so turns cannot
    # be measured one by one: every window must be measured whole, and still fit.
    tokenizer = Tokenizer(write_tokenizer(tmp_path, split_words=False))
    pieces = tokenizer.encode("Me: s1").tolist() + tokenizer.encode("\nAnna: s1").tolist()
    assert tokenizer.encode("Me: s1\nAnna: s1").tolist() != pieces
    messages = [
        ChatMessage(i, i * 60, i % 3 == 0, f"s1 message {i} " + "bs1 " * (i % 4)) for i in range(60)
    ]
    turns = merge_consecutive(messages, me="Me", peer="Anna")
    budget = TokenBudget(tokenizer=tokenizer, max_seq_length=80)
    result = build_samples(turns, me="Me", peer="Anna", budget=budget)
    assert len(result.samples) > 10 and any(s.trimmed for s in result.samples)
    for sample in result.samples:
        assert sample.length == exact_length(tokenizer, sample.record()) <= 80


def test_same_store_gives_identical_files_and_val_shares_no_session(db: Settings) -> None:
    add_chat(db, peer_id=1, name="Anna", messages=conversation(30))
    first, second = db.data_dir / "one", db.data_dir / "two"
    prepare_dataset(settings=db, out_dir=first, min_messages=1, val_fraction=0.2)
    prepare_dataset(settings=db, out_dir=second, min_messages=1, val_fraction=0.2)
    for name in ("train.json", "val.json", "stats.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    assert (first / "train.json").read_bytes().endswith(b"}\n]\n")
    train, val = sessions_in(first / "train.json"), sessions_in(first / "val.json")
    assert train and val and not train & val


def test_two_sessions_always_give_a_validation_sample(db: Settings) -> None:
    add_chat(db, peer_id=1, name="Anna", messages=conversation(2))
    stats = prepare_dataset(
        settings=db, out_dir=db.data_dir / "dataset", min_messages=1, val_fraction=0.01
    )
    assert (stats.sessions_train, stats.sessions_val) == (1, 1)
    assert stats.samples_val > 0


def test_only_included_chats_in_the_date_range_are_used(db: Settings) -> None:
    add_chat(db, peer_id=1, name="Anna", messages=conversation(10))
    add_chat(db, peer_id=2, name="Boris", messages=conversation(3, tag="b"), included=False)
    add_chat(db, peer_id=3, name="Chloe", messages=conversation(1, turns=4, tag="c"))
    out = db.data_dir / "dataset"
    # Sessions are two days apart from 2023-11-14: s2 on the 18th, s5 on the 24th.
    stats = prepare_dataset(
        settings=db, out_dir=out, min_messages=5, since=date(2023, 11, 18), until=date(2023, 11, 24)
    )
    text = (out / "train.json").read_text(encoding="utf-8") + (out / "val.json").read_text(
        encoding="utf-8"
    )
    assert "Boris" not in text and "Chloe" not in text
    assert sessions_in(out / "train.json") | sessions_in(out / "val.json") == {
        "s2",
        "s3",
        "s4",
        "s5",
    }
    assert stats.dialogs_skipped == {"excluded": 1, "too_few_messages": 1}


def test_secrets_are_scrubbed_and_only_counted(db: Settings) -> None:
    messages = conversation(2)
    messages[1] = messages[1]._replace(text=f"call me on {PHONE}")
    messages[2] = messages[2]._replace(text="my password: hunter2!")
    dialog_id = add_chat(db, peer_id=1, name="Anna", messages=messages)
    out = db.data_dir / "dataset"
    stats = prepare_dataset(settings=db, out_dir=out, min_messages=1)
    everything = "".join(p.read_text(encoding="utf-8") for p in out.iterdir())
    assert PHONE not in everything and "hunter2" not in everything
    assert "call me on <PHONE>" in everything
    assert stats.scrub == {str(dialog_id): {"PASSWORD": 1, "PHONE": 1}}


def test_an_empty_store_says_to_import_first(db: Settings) -> None:
    out = db.data_dir / "dataset"
    with pytest.raises(PrepareError, match="no messages") as caught:
        prepare_dataset(settings=db, out_dir=out)
    assert "import" in str(caught.value) and "harvest" in str(caught.value)
    assert not out.exists() and leftovers(out) == []


def test_every_chat_excluded_says_how_to_include_one(db: Settings) -> None:
    add_chat(db, peer_id=1, name="Anna", messages=conversation(3), included=False)
    out = db.data_dir / "dataset"
    with pytest.raises(PrepareError, match="excluded") as caught:
        prepare_dataset(settings=db, out_dir=out, min_messages=1)
    assert "twin contacts --include" in str(caught.value)
    assert not out.exists() and leftovers(out) == []


def test_a_chat_without_replies_of_mine_leaves_no_files(db: Settings) -> None:
    messages = [m._replace(out=False) for m in conversation(3)]
    add_chat(db, peer_id=1, name="Anna", messages=messages)
    out = db.data_dir / "dataset"
    with pytest.raises(PrepareError, match="no reply of yours"):
        prepare_dataset(settings=db, out_dir=out, min_messages=1)
    assert not out.exists() and leftovers(out) == []


def test_a_failure_mid_write_keeps_the_previous_dataset(db: Settings) -> None:
    add_chat(db, peer_id=1, name="Anna", messages=conversation(4))
    out = db.data_dir / "dataset"
    prepare_dataset(settings=db, out_dir=out, min_messages=1)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    add_chat(db, peer_id=2, name="Boris", messages=conversation(4, tag="b"))

    def fail(done: int, total: int) -> None:
        if done == 1:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        prepare_dataset(settings=db, out_dir=out, min_messages=1, progress=fail)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert leftovers(out) == []

    stats = prepare_dataset(settings=db, out_dir=out, min_messages=1)
    assert stats.dialogs_used == 2 and leftovers(out) == []
    assert "Boris" in (out / "train.json").read_text(encoding="utf-8") + (
        out / "val.json"
    ).read_text(encoding="utf-8")


def test_a_directory_with_other_files_is_never_replaced(db: Settings) -> None:
    add_chat(db, peer_id=1, name="Anna", messages=conversation(3))
    out = db.data_dir / "documents"
    out.mkdir(parents=True)
    (out / "thesis.docx").write_text("precious")
    with pytest.raises(PrepareError, match="not part of a dataset"):
        prepare_dataset(settings=db, out_dir=out, min_messages=1)
    assert (out / "thesis.docx").read_text() == "precious"


def test_cli_prepares_and_summarizes(db: Settings, tokenizer_dir: Path) -> None:
    add_chat(db, peer_id=1, name="Anna", messages=conversation(5))
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps `prepare` a named sub-command
    runner = CliRunner()
    out = db.data_dir / "ds"
    result = runner.invoke(app, ["prepare", "--out", str(out), "--min-messages", "1"])
    assert result.exit_code == 0, result.output
    assert "samples:" in result.output and "3 per token assumed" in result.output
    assert "duplicates removed: 0" in result.output
    assert json.loads((out / "stats.json").read_text())["tokenizer"] is None

    result = runner.invoke(
        app,
        ["prepare", "--out", str(out), "--tokenizer", str(tokenizer_dir), "--gap-hours", "72"],
    )
    assert result.exit_code == 0, result.output
    assert f"tokens of {tokenizer_dir}" in result.output
    assert json.loads((out / "stats.json").read_text())["sessions"] == 1

    result = runner.invoke(app, ["prepare", "--out", str(out), "--since", "yesterday"])
    assert isinstance(result.exception, PrepareError)
    assert "not a date" in str(result.exception)


def test_my_turns_carry_the_owners_name(db: Settings) -> None:
    with session_scope(db) as session:
        owner = get_owner(session)
        owner.first_name, owner.last_name = "Ivan", "Petrov"
    add_chat(db, peer_id=1, name="Anna", messages=conversation(2, turns=8))
    out = db.data_dir / "dataset"
    prepare_dataset(settings=db, out_dir=out, min_messages=1)
    records = json.loads((out / "train.json").read_text(encoding="utf-8"))
    assert records[0]["instruction"].startswith("You are Ivan Petrov.")
    assert "with Anna" in records[0]["instruction"]
    assert any("\nIvan Petrov: " in r["input"] for r in records)
    # Who speaks is written down, for whoever replies to a held-out sample later.
    assert {record_speakers(r) for r in records} == {("Ivan Petrov", "Anna")}


@pytest.mark.parametrize("bos", [None, False])
@pytest.mark.parametrize("eos", [True, False])
def test_fast_token_counts_equal_litgpt_encode(
    tokenizer_dir: Path, bos: bool | None, eos: bool
) -> None:
    from twin.prepare.sessions import TokenBudget

    tokenizer = Tokenizer(tokenizer_dir)
    budget = TokenBudget(tokenizer=tokenizer, max_seq_length=64)
    texts = ["", "hi", "привет, как дела? 🙂", "Anna: ok\nMe: <photo> look", "<|endoftext|> x"]
    expected = [tokenizer.encode(t, bos=bos, eos=eos).tolist() for t in texts]
    assert budget.encode_many(texts, bos=bos, eos=eos) == expected


def test_one_batch_with_mixed_flags_encodes_like_litgpt(tokenizer_dir: Path) -> None:
    from twin.prepare.sessions import TokenBudget

    tokenizer = Tokenizer(tokenizer_dir)
    budget = TokenBudget(tokenizer=tokenizer, max_seq_length=64)
    items: list[tuple[str, bool | None, bool]] = [
        ("You are Me.\n", None, False),
        ("\nAnna: привет", False, False),
        ("", False, True),
        ("ok 🙂", False, True),
        ("<|endoftext|> x", None, True),
    ]
    expected = [tokenizer.encode(t, bos=bos, eos=eos).tolist() for t, bos, eos in items]
    assert budget.encode_flagged(items) == expected


def test_a_killed_runs_temp_dir_is_removed_by_the_next_run(db: Settings) -> None:
    add_chat(db, peer_id=1, name="Anna", messages=conversation(10))
    out = db.data_dir / "dataset"
    abandoned = db.data_dir / ".dataset.999999999.abc"  # a pid that cannot be running
    abandoned.mkdir(parents=True)
    (abandoned / "train.json").write_text("[private partial samples")
    prepare_dataset(settings=db, out_dir=out, min_messages=1)
    assert not abandoned.exists()
    assert sorted(p.name for p in db.data_dir.iterdir() if p.name.startswith(".dataset")) == []


def test_an_old_set_moved_aside_by_a_killed_swap_is_put_back(db: Settings) -> None:
    add_chat(db, peer_id=1, name="Anna", messages=conversation(10))
    out = db.data_dir / "dataset"
    prepare_dataset(settings=db, out_dir=out, min_messages=1)
    aside = db.data_dir / ".dataset.999999999.abc.old"  # killed between the two renames
    out.rename(aside)
    prepare_dataset(settings=db, out_dir=out, min_messages=1, seed=7)
    assert not aside.exists()
    assert sorted(p.name for p in out.iterdir()) == ["stats.json", "train.json", "val.json"]


def test_a_database_never_migrated_says_to_upgrade_it(settings: Settings) -> None:
    with pytest.raises(PrepareError, match="cannot be read") as raised:
        prepare_dataset(settings=settings, out_dir=settings.data_dir / "dataset")
    assert "twin db upgrade" in (raised.value.hint or "")
