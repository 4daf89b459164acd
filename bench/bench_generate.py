"""Generation speed: twin's streamed replies against litgpt's own generation loop.

Same merged model object, same prompt, same greedy decoding and token budget, in one process,
runs interleaved; the best of several runs is reported (the least disturbed one). Rows:

* ``litgpt generate_fn``: `litgpt.generate.base.generate_fn` (what ``LLM.generate(stream=True)``
  runs), each token decoded with litgpt's `Tokenizer.decode` — the baseline;
* ``twin stream_reply``: `Twin.stream_reply` (prompt fitting, UTF-8-safe decoding, stop scan);
* ``twin unmerged LoRA``: the same adapter kept as separate LoRA layers — the cost merging saves.

The machine may be shared: read the ratios (measured side by side), not the absolute figures.
Goal: twin ≥ 0.95× litgpt in tokens/s.

    python bench/bench_generate.py [--runs 5] [--max-new-tokens 128]
    python bench/bench_generate.py --base <checkpoint dir> [--runs 3]   # e.g. Gemma 3 270M

With ``--base`` a real model is timed instead (twin vs litgpt only): its reply may end early
(EOS, a speaker tag), so tokens are counted per run and both loops get the same prompt.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import torch
from litgpt.generate.base import generate_fn
from litgpt.lora import GPT as LoraGPT
from litgpt.lora import Config as LoraConfig
from litgpt.lora import lora_filter

import twin.chat.generate as generate_module
from twin.chat.generate import Twin
from twin.chat.load import load_twin
from twin.prepare.format import Turn, render_context, render_instruction, render_prompt
from twin.runs import LoraSettings, RunRecord, adapter_path, load_run, save_run
from twin.train.tiny import init_tiny_model

SIZES = {  # name: (n_layer, n_embd, n_head)
    "demo 4x128": (4, 128, 4),
    "small 6x512": (6, 512, 8),
}
LORA = LoraSettings(r=8, alpha=16, query=True, value=True, mlp=True)
SEED_TRIES = 20


def conversation(turn_count: int) -> list[Turn]:
    """A made-up chat, alternating speakers."""
    return [
        Turn(
            speaker="Anna" if i % 2 else "Me",
            text=f"message {i}: what do you think about the plan for the weekend?",
            mine=i % 2 == 0,
        )
        for i in range(turn_count)
    ]


def make_run(root: Path, size: tuple[int, int, int], corpus: list[str], seed: int) -> Path:
    """A random tiny base model and a finished run with a random non-zero adapter."""
    n_layer, n_embd, n_head = size
    base = init_tiny_model(
        out_dir=root / "base", corpus=corpus, n_layer=n_layer, n_embd=n_embd, n_head=n_head,
        seed=seed,
    )  # fmt: skip
    model = LoraGPT(LoraConfig.from_file(base / "model_config.yaml", **LORA.litgpt_kwargs()))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    run_dir = root / "run"
    adapter_path(run_dir).parent.mkdir(parents=True)
    adapter = {k: v for k, v in model.state_dict().items() if lora_filter(k, v)}
    torch.save(adapter, adapter_path(run_dir))
    record = RunRecord(
        run_id="bench", base_model_dir=base, dataset_dir=root, dataset_sha256="", lora=LORA,
        max_seq_length=1024, metrics={"status": "done"},
    )  # fmt: skip
    save_run(run_dir, record)
    return run_dir


def forward_calls(twin: Twin, pieces: Callable[[], Iterator[str]]) -> int:
    """How many tokens a reply took: one model call per token (counted with a forward hook)."""
    calls = [0]
    handle = twin.model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        for _ in pieces():
            pass
    finally:
        handle.remove()
    return calls[0]


def unmerged_twin(run_dir: Path, merged: Twin) -> Twin:
    """The same weights with the LoRA layers kept apart (computed on every token)."""
    record = load_run(run_dir)
    config = LoraConfig.from_file(
        record.base_model_dir / "model_config.yaml", **LORA.litgpt_kwargs()
    )
    model = LoraGPT(config)
    model.load_state_dict(torch.load(record.base_model_dir / "lit_model.pth"), strict=False)
    model.load_state_dict(torch.load(adapter_path(run_dir)), strict=False)
    model.requires_grad_(False)
    model.eval()
    return Twin(model=model, tokenizer=merged.tokenizer, name="unmerged")


def timed(pieces: Iterator[str]) -> tuple[float, float, float]:
    """(wall seconds to the first piece, wall seconds, CPU seconds) of consuming ``pieces``.

    The clocks start before the iterator's first step: prompt building counts for every row.
    CPU time leaves out the time spent waiting for a core, which on a shared machine is most of
    the noise.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    first = None
    for _ in pieces:
        if first is None:
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    return first or total, total, time.process_time() - cpu_start


