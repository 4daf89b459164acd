"""The fidelity report: does the twin write more like me than the base model does?

Two figures on the run's validation split (conversations held out of training): the perplexity
of my real replies under the base model and under the twin. Only reply tokens are scored, the
prompt masked out exactly as in training (`twin.train.data.load_split`). Lower is better; the
ratio says how much the fine-tuning helped. A few side-by-side samples (context, my real reply,
the twin's, the base model's; seeded) let a person judge the style by eye.

The report is stored with the run (``run.json`` → ``fidelity``) and printed by ``twin eval``.
"""

from __future__ import annotations

import math
import random
import re
import time
from pathlib import Path

import torch
from pydantic import BaseModel

from twin.chat.generate import Twin, load_twin
from twin.config import Settings
from twin.errors import ChatError, TrainError
from twin.prepare.format import render_instruction
from twin.train.data import IGNORE_INDEX, Sample, collate, dataset_sha256, load_split, read_records
from twin.train.record import load_run, save_run

SCORE_BATCH_SIZE = 8
# Side-by-side replies sample a little (as the chat does) but from a fixed seed.
SAMPLE_TEMPERATURE = 0.7
SAMPLE_TOP_K = 50
SAMPLE_MAX_NEW_TOKENS = 64


class SideBySide(BaseModel):
    """One held-out moment of a conversation and three replies to it."""

    context: str
    """The conversation so far, tagged (a sample's ``input``)."""
    real: str
    """What I actually wrote."""
    twin: str
    base: str


class FidelityReport(BaseModel):
    """How close the twin's replies are to mine, compared with the base model's."""

    run_id: str
    val_samples: int
    """Validation samples scored."""
    scored_tokens: int
    """Reply tokens scored (prompts are masked out)."""
    base_perplexity: float
    twin_perplexity: float
    samples: list[SideBySide]
    seed: int
    dataset_changed: bool
    """The dataset was rebuilt after training: the split may no longer be held out."""
    seconds: float

    @property
    def improvement(self) -> float:
        """Base perplexity divided by the twin's (above 1: the twin is closer to me)."""
        return self.base_perplexity / self.twin_perplexity


def names_from_instruction(instruction: str) -> tuple[str, str]:
    """``(me, peer)`` from a sample's instruction, as written by `render_instruction`.

    Args:
        instruction: a sample's ``instruction``.
    """
    # The pattern comes from the template itself, so the two cannot drift apart.
    template = re.escape(render_instruction(me="\0me\0", peer="\0peer\0"))
    pattern = template.replace("\0me\0", "(?P<me>.+?)", 1).replace("\0me\0", "(?P=me)")
    pattern = pattern.replace("\0peer\0", "(?P<peer>.+)")
    match = re.fullmatch(pattern, instruction)
    if match is None:
        raise ChatError(
            f"Cannot tell who speaks from the instruction {instruction!r}.",
            hint="The dataset was built by another version; rebuild it with `twin prepare`.",
        )
    return match["me"], match["peer"]


@torch.inference_mode()
def reply_nll(twin: Twin, samples: list[Sample]) -> tuple[float, int]:
    """Summed negative log-likelihood of the reply tokens, and how many there are.

    Args:
        twin: the model to score with.
        samples: tokenized samples with prompt-masked labels (from `load_split`).
    """
    # Similar lengths together: less padding to compute.
    ordered = sorted(samples, key=lambda s: len(s["input_ids"]))
    total, count = 0.0, 0
    for start in range(0, len(ordered), SCORE_BATCH_SIZE):
        input_ids, labels = collate(ordered[start : start + SCORE_BATCH_SIZE])
        logits = twin.model(input_ids)  # (B, T, V)
        targets = labels[:, 1:]  # position t predicts token t + 1
        total += torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)),
            targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        ).item()
        count += int((targets != IGNORE_INDEX).sum())
    return total, count


def _side_by_side_replies(twin: Twin, records: list[dict[str, str]], *, seed: int) -> list[str]:
    replies = []
    for number, record in enumerate(records):
        me, peer = names_from_instruction(record["instruction"])
        pieces = twin.stream_reply(
            context=record["input"],
            me=me,
            peer=peer,
            temperature=SAMPLE_TEMPERATURE,
            top_k=SAMPLE_TOP_K,
            max_new_tokens=SAMPLE_MAX_NEW_TOKENS,
            seed=seed + number,
        )
        replies.append("".join(pieces).strip())
    return replies


