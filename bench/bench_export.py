"""Export time and size per format: ``twin export`` of a finished run (base + adapter merged).

Rows: ``hf`` (safetensors in the base model's dtype), ``gguf`` in ``f32``, ``f16`` and
``q8_0``. The baseline, measured in the same run, is the merge alone (`merge_run`: the merged
litgpt ``lit_model.pth`` every export starts from): the ratio says what converting and writing
the format adds. Sizes are the export dir's files; ``ratio`` sizes are against the merged
checkpoint.

The models are demo shapes (4×128 and 6×512), or with ``--base DIR`` a real litgpt checkpoint
(e.g. Gemma 3 270M from ``twin model get gemma-3-270m``) with an attention-only adapter, as
twin trains by default; then the rows are ``hf``, ``gguf f16`` and ``gguf q8_0``.

    python bench/bench_export.py [--runs 3]
    python bench/bench_export.py --base ~/.local/share/twin/checkpoints/google/gemma-3-270m \
        --runs 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from litgpt.lora import GPT as LoraGPT
from litgpt.lora import Config as LoraConfig
from litgpt.lora import lora_filter

from twin.config import Settings
from twin.export.run import export_run
from twin.runs import LoraSettings, RunRecord, adapter_path, save_run
from twin.train.merge import merge_run
from twin.train.tiny import init_tiny_model

SIZES = {"demo 4x128": (4, 128, 4), "small 6x512": (6, 512, 8)}
LORA = LoraSettings(r=8, alpha=16, dropout=0.0)  # twin's default targets: query, value


def make_tiny_base(root: Path, n_layer: int, n_embd: int, n_head: int) -> Path:
    words = [f"word{i} and more text number {i}" for i in range(3000)]
    return init_tiny_model(
        out_dir=root / "base", corpus=words, vocab_size=2048, n_layer=n_layer, n_embd=n_embd,
        n_head=n_head, block_size=1024,
    )  # fmt: skip


def make_run(root: Path, base: Path) -> tuple[Settings, str]:
    """A finished run on ``base`` whose adapter is freshly initialized (merging costs the same)."""
    run_dir = root / "data" / "runs" / "20240101-000000"
    adapter_path(run_dir).parent.mkdir(parents=True)
    model = LoraGPT(LoraConfig.from_file(base / "model_config.yaml", **LORA.litgpt_kwargs()))
    torch.save(
        {k: v for k, v in model.state_dict().items() if lora_filter(k, v)}, adapter_path(run_dir)
    )
    record = RunRecord(
        run_id="20240101-000000", base_model_dir=base, dataset_dir=root, dataset_sha256="0" * 64,
        lora=LORA, max_seq_length=256, metrics={"status": "done"},
    )  # fmt: skip
    save_run(run_dir, record)
    return Settings(data_dir=root / "data"), "20240101-000000"


def best_seconds(work: Callable[[], Path], runs: int) -> tuple[float, Path]:
    best, path = float("inf"), Path()
    for _ in range(runs):
        start = time.perf_counter()
        path = work()
        best = min(best, time.perf_counter() - start)
    return best, path


def size_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.iterdir())


def measure(label: str, base: Path, root: Path, formats: list[tuple[str, str]], runs: int) -> None:
    settings, run = make_run(root, base)
    run_dir = settings.data_dir / "runs" / run
    merge_s, merged = best_seconds(partial(merge_run, run_dir=run_dir), runs)
    merged_bytes = size_bytes(merged)
    print(f"\n{label}: merged checkpoint {merged_bytes / 1e6:.2f} MB in {merge_s:.3f} s")
    print(f"{'format':<10} {'seconds':>8} {'× merge':>8} {'MB':>8} {'× size':>7}")
    for fmt, quant in formats:
        export = partial(export_run, settings=settings, run=run, fmt=fmt, quant=quant)
        seconds, path = best_seconds(export, runs)
        size = size_bytes(path)
        name = fmt if fmt == "hf" else f"gguf {quant}"
        print(
            f"{name:<10} {seconds:8.3f} {seconds / merge_s:8.1f} {size / 1e6:8.2f} "
            f"{size / merged_bytes:7.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--base", type=Path, help="a litgpt checkpoint dir instead of demo shapes")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.base is not None:
        base = args.base.expanduser().resolve()
        with tempfile.TemporaryDirectory() as tmp:
            formats = [("hf", "f32"), ("gguf", "f16"), ("gguf", "q8_0")]
            measure(args.base.name, base, Path(tmp), formats, args.runs)
        return
    for label, (n_layer, n_embd, n_head) in SIZES.items():
        with tempfile.TemporaryDirectory() as tmp:
            base = make_tiny_base(Path(tmp), n_layer, n_embd, n_head)
            formats = [("hf", "f32"), ("gguf", "f32"), ("gguf", "f16"), ("gguf", "q8_0")]
            measure(label, base, Path(tmp), formats, args.runs)


if __name__ == "__main__":
    main()