def litgpt_pieces(twin: Twin, turns: list[Turn], max_new_tokens: int) -> Iterator[str]:
    """litgpt's loop on the same prompt (one encode of the whole conversation: it fits)."""
    text = render_prompt(
        instruction=render_instruction(me="Me", peer="Anna"), input=render_context(turns)
    )
    prompt = twin.tokenizer.encode(text).to(torch.int64)
    tokens = generate_fn(
        twin.model, prompt, len(prompt) + max_new_tokens, temperature=0.0,
        stop_tokens=([twin.tokenizer.eos_id],), include_prompt=False, include_eos=False,
    )  # fmt: skip
    for token in tokens:
        yield twin.tokenizer.decode(token)


def twin_pieces(twin: Twin, turns: list[Turn], max_new_tokens: int) -> Iterator[str]:
    """twin's streamed reply, greedy."""
    return twin.stream_reply(
        context=turns, me="Me", peer="Anna", temperature=0.0, max_new_tokens=max_new_tokens
    )


def full_head_pieces(twin: Twin, turns: list[Turn], max_new_tokens: int) -> Iterator[str]:
    """twin's reply with the LM head over every prompt position, as before the prefill kept only
    the last one: the cost of the thrown-away logits, measured in the same run."""
    kept = generate_module.last_position_logits
    generate_module.last_position_logits = lambda model, tokens, input_pos, length: model(
        tokens, input_pos, input_pos_maxp1=length
    )
    try:
        yield from twin_pieces(twin, turns, max_new_tokens)
    finally:
        generate_module.last_position_logits = kept


def bench_size(name: str, size: tuple[int, int, int], *, runs: int, max_new_tokens: int) -> None:
    turns = conversation(12)
    with tempfile.TemporaryDirectory() as tmp:
        # A random model may write EOS or a speaker tag early; pick weights whose greedy reply
        # runs the whole budget in both loops, so every row times the same tokens.
        for seed in range(SEED_TRIES):
            run_dir = make_run(Path(tmp) / str(seed), size, [render_context(turns)] * 4, seed)
            merged = load_twin(run_dir=run_dir)
            lengths = {
                forward_calls(merged, partial(make, merged, turns, max_new_tokens))
                for make in (litgpt_pieces, twin_pieces)
            }
            if lengths == {max_new_tokens}:
                break
        else:
            raise SystemExit(f"no seed out of {SEED_TRIES} gave a full-length greedy reply")
        unmerged = unmerged_twin(run_dir, merged)
        contenders: dict[str, Callable[[], Iterator[str]]] = {
            "litgpt generate_fn": partial(litgpt_pieces, merged, turns, max_new_tokens),
            "twin stream_reply": partial(twin_pieces, merged, turns, max_new_tokens),
            "twin unmerged LoRA": partial(twin_pieces, unmerged, turns, max_new_tokens),
        }
        for make in contenders.values():  # warm-up
            timed(make())
        results: dict[str, list[tuple[float, float, float]]] = {label: [] for label in contenders}
        labels = list(contenders)
        for run in range(runs):  # interleaved, order rotated: load spikes hit every row alike
            for label in labels[run % 3 :] + labels[: run % 3]:
                results[label].append(timed(contenders[label]()))
        prompt = merged.prompt_ids(context=turns, me="Me", peer="Anna", max_new_tokens=1)

    print(
        f"\n{name}: prompt {len(prompt)} tokens, {max_new_tokens} new tokens, greedy, "
        f"{torch.get_num_threads()} thread(s), best of {runs}, weights seed {seed}"
    )
    columns = ("tokens/s wall", "tokens/s CPU", "first piece ms", "vs litgpt (CPU)")
    print(f"  {'':20}" + "".join(f"{c:>17}" for c in columns))
    litgpt_cpu = min(cpu for _, _, cpu in results["litgpt generate_fn"])
    for label, rows in results.items():
        first, wall, cpu = (min(column) for column in zip(*rows, strict=True))
        figures = (
            f"{max_new_tokens / wall:.0f}",
            f"{max_new_tokens / cpu:.0f}",
            f"{first * 1000:.1f}",
            f"{litgpt_cpu / cpu:.2f}×",
        )
        print(f"  {label:20}" + "".join(f"{f:>17}" for f in figures))


