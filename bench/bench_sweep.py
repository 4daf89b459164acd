"""Training defaults chosen by fidelity, not by validation loss: a small sweep over epochs,
learning rate and LoRA rank, each run judged by ``twin eval``'s figures on held-out replies.

Every combination trains a LoRA adapter on the same dataset and base model, then the fidelity
report generates the twin's and the base model's replies to the same held-out contexts. The
table shows, per run: validation loss (for comparison only), perplexity twin/base, the
discriminator's accuracy twin-vs-me (0.50 = indistinguishable) with the base model's as the
reference, how many style ratios twin/me fall inside 0.75–1.25, and the mean distance of the
style ratios from 1 (|log ratio|). The pick: lowest discriminator accuracy, then most style
ratios inside, then smallest style distance.

    python bench/bench_sweep.py [--base CHECKPOINT_DIR] [--data DATASET_DIR] \\
        [--epochs 1 3] [--lr 3e-4 1e-3] [--rank 8 16] [--replies 64]

Without ``--data`` the bundled sample export (a realistic Russian/English account), or with
``--persona N`` a persona export of N conversations (`make_persona_export.py`: 14 contacts,
ru/en), is imported into a scratch data dir and prepared with the base model's tokenizer.
Without ``--base`` a tiny demo model (2 × 64, 50 pre-training steps) is built from that
export first: a quick run of the method, not a choice of defaults.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from make_persona_export import build_persona_export  # noqa: E402

from twin.chat.defaults import DEFAULT_TEMPERATURE, DEFAULT_TOP_P, Sampling  # noqa: E402
from twin.config import Settings  # noqa: E402
from twin.db import upgrade_database  # noqa: E402
from twin.evaluate.fidelity import evaluate_run, rejudge_run  # noqa: E402
from twin.evaluate.report import FidelityReport, style_ratios_inside  # noqa: E402
from twin.importer import import_export  # noqa: E402
from twin.prepare.dataset import prepare_dataset  # noqa: E402
from twin.runs import (  # noqa: E402
    MIN_STEPS,
    LoraSettings,
    TrainingConfig,
    load_run,
    runs_dir,
)
from twin.train.tiny import corpus_from_export, init_tiny_model  # noqa: E402
from twin.train.trainer import TrainingRequest, train  # noqa: E402

SAMPLE_EXPORT = ROOT / "samples" / "sample_export" / "result.json"
TARGETS: dict[str, dict[str, bool]] = {
    "qv": {"key": False, "projection": False, "mlp": False},  # query and value only
    "all": {},  # LoraSettings' defaults: every linear layer of the blocks
}
"""The layers LoRA adapts, by the name ``--targets`` takes."""


def sample_dataset(
    work: Path, *, base: Path, max_seq_length: int, export: Path = SAMPLE_EXPORT
) -> Path:
    """Import an export (the bundled sample by default) and prepare a dataset from it in ``work``.

    Args:
        work: a scratch directory.
        base: the base model, whose tokenizer measures lengths.
        max_seq_length: token budget per sample.
        export: a Telegram Desktop ``result.json``.
    """
    settings = Settings(data_dir=work / "import")
    upgrade_database(settings)
    import_export(settings=settings, path=export)
    out_dir = work / "dataset"
    prepare_dataset(
        settings=settings,
        out_dir=out_dir,
        tokenizer_dir=base,
        max_seq_length=max_seq_length,
        val_fraction=0.2,
    )
    return out_dir


def style_distance(report: FidelityReport) -> float | None:
    """Mean |log(twin/me)| over the style figures with a positive ratio (0: like me).

    Args:
        report: a fidelity report with style figures.
    """
    if report.style is None:
        return None
    ratios = [r.twin_ratio for r in report.style.rows if r.twin_ratio]
    return sum(abs(math.log(r)) for r in ratios) / len(ratios) if ratios else None


def sweep_row(
    report: FidelityReport, *, config: TrainingConfig, metrics: dict[str, Any]
) -> dict[str, Any]:
    """One table row: the run's settings, the replies' sampling and the fidelity figures."""
    inside, total = style_ratios_inside(report)
    rows = report.style.rows if report.style else []
    language = next((r for r in rows if r.figure == "reply in the chat's language"), None)
    lora = config.lora
    return {
        "epochs": config.epochs,
        "lr": config.learning_rate,
        "rank": lora.r,
        "targets": "all" if lora.mlp and lora.projection else "qv",
        "temperature": report.sampling.temperature if report.sampling else None,
        "top_p": report.sampling.top_p if report.sampling else None,
        "steps": metrics.get("steps"),
        "val_loss": metrics.get("val_loss"),
        "ppl_ratio": report.twin_perplexity / report.base_perplexity,
        "twin_acc": report.twin_vs_me.accuracy if report.twin_vs_me else None,
        "twin_acc_ci": (
            (report.twin_vs_me.accuracy_low, report.twin_vs_me.accuracy_high)
            if report.twin_vs_me
            else None
        ),
        "base_acc": report.base_vs_me.accuracy if report.base_vs_me else None,
        "style_inside": f"{inside}/{total}",
        "style_inside_count": inside,
        "style_distance": style_distance(report),
        "language": language.twin if language else None,
        "language_me": language.me if language else None,
        "train_seconds": metrics.get("seconds"),
    }


def pick(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The chosen defaults: least distinguishable, then most style ratios like mine, then the
    smallest style distance. An accuracy below 0.5 is chance, as good as 0.5."""

    def key(row: dict[str, Any]) -> tuple[float, int, float]:
        accuracy = max(0.5, row["twin_acc"]) if row["twin_acc"] is not None else 1.0
        distance = row["style_distance"] if row["style_distance"] is not None else math.inf
        return (round(accuracy, 2), -row["style_inside_count"], distance)

    return min(rows, key=key)


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _rank(row: dict[str, Any]) -> str:
    return f"{row['rank']}" + (" (all layers)" if row.get("targets") == "all" else "")