def _score(
    twin: Twin, val_path: Path, *, max_seq_length: int, max_samples: int
) -> tuple[float, int, int]:
    """(perplexity, scored samples, scored tokens) of the first ``max_samples`` val samples."""
    # Training's cut, unless the loaded model keeps a shorter context (see MAX_CONTEXT_TOKENS).
    max_seq_length = min(max_seq_length, twin.context_length)
    try:
        samples, _ = load_split(val_path, tokenizer=twin.tokenizer, max_seq_length=max_seq_length)
    except TrainError as exc:
        raise ChatError(exc.message, hint=exc.hint) from exc
    samples = samples[:max_samples]
    if not samples:
        raise ChatError(
            f"No validation sample in {val_path} has a reply that fits {max_seq_length} tokens.",
            hint="Rebuild the dataset with `twin prepare` (keep --val-fraction above 0).",
        )
    nll, tokens = reply_nll(twin, samples)
    return math.exp(nll / tokens), len(samples), tokens


def evaluate_run(
    *,
    settings: Settings,
    run_dir: Path,
    samples: int = 3,
    max_samples: int = 200,
    seed: int = 0,
) -> FidelityReport:
    """Score a finished run against its base model on the validation split; store the report.

    The two models are loaded one after the other, so memory holds one at a time.

    Args:
        settings: twin's settings (unused for now: the run dir names the base model and the
            dataset).
        run_dir: the run's directory (see `twin.chat.resolve_run_dir`).
        samples: side-by-side samples to include (0: none).
        max_samples: validation samples to score at most (the first ones, in file order).
        seed: picks the side-by-side samples and seeds their replies.
    """
    started = time.perf_counter()
    record = load_run(run_dir)
    val_path = record.dataset_dir / "val.json"
    if not val_path.is_file():
        raise ChatError(
            f"The run's dataset has no validation split ({val_path} is missing).",
            hint="Rebuild the dataset with `twin prepare` (keep --val-fraction above 0).",
        )
    if max_samples < 1 or samples < 0:
        raise ChatError(
            f"max_samples must be ≥ 1 and samples ≥ 0 (got {max_samples}, {samples}).",
            hint="Try --max-samples 200 --samples 3.",
        )
    try:
        records = read_records(val_path)
    except TrainError as exc:
        raise ChatError(exc.message, hint=exc.hint) from exc
    picked = random.Random(seed).sample(records, min(samples, len(records)))
    dataset_changed = dataset_sha256(record.dataset_dir) != record.dataset_sha256

    figures: dict[str, tuple[float, int, int]] = {}
    replies: dict[str, list[str]] = {}
    for which in ("base", "twin"):
        model = (
            load_twin(base_model_dir=record.base_model_dir)
            if which == "base"
            else load_twin(run_dir=run_dir)
        )
        figures[which] = _score(
            model, val_path, max_seq_length=record.max_seq_length, max_samples=max_samples
        )
        replies[which] = _side_by_side_replies(model, picked, seed=seed)
        del model  # free it before loading the other one

    base_ppl, scored, tokens = figures["base"]
    report = FidelityReport(
        run_id=record.run_id,
        val_samples=scored,
        scored_tokens=tokens,
        base_perplexity=base_ppl,
        twin_perplexity=figures["twin"][0],
        samples=[
            SideBySide(context=r["input"], real=r["output"], twin=t, base=b)
            for r, t, b in zip(picked, replies["twin"], replies["base"], strict=True)
        ],
        seed=seed,
        dataset_changed=dataset_changed,
        seconds=round(time.perf_counter() - started, 3),
    )
    # Re-read the record: it may have changed (e.g. merged weights added) while we scored.
    record = load_run(run_dir)
    record.fidelity = report.model_dump(mode="json")
    save_run(run_dir, record)
    return report


def format_report(report: FidelityReport) -> str:
    """The report as plain text for the terminal.

    Args:
        report: from `evaluate_run` (or ``FidelityReport.model_validate(record.fidelity)``).
    """
    lines = [
        f"Fidelity of run {report.run_id}: perplexity of my real replies "
        f"({report.val_samples} held-out samples, {report.scored_tokens} reply tokens; "
        "lower is closer to me)",
        f"  base model  {report.base_perplexity:10.2f}",
        f"  twin        {report.twin_perplexity:10.2f}   ({report.improvement:.2f}× better)"
        if report.improvement >= 1
        else f"  twin        {report.twin_perplexity:10.2f}   (worse than the base model)",
    ]
    if report.dataset_changed:
        lines.append(
            "  note: the dataset was rebuilt after training; held-out samples may have been "
            "trained on."
        )
    for number, sample in enumerate(report.samples, start=1):
        lines += ["", f"— sample {number} —", _indent(sample.context, "  │ ")]
        for label, text in (("real", sample.real), ("twin", sample.twin), ("base", sample.base)):
            lines.append(f"  {label}: " + (text or "(no reply)").replace("\n", "\n        "))
    return "\n".join(lines)


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())
