"""The whole story on the command line, timed: the bundled sample export → import → dataset →
base model → train (a few steps) → eval → one chat reply, in a throw-away data dir.

    python scripts/demo.py                         # the demo model: a couple of minutes on a CPU
    python scripts/demo.py --base-model gemma-3-270m
    TWIN_AUTO_BASE_MODEL=gemma-3-270m make demo

Every stage is the ``twin`` command a user would type (run as ``python -m twin`` with this
interpreter), so the demo breaks when the CLI does. The dataset is built twice: first measured
in characters (the demo model's tokenizer is trained on its text), then in the base model's
tokens, which training insists on. Nothing leaves the machine; the data dir is deleted at the
end unless ``--keep`` names one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_EXPORT = ROOT / "samples" / "sample_export" / "result.json"
BASE_MODELS = ("demo", "gemma-3-270m")
QUESTION = "hi! are you coming tonight?\n"


@dataclass(frozen=True)
class Stage:
    """One step of the story: its name and the ``twin`` arguments that run it."""

    name: str
    args: list[str]
    stdin: str | None = None


def stages(*, base_model: str, train_steps: int, pretrain_steps: int) -> list[Stage]:
    """The stages in order, for the chosen base model."""
    if base_model == "demo":
        base = Stage("base model", ["model", "init-tiny", "--steps", str(pretrain_steps)])
    else:
        base = Stage("base model", ["model", "get", base_model])
    every = str(train_steps)  # validate and checkpoint once, at the end
    train = ["train", "--max-steps", every, "--warmup-steps", "1"]
    train += ["--eval-interval", every, "--checkpoint-interval", every]
    evaluate = ["eval", "--samples", "1", "--max-samples", "8"]
    evaluate += ["--replies", "4", "--max-new-tokens", "16"]
    return [
        Stage("import", ["import", str(SAMPLE_EXPORT)]),
        Stage("dataset", ["prepare"]),
        base,
        Stage("dataset in its tokens", ["prepare"]),
        Stage("train", train),
        Stage("eval", evaluate),
        Stage("chat", ["chat", "--seed", "0", "--max-new-tokens", "24"], stdin=QUESTION),
    ]


def run(stage: Stage, *, env: dict[str, str]) -> float:
    """Run one stage with its output shown as it comes; return its seconds.

    Raises:
        SystemExit: with the stage's exit code when it fails, naming the stage.
    """
    command = [sys.executable, "-m", "twin", *stage.args]
    print(f"\n== {stage.name}: twin {' '.join(stage.args)}", flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, env=env, input=stage.stdin, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        print(f"\ndemo failed at stage {stage.name!r} (exit code {result.returncode})")
        raise SystemExit(result.returncode)
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--base-model",
        choices=BASE_MODELS,
        default=os.environ.get("TWIN_AUTO_BASE_MODEL", "demo"),
        help="demo (tiny, built from the sample's text) or gemma-3-270m "
        "(default: $TWIN_AUTO_BASE_MODEL, else demo)",
    )
    parser.add_argument("--train-steps", type=int, default=4, help="optimizer steps")
    parser.add_argument(
        "--pretrain-steps", type=int, default=30, help="the demo model's pre-training steps"
    )
    parser.add_argument("--keep", type=Path, help="use and keep this data dir instead")
    args = parser.parse_args(argv)
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"{args.keep} is not empty: the demo needs a fresh data dir.")

    with tempfile.TemporaryDirectory(prefix="twin-demo-") as scratch:
        data_dir = args.keep or Path(scratch) / "data"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TWIN_")},
            "TWIN_DATA_DIR": str(data_dir),
            "TWIN_AUTO_BASE_MODEL": args.base_model,
            "HF_HUB_OFFLINE": "1",
        }
        plan = stages(
            base_model=args.base_model,
            train_steps=args.train_steps,
            pretrain_steps=args.pretrain_steps,
        )
        times = [(stage.name, run(stage, env=env)) for stage in plan]
    print(f"\n== demo done with the {args.base_model} base model (data dir {data_dir})")
    width = max(len(name) for name, _ in times)
    for name, seconds in times:
        print(f"  {name:<{width}}  {seconds:7.1f} s")
    print(f"  {'total':<{width}}  {sum(s for _, s in times):7.1f} s")


if __name__ == "__main__":
    main()