def print_table(rows: list[dict[str, Any]], chosen: dict[str, Any]) -> None:
    print(
        "| epochs | lr | rank | temperature / top-p | steps | val loss | ppl twin/base "
        "| disc. acc twin vs me (95%) | base vs me | style ratios in 0.75–1.25 "
        "| style distance | chat language twin (me) | |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        ci = row["twin_acc_ci"]
        print(
            f"| {row['epochs']} | {row['lr']:g} | {_rank(row)} "
            f"| {_fmt(row['temperature'], 'g')} / {_fmt(row['top_p'], 'g')} "
            f"| {_fmt(row['steps'], 'd')} "
            f"| {_fmt(row['val_loss'], '.3f')} | {row['ppl_ratio']:.3f} "
            f"| {_fmt(row['twin_acc'], '.2f')}"
            + (f" ({ci[0]:.2f}–{ci[1]:.2f})" if ci else "")
            + f" | {_fmt(row['base_acc'], '.2f')} | {row['style_inside']} "
            f"| {_fmt(row['style_distance'], '.2f')} | {_fmt(row['language'], '.0%')} "
            f"({_fmt(row['language_me'], '.0%')}) "
            f"| {'**picked**' if row is chosen else ''} |"
        )
    by_loss = min(rows, key=lambda r: r["val_loss"] if r["val_loss"] is not None else math.inf)
    print(
        f"\npicked by fidelity: epochs {chosen['epochs']}, lr {chosen['lr']:g}, "
        f"rank {_rank(chosen)}, temperature {_fmt(chosen['temperature'], 'g')}, "
        f"top-p {_fmt(chosen['top_p'], 'g')}; by val loss it would be: "
        f"epochs {by_loss['epochs']}, lr {by_loss['lr']:g}, rank {_rank(by_loss)}"
    )


def judge(
    run_dir: Path, args: argparse.Namespace, *, metrics: dict[str, Any]
) -> list[dict[str, Any]]:
    """A finished run's rows: its fidelity report at each sampling setting asked for."""
    record = load_run(run_dir)
    config = record.config
    rows = []
    for temperature, top_p in itertools.product(args.temperature, args.top_p):
        report = evaluate_run(
            settings=Settings(data_dir=run_dir.parent.parent),
            run_dir=run_dir,
            samples=0,
            replies=args.replies,
            max_new_tokens=args.max_new_tokens,
            sampling=Sampling(temperature=temperature, top_p=top_p),
            seed=args.seed,
        )
        row = sweep_row(report, config=config, metrics=metrics)
        rows.append(row)
        print(f"{run_dir.name}: {json.dumps(row)}", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, help="litgpt checkpoint dir (default: demo model)")
    parser.add_argument("--data", type=Path, help="dataset dir (default: the sample export)")
    parser.add_argument(
        "--persona",
        type=int,
        metavar="SESSIONS",
        help="instead of the sample export, a persona export of this many conversations "
        "(bench/make_persona_export.py)",
    )
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--lr", type=float, nargs="+", default=[3e-4, 1e-3])
    parser.add_argument("--rank", type=int, nargs="+", default=[8, 16])
    parser.add_argument(
        "--temperature",
        type=float,
        nargs="+",
        default=[DEFAULT_TEMPERATURE],
        help="sampling temperatures of the replies (each trained run is judged at each)",
    )
    parser.add_argument("--top-p", type=float, nargs="+", default=[DEFAULT_TOP_P])
    parser.add_argument(
        "--targets",
        nargs="+",
        choices=sorted(TARGETS),
        default=["all"],
        help="the layers LoRA adapts: all (every linear layer of the blocks, the default), "
        "qv (query and value only)",
    )
    parser.add_argument("--run-dir", type=Path, help="judge this finished run only (no training)")
    parser.add_argument(
        "--rejudge",
        action="store_true",
        help="with --run-dir: compute the figures again from the replies its last report "
        "judged (no generation)",
    )
    parser.add_argument("--max-steps", type=int, help="cap on steps per run (quick trials)")
    parser.add_argument(
        "--min-steps",
        type=int,
        default=MIN_STEPS,
        help="passes are added until a run has this many steps (0: exactly --epochs)",
    )
    parser.add_argument("--global-batch-size", type=int, default=16)
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--max-seq-length", type=int, default=512)
    parser.add_argument("--replies", type=int, default=64, help="held-out replies per run")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument(
        "--keep", type=Path, help="work in this dir and keep it (the runs, for --run-dir later)"
    )
    args = parser.parse_args()
    if args.run_dir and args.rejudge:
        run_dir = args.run_dir.resolve()
        record = load_run(run_dir)
        rows = [sweep_row(rejudge_run(run_dir), config=record.config, metrics=record.metrics)]
    elif args.run_dir:
        run_dir = args.run_dir.resolve()
        rows = judge(run_dir, args, metrics=load_run(run_dir).metrics)
    else:
        rows = sweep(args)
    chosen = pick(rows)
    print_table(rows, chosen)
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "picked": chosen}, indent=1))


