"""Training throughput: twin's trainer against ``litgpt finetune_lora`` on the same tiny model,
data and settings, in one run (the machine may be shared: compare the ratios, not the figures).

Both run as child processes, alternating, ``--repeats`` times each; the table shows the median.
Tokens/s counts every token fed to the model (padding included); useful tokens/s only the
sample tokens (prompt + reply, no padding); both over the training loop's own wall time (as
litgpt's performance report measures it), not process start-up. Peak RSS is the child's.

    python bench/bench_train.py [--steps 40] [--repeats 2]
    python bench/bench_train.py --base ~/.local/share/twin/checkpoints/google/gemma-3-270m \
        --steps 6 --repeats 1 --global-batch 4     # Gemma 3 270M (`twin model get gemma-3-270m`)

On a real model with a large vocabulary (Gemma: 262k) most of litgpt's time goes to the LM
head over every position; twin computes it only where the reply's labels count.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twin.prepare.format import Turn, render_context, render_instruction  # noqa: E402

MICRO_BATCH, GLOBAL_BATCH, MAX_SEQ_LENGTH, LR, SEED = 4, 16, 512, 3e-4, 42
WORDS = "yes no maybe tomorrow tonight coffee pizza work home later sure okay thanks".split()  # noqa: SIM905


def chat_dataset(out_dir: Path, *, samples: int, seed: int = 0) -> Path:
    """A dataset with chat-like length spread: 1 to 14 turns of context per sample.

    Args:
        out_dir: where train.json and val.json go.
        samples: how many (90% train).
        seed: makes it reproducible.
    """
    rng = random.Random(seed)
    records = []
    for _ in range(samples):
        turns = [
            Turn(
                speaker=rng.choice(["Anna", "Me"]),
                text=" ".join(rng.choices(WORDS, k=rng.randint(2, 12))),
                mine=False,
            )
            for _ in range(rng.randint(1, 14))
        ]
        records.append(
            {
                "instruction": render_instruction(me="Me", peer="Anna"),
                "input": render_context(turns),
                "output": " ".join(rng.choices(WORDS, k=rng.randint(1, 10))),
            }
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    cut = int(samples * 0.9)
    (out_dir / "train.json").write_text(json.dumps(records[:cut]))
    (out_dir / "val.json").write_text(json.dumps(records[cut:]))
    return out_dir


def run_child(command: list[str], env: dict[str, str]) -> tuple[str, int]:
    """Run a child to completion; its output and peak RSS in bytes."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
    )
    output = process.stdout.read() if process.stdout else ""
    _pid, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{command[:3]} failed:\n{output[-3000:]}")
    return output, usage.ru_maxrss * 1024


def run_twin(
    model: Path, dataset: Path, work: Path, steps: int, group: bool, env: dict[str, str]
) -> dict[str, float]:
    out = work / f"twin-{group}-{random.random():.6f}"
    code = (
        "import json,sys; from pathlib import Path; from twin.config import Settings; "
        "from twin.runs import TrainingConfig; "
        "from twin.train.trainer import TrainingRequest, train; "
        "c=TrainingConfig.model_validate_json(sys.argv[4]); "
        "q=TrainingRequest(base_model_dir=Path(sys.argv[1]), dataset_dir=Path(sys.argv[2]), "
        "run_id='bench', config=c); "
        "r=train(q, settings=Settings(data_dir=Path(sys.argv[3]))).record; "
        "print('RESULT', json.dumps(r.metrics))"
    )
    from twin.runs import TrainingConfig

    config = TrainingConfig(
        learning_rate=LR,
        warmup_steps=1,
        max_steps=steps,
        epochs=1000,
        micro_batch_size=MICRO_BATCH,
        global_batch_size=GLOBAL_BATCH,
        max_seq_length=MAX_SEQ_LENGTH,
        group_by_length=group,
        precision="32-true",
        seed=SEED,
        eval_interval=10**6,
        checkpoint_interval=10**6,
    )
    output, rss = run_child(
        [sys.executable, "-c", code, str(model), str(dataset), str(out), config.model_dump_json()],
        env,
    )
    metrics = json.loads(output.split("RESULT", 1)[1])
    return {
        "tokens_per_second": metrics["tokens_per_second"],
        "useful_tokens_per_second": metrics["useful_tokens_per_second"],
        "padding_fraction": metrics["padding_fraction"],
        "peak_rss": rss,
    }