def bench_base(base: Path, *, runs: int, max_new_tokens: int) -> None:
    """twin's reply loop against litgpt's on a real base model (tokens counted per run)."""
    twin = load_twin(base_model_dir=base)
    turns = [
        Turn(speaker="Anna", text="Привет! Ты сегодня придёшь на ужин? Во сколько?", mine=False),
        Turn(speaker="Me", text="привет! да, думаю к восьми", mine=True),
        Turn(speaker="Anna", text="Отлично. Can you bring some wine? 🍷", mine=False),
    ]
    # twin's reply ends at its turn boundary; litgpt's loop gets the same number of tokens
    # (greedy: the same tokens), so the prompt's pass weighs alike in both rates.
    reply_tokens = forward_calls(twin, partial(twin_pieces, twin, turns, max_new_tokens))
    contenders: dict[str, Callable[[], Iterator[str]]] = {
        "litgpt generate_fn": partial(litgpt_pieces, twin, turns, reply_tokens),
        "twin stream_reply": partial(twin_pieces, twin, turns, max_new_tokens),
        "twin, head at every prompt position": partial(
            full_head_pieces, twin, turns, max_new_tokens
        ),
    }
    results: dict[str, list[tuple[float, float, float, int]]] = {k: [] for k in contenders}
    for run in range(runs + 1):  # the first round warms up
        for label, make in contenders.items():
            calls = [0]
            hook = twin.model.register_forward_hook(
                lambda *_, calls=calls: calls.__setitem__(0, calls[0] + 1)
            )
            try:
                figures = timed(make())
            finally:
                hook.remove()
            if run:
                results[label].append((*figures, calls[0]))
    prompt = twin.prompt_ids(context=turns, me="Me", peer="Anna", max_new_tokens=1)
    print(
        f"\n{base.name}: prompt {len(prompt)} tokens, up to {max_new_tokens} new tokens, greedy, "
        f"{torch.get_num_threads()} thread(s), best of {runs}"
    )
    columns = ("tokens", "tokens/s wall", "tokens/s CPU", "first piece ms", "vs litgpt (CPU)")
    print(f"  {'':36}" + "".join(f"{c:>17}" for c in columns))
    rates = {
        label: max(count / cpu for _, _, cpu, count in rows) for label, rows in results.items()
    }
    for label, rows in results.items():
        first = min(r[0] for r in rows)
        wall = max(count / w for _, w, _, count in rows)
        figures = (
            f"{rows[0][3]}",
            f"{wall:.1f}",
            f"{rates[label]:.1f}",
            f"{first * 1000:.0f}",
            f"{rates[label] / rates['litgpt generate_fn']:.2f}×",
        )
        print(f"  {label:36}" + "".join(f"{f:>17}" for f in figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--base", type=Path, help="time this real checkpoint dir instead")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.base is not None:
        bench_base(args.base.expanduser().resolve(), runs=args.runs, max_new_tokens=64)
        return
    for name, size in SIZES.items():
        bench_size(name, size, runs=args.runs, max_new_tokens=args.max_new_tokens)


if __name__ == "__main__":
    main()