def sweep(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Train every combination of epochs × lr × rank on one dataset and judge each run."""
    with tempfile.TemporaryDirectory(prefix="twin-sweep-") as scratch:
        work = args.keep.resolve() if args.keep else Path(scratch)
        base = (
            args.base.resolve()
            if args.base
            else init_tiny_model(
                out_dir=work / "demo-model",
                corpus=corpus_from_export(SAMPLE_EXPORT),
                vocab_size=1024,
                n_layer=2,
                n_embd=64,
                pretrain_steps=50,
            )
        )
        export = SAMPLE_EXPORT
        if args.persona:
            export = work / "persona.json"
            persona = build_persona_export(sessions=args.persona, seed=args.seed)
            export.write_text(json.dumps(persona, ensure_ascii=False), encoding="utf-8")
        data = (
            args.data.resolve()
            if args.data
            else sample_dataset(work, base=base, max_seq_length=args.max_seq_length, export=export)
        )
        held_out = len(json.loads((data / "val.json").read_text(encoding="utf-8")))
        print(f"dataset {data}: {held_out} held-out samples; base {base}", file=sys.stderr)
        settings = Settings(data_dir=work / "data")
        rows = []
        for epochs, lr, rank, targets in itertools.product(
            args.epochs, args.lr, args.rank, args.targets
        ):
            run_id = f"e{epochs}-lr{lr:g}-r{rank}" + ("" if targets == "qv" else f"-{targets}")
            config = TrainingConfig(
                lora=LoraSettings(r=rank, alpha=2 * rank, **TARGETS[targets]),
                learning_rate=lr,
                epochs=epochs,
                max_steps=args.max_steps,
                min_steps=args.min_steps,
                global_batch_size=args.global_batch_size,
                warmup_steps=args.warmup_steps,
                max_seq_length=args.max_seq_length,
                seed=args.seed,
            )
            started = time.perf_counter()
            request = TrainingRequest(
                base_model_dir=base, dataset_dir=data, run_id=run_id, config=config
            )
            record = train(request, settings=settings).record
            assert record is not None
            metrics = dict(record.metrics, seconds=round(time.perf_counter() - started, 1))
            rows += judge(runs_dir(settings) / run_id, args, metrics=metrics)
    return rows


if __name__ == "__main__":
    main()