def _litgpt_lora_flags() -> list[str]:
    """litgpt's command-line flags for twin's default LoRA shape: both sides train the same."""
    from twin.runs import LoraSettings

    flags = []
    for name, value in LoraSettings().litgpt_kwargs().items():
        flags += [f"--{name}", str(value).lower()]
    return flags


def run_litgpt(
    model: Path, dataset: Path, work: Path, steps: int, env: dict[str, str]
) -> dict[str, float]:
    litgpt = Path(sys.executable).with_name("litgpt")
    command = [
        str(litgpt), "finetune_lora", str(model),
        "--data", "JSON", "--data.json_path", str(dataset), "--data.mask_prompt", "true",
        "--data.num_workers", "0", "--precision", "32-true", "--seed", str(SEED),
        "--out_dir", str(work / f"litgpt-{random.random():.6f}"),
        *_litgpt_lora_flags(),
        "--train.micro_batch_size", str(MICRO_BATCH),
        "--train.global_batch_size", str(GLOBAL_BATCH),
        "--train.max_steps", str(steps), "--train.epochs", "1000", "--train.lr_warmup_steps", "1",
        "--train.max_seq_length", str(MAX_SEQ_LENGTH), "--train.save_interval", "1000000",
        "--eval.interval", "1000000", "--eval.initial_validation", "false",
        "--eval.final_validation", "false",
        "--optimizer", json.dumps({"class_path": "torch.optim.AdamW", "init_args": {"lr": LR}}),
    ]  # fmt: skip
    output, rss = run_child(command, env)

    def figure(label: str) -> float:
        match = re.search(rf"{re.escape(label)}\s*:\s*([\d.]+)", output)
        if not match:
            raise SystemExit(f"litgpt's report has no {label!r}:\n{output[-3000:]}")
        return float(match.group(1))

    seconds = figure("Training Time")
    total, useful = figure("Total Tokens (w/ Padding)"), figure("Tokens w/ Prompt")
    return {
        "tokens_per_second": total / seconds,
        "useful_tokens_per_second": useful / seconds,
        "padding_fraction": 1 - useful / total,
        "peak_rss": rss,
    }


def main() -> None:
    global GLOBAL_BATCH
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=45)  # one epoch of 720 samples
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=800)
    parser.add_argument("--base", type=Path, help="a litgpt checkpoint dir (default: tiny demo)")
    parser.add_argument("--global-batch", type=int, default=16)
    args = parser.parse_args()
    GLOBAL_BATCH = args.global_batch

    from twin.train.tiny import corpus_from_dataset, init_tiny_model

    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    with tempfile.TemporaryDirectory(prefix="twin-bench-train-") as tmp:
        work = Path(tmp)
        dataset = chat_dataset(work / "dataset", samples=args.samples)
        model = args.base.expanduser().resolve() if args.base else None
        model = model or init_tiny_model(
            out_dir=work / "model", corpus=corpus_from_dataset(dataset)
        )  # demo size
        runs: dict[str, list[dict[str, float]]] = {
            "litgpt finetune_lora": [],
            "twin (grouped)": [],
            "twin (no grouping)": [],
        }
        for repeat in range(args.repeats):
            print(f"repeat {repeat + 1}/{args.repeats} …", file=sys.stderr)
            runs["litgpt finetune_lora"].append(run_litgpt(model, dataset, work, args.steps, env))
            runs["twin (grouped)"].append(run_twin(model, dataset, work, args.steps, True, env))
            runs["twin (no grouping)"].append(
                run_twin(model, dataset, work, args.steps, False, env)
            )

    median = {
        name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()
    }
    base = median["litgpt finetune_lora"]
    print(
        f"{args.base.name if args.base else 'tiny demo model (4×128)'}, "
        f"{args.steps} steps × {GLOBAL_BATCH} samples, "
        f"micro-batch {MICRO_BATCH}, "
        f"32-true CPU, OMP_NUM_THREADS={env['OMP_NUM_THREADS']}, median of {args.repeats}"
    )
    print(
        f"{'':22} {'tokens/s':>10} {'ratio':>6} {'useful/s':>10} {'ratio':>6} "
        f"{'padding':>8} {'peak RSS':>9}"
    )
    for name, m in median.items():
        total, useful = m["tokens_per_second"], m["useful_tokens_per_second"]
        print(
            f"{name:22} {total:>10,.0f} {total / base['tokens_per_second']:>5.2f}× "
            f"{useful:>10,.0f} {useful / base['useful_tokens_per_second']:>5.2f}× "
            f"{m['padding_fraction']:>8.1%} {m['peak_rss'] / 2**20:>7.0f}MB"
        )


if __name__ == "__main__":
    main()
