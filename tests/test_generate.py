"""Generation: streamed replies from a tiny model, stopping at the turn boundary, with the adapter
merged in; and ``twin chat`` in the terminal.

The tiny model is overfit on one conversation, so greedy decoding deterministically writes my
reply and then starts Anna's next turn (``\\nAnna: пока``); the tokenizer has so few merges that
Cyrillic letters are split over several tokens.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
import torch
import typer
from hypothesis import given
from hypothesis import strategies as st
from litgpt.config import Config
from litgpt.generate.base import generate_fn
from litgpt.lora import GPT as LoraGPT
from litgpt.lora import Config as LoraConfig
from litgpt.model import GPT
from litgpt.tokenizer import Tokenizer
from trainhelpers import random_lora_run
from typer.testing import CliRunner

from twin.chat.generate import Twin
from twin.chat.load import load_twin
from twin.chat.stops import StopScanner, reply_stops
from twin.cli.chat import register
from twin.config import Settings
from twin.errors import ChatError, RunError
from twin.prepare.format import (
    Turn,
    clean_reply,
    render_context,
    render_instruction,
    render_prompt,
    without_broken_chars,
)
from twin.runs import LoraSettings, adapter_path, resolve_run_dir
from twin.train.tiny import init_tiny_model

MY_REPLY = "да, конечно"
CONTEXT = [Turn(speaker="Anna", text="привет", mine=False)]
LORA = LoraSettings(r=4, alpha=8, dropout=0.0, query=True, value=True, mlp=True, head=True)


def _overfit(checkpoint_dir: Path, text: str, *, steps: int) -> None:
    """Train all weights on ``text`` alone until the model recites it."""
    tokenizer = Tokenizer(checkpoint_dir)
    model = GPT(Config.from_file(checkpoint_dir / "model_config.yaml"))
    model.load_state_dict(torch.load(checkpoint_dir / "lit_model.pth", weights_only=True))
    ids = tokenizer.encode(text).long().view(1, -1)  # (1, T)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        logits = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits[0], ids[0, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.save(model.state_dict(), checkpoint_dir / "lit_model.pth")


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    prompt = render_prompt(
        instruction=render_instruction(me="Me", peer="Anna"), input="Anna: привет"
    )
    text = prompt + MY_REPLY + "\nAnna: пока"
    out = init_tiny_model(
        out_dir=tmp_path_factory.mktemp("gen") / "base",
        corpus=[text],
        vocab_size=300,
        n_layer=2,
        n_embd=64,
        n_head=4,
        block_size=512,
    )
    _overfit(out, text, steps=100)
    return out


def make_run(runs: Path, run_id: str, base_dir: Path, *, seed: int = 0) -> Path:
    return random_lora_run(runs, run_id, base_dir, LORA, seed=seed)


@pytest.fixture(scope="module")
def run_dir(base_dir: Path) -> Path:
    return make_run(base_dir.parent / "runs", "20240101-000000", base_dir)


@pytest.fixture(scope="module")
def base_twin(base_dir: Path) -> Twin:
    return load_twin(base_model_dir=base_dir)


def _greedy(twin: Twin, **kwargs: object) -> Iterator[str]:
    return twin.stream_reply(
        context=CONTEXT,
        me="Me",
        peer="Anna",
        temperature=0.0,
        **kwargs,  # type: ignore[arg-type]
    )


def test_reply_streams_pieces_and_stops_before_the_next_speaker_tag(base_twin: Twin) -> None:
    # What the model writes without any stop rule (litgpt's own greedy loop): my reply, then
    # the start of Anna's turn.
    prompt = base_twin.prompt_ids(context=CONTEXT, me="Me", peer="Anna", max_new_tokens=24)
    raw_ids = list(
        generate_fn(
            base_twin.model, prompt, len(prompt) + 24,
            temperature=0.0, include_prompt=False, include_eos=True,
        )
    )  # fmt: skip
    raw = base_twin.tokenizer.decode(torch.cat(raw_ids))
    assert raw.startswith(MY_REPLY + "\nAnna: ")

    stream = _greedy(base_twin, max_new_tokens=24)
    first = next(stream)  # the first piece arrives while the rest is still to be generated
    assert MY_REPLY.startswith(first) and first != MY_REPLY
    pieces = [first, *stream]
    assert len(pieces) > 2
    assert "".join(pieces) == MY_REPLY
    assert not any("\ufffd" in piece for piece in pieces)
    # The case is real: some tokens of the reply hold only part of a Cyrillic letter.
    reply_ids = base_twin.tokenizer.encode(MY_REPLY).tolist()
    assert any("\ufffd" in base_twin.tokenizer.decode(torch.tensor([i])) for i in reply_ids)


def test_max_new_tokens_caps_the_reply(base_twin: Twin) -> None:
    short = "".join(_greedy(base_twin, max_new_tokens=4))
    assert short and MY_REPLY.startswith(short) and short != MY_REPLY
    assert len(base_twin.tokenizer.encode(short)) <= 4


def test_same_seed_same_reply_and_seeds_vary(run_dir: Path) -> None:
    twin = load_twin(run_dir=run_dir)

    def sampled(seed: int) -> str:
        pieces = twin.stream_reply(
            context=CONTEXT, me="Me", peer="Anna", temperature=1.5, top_k=None, top_p=1.0,
            max_new_tokens=12, seed=seed,
        )  # fmt: skip
        return "".join(pieces)

    assert sampled(1) == sampled(1)
    assert len({sampled(seed) for seed in range(5)}) > 1


def test_adapter_changes_the_model_and_merging_keeps_its_logits(
    base_dir: Path, run_dir: Path, base_twin: Twin
) -> None:
    weights = base_dir / "lit_model.pth"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    twin = load_twin(run_dir=run_dir)
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == digest  # base file untouched

    ids = twin.prompt_ids(context=CONTEXT, me="Me", peer="Anna", max_new_tokens=16).view(1, -1)
    unmerged = LoraGPT(LoraConfig.from_file(base_dir / "model_config.yaml", **LORA.litgpt_kwargs()))
    unmerged.load_state_dict(torch.load(weights, weights_only=True), strict=False)
    unmerged.load_state_dict(torch.load(adapter_path(run_dir), weights_only=True), strict=False)
    unmerged.eval()
    with torch.inference_mode():
        merged_logits = twin.model(ids)
        base_logits = base_twin.model(ids)
        expected = unmerged(ids)
    # Merged (W + B·A·s) and unmerged (W·x + B·A·x·s) round differently in float32: ~1e-5.
    torch.testing.assert_close(merged_logits, expected, atol=1e-4, rtol=1e-4)
    assert (merged_logits - base_logits).abs().max() > 1e-2


def test_long_conversations_drop_the_oldest_turns(base_twin: Twin) -> None:
    turns = [
        Turn(speaker="Anna" if i % 2 else "Me", text=f"message number {i}", mine=i % 2 == 0)
        for i in range(300)
    ]
    ids = base_twin.prompt_ids(context=turns, me="Me", peer="Anna", max_new_tokens=64)
    assert len(ids) <= base_twin.context_length - 64
    prompt = base_twin.tokenizer.decode(ids)
    assert "message number 299" in prompt and "message number 0\n" not in prompt
    # one turn fewer would still fit: only as many turns as needed were dropped
    first_kept = int(prompt.split("message number ")[1].split("\n")[0])
    longer = base_twin.tokenizer.encode(
        render_prompt(
            instruction=render_instruction(me="Me", peer="Anna"),
            input=render_context(turns[first_kept - 1 :]),
        )
    )
    assert len(longer) > base_twin.context_length - 64
    # the prompt leaves exactly the room the reply may take
    reply = base_twin.stream_reply(context=turns, me="Me", peer="Anna", max_new_tokens=64, seed=0)
    assert isinstance("".join(reply), str)

    with pytest.raises(ChatError, match="shorter message"):
        base_twin.stream_reply(
            context=[Turn(speaker="Anna", text="word " * 600, mine=False)], me="Me", peer="Anna"
        )


def test_bad_sampling_settings_fail_before_generating(base_twin: Twin) -> None:
    for bad in ({"temperature": -1.0}, {"top_p": 0.0}, {"top_k": 0}, {"max_new_tokens": 0}):
        with pytest.raises(ChatError) as error:
            base_twin.stream_reply(context=CONTEXT, me="Me", peer="Anna", **bad)  # type: ignore[arg-type]
        assert next(iter(bad)) in str(error.value)


def test_concurrent_replies_take_turns(base_twin: Twin) -> None:
    expected = "".join(_greedy(base_twin, max_new_tokens=24))
    results: list[str] = []

    def worker() -> None:
        results.append("".join(_greedy(base_twin, max_new_tokens=24)))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 3


def test_stop_scanner_holds_back_only_what_could_be_a_tag() -> None:
    scanner = StopScanner(["\nAnna: ", "\nMe: "])
    shown = [scanner.feed(p) for p in ("ok", "\n", "And", " then\nM", "e", ": hi")]
    assert shown == ["ok", "", "\nAnd", " then", "", ""]
    assert scanner.stopped and scanner.flush() == ""
    scanner = StopScanner(["\nAnna: "])
    assert scanner.feed("bye\nAnn") == "bye" and scanner.flush() == "\nAnn"


@given(
    text=st.text(alphabet="ab\nAn: я", max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=8),
)
def test_stop_scanner_shows_exactly_the_text_before_the_first_tag(
    text: str, cuts: list[int]
) -> None:
    stops = ["\nAnna: ", "\nMe: "]
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    expected = text[: min(found)] if found else text
    bounds = [0, *sorted(c for c in cuts if c <= len(text)), len(text)]
    scanner = StopScanner(stops)
    shown = "".join(scanner.feed(text[a:b]) for a, b in pairwise(bounds))
    assert shown + scanner.flush() == expected.rstrip()


@pytest.mark.parametrize(
    ("generated", "shown"),
    [
        ("да, конечно\n\n### Instruction:\nYou are Me.", "да, конечно"),
        ("ok!\n\n### Input:\nAnna: hi", "ok!"),
        ("ok\n### Response:\nsure", "ok"),
        ("fine. You are Me. Write Me's next message in this private chat with Anna.", "fine."),
        ("sure\n\nBelow is an instruction that describes a task", "sure"),
        ("Anna: are you there?", ""),  # another speaker's turn from the very start
        ("Me: sure!\n\n### Input:\nAnna: hi", "sure!"),  # my own tag is not shown
        ("Me", "Me"),
        ("Me: ", ""),
        ("Men are here", "Men are here"),
        ("see you\nMe: and more", "see you"),
        ("line one\nline two\n", "line one\nline two"),
        ("rrow sure\n### tomorrow sure ok", "rrow sure"),  # a header of the model's own making
        ("hi sure ok yes\nfile Input: later", "hi sure ok yes\nfile"),  # a header without "###"
        ("ok Response: sure", "ok"),
    ],
)
def test_replies_never_show_prompt_scaffolding_or_another_turn(generated: str, shown: str) -> None:
    """What a model may write after (or instead of) its turn, fed to the reply's stop rules one
    character at a time, as a stream would."""
    scanner = StopScanner(reply_stops(me="Me", peer="Anna"), line_start=True, skip_prefix="Me: ")
    text = "".join(scanner.feed(c) for c in generated) + scanner.flush()
    assert text == shown


def _scripted_reply(twin: Twin, ids: list[int], monkeypatch: pytest.MonkeyPatch) -> str:
    """The reply shown when the model writes exactly ``ids`` (then EOS)."""
    monkeypatch.setattr(twin, "_generate_ids", lambda *_args, **_kwargs: iter(ids))
    pieces = list(twin.stream_reply(context=CONTEXT, me="Olga Owner", peer="Anna"))
    assert all(pieces), "no empty pieces"
    return "".join(pieces)


@pytest.mark.parametrize(
    ("generated", "shown"),
    [
        ("hiOlga Owner: how are you", "hi"),  # my own turn's header, glued to my words
        ("hiOlga Owner:", "hi"),  # ... cut by the length limit after its colon
        ("sure!Anna: and then", "sure!"),
        ("ok Anna:\nsee you", "ok"),
        ("Olga Owner: fine", "fine"),  # my tag before my words is not shown
        ("Anna is late", "Anna is late"),  # a name is not a tag
    ],
)
def test_a_speaker_tag_anywhere_ends_the_reply(
    base_twin: Twin, generated: str, shown: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = base_twin.tokenizer.encode(generated).tolist()
    assert _scripted_reply(base_twin, ids, monkeypatch) == shown


def test_broken_characters_never_show(base_twin: Twin, monkeypatch: pytest.MonkeyPatch) -> None:
    # A lead byte of a two-byte letter followed by plain text spells nothing: the decoder
    # writes a replacement character for it, mid-reply or at its end.
    tokenizer = base_twin.tokenizer
    lead_byte = tokenizer.processor.token_to_id("Ñ")  # byte 0xD1 in byte-level BPE
    assert tokenizer.decode(torch.tensor([lead_byte])) == "\ufffd"
    ids = [*tokenizer.encode("ok").tolist(), lead_byte, *tokenizer.encode(" fine").tolist()]
    stray = tokenizer.encode("\x03").tolist()  # a control character: drawn as an empty box
    assert _scripted_reply(base_twin, [*ids, *stray, lead_byte], monkeypatch) == "ok fine"


@given(
    words=st.lists(
        st.sampled_from(["a", " ", "\n", ":", "Anna", "Olga Owner", "\ufffd", "\x03", "#"])
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=8),
)
def test_streamed_replies_equal_clean_reply(words: list[str], cuts: list[int]) -> None:
    """The stream, cut anywhere, shows what `clean_reply` makes of the whole text."""
    text = "".join(words)
    bounds = [0, *sorted(c for c in cuts if c <= len(text)), len(text)]
    stops, tag = reply_stops(me="Olga Owner", peer="Anna"), "Olga Owner: "
    scanner = StopScanner(stops, line_start=True, skip_prefix=tag)
    shown = "".join(scanner.feed(without_broken_chars(text[a:b])) for a, b in pairwise(bounds))
    shown += clean_reply(scanner.flush(), me="Olga Owner", peer="Anna")
    assert shown == clean_reply(text, me="Olga Owner", peer="Anna")


def test_run_resolution(settings: Settings, base_dir: Path) -> None:
    with pytest.raises(RunError, match="twin train"):
        resolve_run_dir(settings=settings, run=None)
    runs = settings.data_dir / "runs"
    older = make_run(runs, "20240101-000000", base_dir)
    newer = make_run(runs, "20240202-000000", base_dir)
    assert resolve_run_dir(settings=settings, run=None) == newer.resolve()
    assert resolve_run_dir(settings=settings, run="20240101-000000") == older.resolve()
    assert resolve_run_dir(settings=settings, run=str(older)) == older.resolve()
    with pytest.raises(RunError, match="twin train"):
        resolve_run_dir(settings=settings, run="nope")


def test_twin_chat_streams_a_reply_in_the_terminal(settings: Settings, base_dir: Path) -> None:
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    missing = runner.invoke(app, ["chat"], input="hello\n/quit\n")
    assert missing.exit_code != 0 and "twin train" in str(missing.exception)

    make_run(settings.data_dir / "runs", "20240101-000000", base_dir)
    result = runner.invoke(
        app,
        ["chat", "--as", "Anna", "--me", "Me", "--temperature", "0", "--max-new-tokens", "16"],
        input="привет\n/new\nпривет\n/quit\n",
    )
    assert result.exit_code == 0, result.output
    assert "Anna> " in result.output
    assert result.output.count("Me: ") == 2  # a reply to each message
    assert "(new conversation)" in result.output


def test_the_prompt_pass_computes_logits_at_its_last_position_only(base_twin: Twin) -> None:
    # With a large vocabulary the head is most of a position's work: the logits of the prompt's
    # other positions are never used, so the first piece must not wait for them.
    head_positions: list[int] = []
    hook = base_twin.model.lm_head.register_forward_hook(
        lambda _module, args, _out: head_positions.append(args[0].size(1))
    )
    try:
        reply = "".join(_greedy(base_twin, max_new_tokens=24))
    finally:
        hook.remove()
    assert reply == MY_REPLY  # the same reply as litgpt's full-logits loop gives
    assert head_positions and set(head_positions) == {1}
