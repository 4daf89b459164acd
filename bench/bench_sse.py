"""Streaming cost: tokens/s and time to first token over SSE through the real app, against the
raw generator in this process, on the same tiny model, prompt, seed and reply length.

The app runs under uvicorn in a child process (as `twin serve` runs it) and is asked through
the OpenAI-compatible API (``stream: true``) with httpx; the baseline calls
`Twin.stream_reply` directly here. Both sides alternate, so the machine's load (shared with
others) hits both alike; the ratios are the figures to read. Goals: ≥ 0.9× tokens/s, time to
first token ≤ 1.2× + 20 ms.

    python bench/bench_sse.py [--rounds 5] [--tokens 200]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from bench_web import _log_in, start_server

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

MESSAGES = [
    {"role": "user", "name": "Anna", "content": "hey! are you coming tonight?"},
    {"role": "assistant", "content": "maybe, what time?"},
    {"role": "user", "name": "Anna", "content": "8, at Marco's"},
]
SEED = 7
TTFT_SLACK_MS = 20.0


def _build_run(data_dir: Path) -> str:
    """A dataset, a tiny base model and a finished 2-step run in ``data_dir``; the run id."""
    from twin.config import get_settings
    from twin.db import upgrade_database
    from twin.prepare.format import Turn, render_context, render_instruction
    from twin.runs import TrainingConfig
    from twin.train.tiny import corpus_from_dataset, init_tiny_model
    from twin.train.trainer import TrainingRequest, train

    os.environ["TWIN_DATA_DIR"] = str(data_dir)
    settings = get_settings()
    upgrade_database(settings)
    dataset = settings.dataset_dir
    dataset.mkdir(parents=True)
    records = [
        {
            "instruction": render_instruction(me="Me", peer="Anna"),
            "input": render_context(
                [Turn(speaker="Anna", text=f"are you free at {h}?", mine=False)]
            ),
            "output": f"yes, {h} works",
        }
        for h in range(1, 25)
    ]
    (dataset / "train.json").write_text(json.dumps(records[:20]), encoding="utf-8")
    (dataset / "val.json").write_text(json.dumps(records[20:]), encoding="utf-8")
    (dataset / "stats.json").write_text(json.dumps({"max_seq_length": 256}), encoding="utf-8")
    base = init_tiny_model(out_dir=data_dir / "checkpoints" / "twin-tiny",
                           corpus=corpus_from_dataset(dataset), pretrain_steps=0)  # fmt: skip
    config = TrainingConfig(max_steps=2, micro_batch_size=4, global_batch_size=4, warmup_steps=1)
    request = TrainingRequest(base_model_dir=base, dataset_dir=dataset, config=config)
    return train(request, settings=settings).run_id


def _api_token(base: str) -> str:
    cookies = _log_in(base)
    with httpx.Client(base_url=base, cookies=cookies) as client:
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/settings").text)
        assert csrf, "no CSRF token on the settings page"
        page = client.post("/settings/token", headers={"X-CSRF-Token": csrf.group(1)}).text
    token = re.search(r'data-field="token">([^<]+)<', page)
    assert token, "no token on the settings page"
    return token.group(1)


def _raw(twin: object, tokens: int) -> tuple[float, float, str]:
    """(seconds to the first piece, total seconds, text) straight from the generator."""
    from twin.chat.generate import DEFAULT_TOP_K
    from twin.web.routers.openai_api import ChatMessage, messages_to_turns

    turns, peer = messages_to_turns(
        [ChatMessage.model_validate(m) for m in MESSAGES], me="Me", default_peer="Friend"
    )
    started = time.perf_counter()
    pieces = twin.stream_reply(  # type: ignore[attr-defined]
        context=turns, me="Me", peer=peer, temperature=1.0, top_k=DEFAULT_TOP_K, top_p=1.0,
        max_new_tokens=tokens, seed=SEED,
    )  # fmt: skip
    first, text = None, []
    for piece in pieces:
        first = first or time.perf_counter() - started
        text.append(piece)
    return first or 0.0, time.perf_counter() - started, "".join(text)


def _over_sse(client: httpx.Client, tokens: int) -> tuple[float, float, str]:
    """(seconds to the first content chunk, total seconds, text) through the app."""
    body = {"model": "twin", "messages": MESSAGES, "stream": True, "temperature": 1.0,
            "top_p": 1.0, "max_tokens": tokens, "seed": SEED}  # fmt: skip
    started = time.perf_counter()
    first, text = None, []
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            content = json.loads(line[6:])["choices"][0]["delta"].get("content")
            if content:
                first = first or time.perf_counter() - started
                text.append(content)
    return first or 0.0, time.perf_counter() - started, "".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=200, help="reply length (max_new_tokens)")
    args = parser.parse_args()

    from twin.chat.load import load_twin

    with tempfile.TemporaryDirectory(prefix="twin-bench-sse-") as tmp:
        data_dir = Path(tmp) / "data"
        run_id = _build_run(data_dir)
        twin = load_twin(run_dir=data_dir / "runs" / run_id)
        server, base = start_server(data_dir)
        try:
            headers = {"Authorization": f"Bearer {_api_token(base)}"}
            with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
                _over_sse(client, 8)  # loads the model in the server
                _raw(twin, 8)
                results: dict[str, list[tuple[float, float, str]]] = {"raw": [], "sse": []}
                for _ in range(args.rounds):
                    results["raw"].append(_raw(twin, args.tokens))
                    results["sse"].append(_over_sse(client, args.tokens))
        finally:
            server.terminate()
            server.wait(timeout=10)

    texts = {side: {r[2] for r in runs} for side, runs in results.items()}
    same = texts["raw"] == texts["sse"] and len(texts["raw"]) == 1
    n_tokens = len(twin.tokenizer.encode(results["raw"][0][2]))
    print(f"tiny model, ~{n_tokens} tokens per reply (seed {SEED}), {args.rounds} rounds, "
          f"{os.cpu_count()} CPUs (shared); same text both ways: {same}\n")  # fmt: skip
    header = f"{'path':<28}{'TTFT ms':>10}{'tokens/s':>10}"
    print(header)
    print("-" * len(header))
    figures = {}
    for side, label in (("raw", "raw generator (in process)"), ("sse", "SSE via uvicorn + httpx")):
        ttft = statistics.median(r[0] for r in results[side]) * 1000
        rate = statistics.median(n_tokens / r[1] for r in results[side])
        figures[side] = (ttft, rate)
        print(f"{label:<28}{ttft:>10.1f}{rate:>10.0f}")
    (raw_ttft, raw_rate), (sse_ttft, sse_rate) = figures["raw"], figures["sse"]
    print(f"\ntokens/s ratio SSE/raw: {sse_rate / raw_rate:.2f}  (goal ≥ 0.90)")
    print(f"TTFT ratio SSE/raw: {sse_ttft / raw_ttft:.2f}, difference {sse_ttft - raw_ttft:+.1f} ms"
          f"  (goal ≤ 1.2× + {TTFT_SLACK_MS:.0f} ms: "
          f"{'met' if sse_ttft <= 1.2 * raw_ttft + TTFT_SLACK_MS else 'missed'})")  # fmt: skip


if __name__ == "__main__":
    main()
