"""The fidelity report: does the twin write more like me than the base model does?

All on the run's validation split (conversations held out of training):

- the perplexity of my real replies under the base model and under the twin (only reply tokens
  are scored, the prompt masked out exactly as in training, `twin.train.data.load_split`);
- the twin's and the base model's replies to the same held-out contexts (a seeded pick, seeded
  replies, the chat's default sampling settings), and from them the style figures
  (`twin.evaluate.style`) and the discriminator test (`twin.evaluate.discriminator`): can a
  classifier tell my real replies from the twin's? from the base model's?
- a few of those replies side by side, for a person to judge by eye, and the score of the
  "Which one is me?" game when the caller passes it (people's judgement).

The report is stored with the run (``run.json`` → ``fidelity``) and printed by ``twin eval``.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch

from twin.chat.defaults import DEFAULT_MAX_NEW_TOKENS, Sampling
from twin.chat.generate import Twin
from twin.chat.load import load_twin
from twin.compute import compute_slot
from twin.config import Settings
from twin.errors import ChatError, TrainError
from twin.evaluate.discriminator import MIN_PER_CLASS, discriminate
from twin.evaluate.replies import reply_to_sample
from twin.evaluate.report import (
    Discrimination,
    FidelityReport,
    HumanFigure,
    SideBySide,
)
from twin.evaluate.style import StyleComparison, compare_styles, typical_words_of
from twin.files import write_private
from twin.prepare.files import TRAIN_FILE, VAL_FILE, dataset_sha256
from twin.runs import load_run, save_run
from twin.train.data import IGNORE_INDEX, TokenizedSample, collate, load_split, read_records

SCORE_BATCH_SIZE = 8
REPLIES_FILE = "fidelity-replies.json"
"""Every reply the last report judged (context, mine, the twin's, the base model's), kept in
the run dir so that the figures can be computed again without generating (`rejudge_run`)."""


@torch.inference_mode()
def reply_nll(twin: Twin, samples: list[TokenizedSample]) -> tuple[float, int]:
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


def generate_replies(
    twin: Twin,
    records: list[dict[str, str]],
    *,
    seed: int,
    sampling: Sampling,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    on_reply: Callable[[int], None] | None = None,
) -> list[str]:
    """The model's reply to each record's context.

    Args:
        twin: the model that replies.
        records: samples in litgpt's JSON shape (``instruction``, ``input``, ``output``).
        seed: the i-th reply is seeded with ``seed + i``.
        sampling: how tokens are drawn (the chat's defaults, to judge the twin people meet).
        max_new_tokens: the longest reply, in tokens.
        on_reply: called with the number of replies written so far, after each.
    """
    replies = []
    for number, record in enumerate(records):
        reply = reply_to_sample(
            twin,
            record,
            sampling=sampling,
            max_new_tokens=max_new_tokens,
            seed=seed + number,
        )
        replies.append(reply)
        if on_reply is not None:
            on_reply(len(replies))
    return replies


def judge_replies(
    *,
    contexts: list[str],
    me: list[str],
    twin: list[str],
    base: list[str],
    seed: int,
    typical: list[str] | None = None,
) -> tuple[StyleComparison, Discrimination | None, Discrimination | None]:
    """Style figures and the two discriminator tests (twin vs me, base vs me).

    Args:
        contexts: the held-out conversations.
        me: my real reply to each.
        twin: the twin's reply to each.
        base: the base model's reply to each.
        seed: fixes the cross-validation folds and the bootstrap.
        typical: my typical words (see `compare_styles`).
    """
    style = compare_styles(
        contexts=contexts, me=me, twin=twin, base=base, typical=typical, seed=seed
    )
    if len(me) < MIN_PER_CLASS:
        return style, None, None
    return style, discriminate(me, twin, seed=seed), discriminate(me, base, seed=seed)


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
    replies: int = 64,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    sampling: Sampling | None = None,
    seed: int = 0,
    human: HumanFigure | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> FidelityReport:
    """Score a finished run against its base model on the validation split; store the report.

    The two models are loaded one after the other, so memory holds one at a time.

    Args:
        settings: twin's settings (the data dir's compute slot: a training or another report
            running there is waited for; the run dir names the base model and the dataset).
        run_dir: the run's directory (see `twin.runs.resolve_run_dir`).
        samples: side-by-side samples to include (0: none; at most ``replies``).
        max_samples: validation samples to score at most (the first ones, in file order).
        replies: held-out contexts to generate replies to (a seeded pick) for the style
            figures and the discriminator test; the discriminator needs at least
            `MIN_PER_CLASS`.
        max_new_tokens: the longest generated reply, in tokens (the chat's default).
        sampling: how the replies' tokens are drawn; default: the chat's.
        seed: picks the contexts and seeds the replies, the folds and the bootstrap.
        human: the "Which one is me?" score to store with the report.
        progress: called as ``(done, total, stage)`` while it works; ``done`` counts replies
            written and perplexities scored (one per model); while it waits for the compute
            slot, ``(0, total, "waiting for … to finish")``. It may raise to stop the work.
    """
    started = time.perf_counter()
    sampling = sampling or Sampling()
    sampling.check()  # before minutes of scoring, not after
    record = load_run(run_dir)
    val_path = record.dataset_dir / VAL_FILE
    if not val_path.is_file():
        raise ChatError(
            f"The run's dataset has no validation split ({val_path} is missing).",
            hint="Rebuild the dataset with `twin prepare` (keep --val-fraction above 0).",
        )
    if max_samples < 1 or not 0 <= samples <= replies:
        raise ChatError(
            f"max_samples must be ≥ 1 and 0 ≤ samples ≤ replies "
            f"(got {max_samples}, {samples}, {replies}).",
            hint="Try --max-samples 200 --samples 3 --replies 64.",
        )
    try:
        records = read_records(val_path)
    except TrainError as exc:
        raise ChatError(exc.message, hint=exc.hint) from exc
    records = [r for r in records if r.get("output", "").strip()]
    picked = random.Random(seed).sample(records, min(replies, len(records)))
    dataset_changed = dataset_sha256(record.dataset_dir) != record.dataset_sha256

    figures: dict[str, tuple[float, int, int]] = {}
    generated: dict[str, list[str]] = {}
    total = 2 * (1 + len(picked))

    def report(done: int, stage: str) -> None:
        if progress is not None:
            progress(done, total, stage)

    def wait_for(holder: str) -> None:
        report(0, f"waiting for {holder} to finish")

    slot = f"the fidelity report of run {record.run_id}"
    with compute_slot(settings, what=slot, waiting=wait_for):
        for number, which in enumerate(("base", "twin")):
            name = "the base model" if which == "base" else "the twin"
            first = number * (1 + len(picked))
            report(first, f"{name}: perplexity of your replies")
            model = (
                load_twin(base_model_dir=record.base_model_dir)
                if which == "base"
                else load_twin(run_dir=run_dir)
            )
            figures[which] = _score(
                model, val_path, max_seq_length=record.max_seq_length, max_samples=max_samples
            )
            report(first + 1, f"{name}: replies to held-out chats")
            generated[which] = generate_replies(
                model,
                picked,
                seed=seed,
                sampling=sampling,
                max_new_tokens=max_new_tokens,
                on_reply=lambda n, first=first, name=name: report(
                    first + 1 + n, f"{name}: replies to held-out chats"
                ),
            )
            del model  # free it before loading the other one

    real = [r["output"].strip() for r in picked]
    replies_judged = [
        SideBySide(context=r["input"], real=m, twin=t, base=b)
        for r, m, t, b in zip(picked, real, generated["twin"], generated["base"], strict=True)
    ]
    typical = _typical_words(record.dataset_dir)
    style, twin_vs_me, base_vs_me = judge_replies(
        contexts=[r["input"] for r in picked],
        me=real,
        twin=generated["twin"],
        base=generated["base"],
        seed=seed,
        typical=typical,
    )
    base_ppl, scored, tokens = figures["base"]
    report = FidelityReport(
        run_id=record.run_id,
        val_samples=scored,
        scored_tokens=tokens,
        base_perplexity=base_ppl,
        twin_perplexity=figures["twin"][0],
        samples=replies_judged[:samples],
        seed=seed,
        sampling=sampling,
        dataset_changed=dataset_changed,
        seconds=round(time.perf_counter() - started, 3),
        replies=len(picked),
        style=style,
        twin_vs_me=twin_vs_me,
        base_vs_me=base_vs_me,
        human=human,
    )
    write_private(
        run_dir / REPLIES_FILE,
        json.dumps([r.model_dump() for r in replies_judged], ensure_ascii=False, indent=1),
    )
    _store(run_dir, report)
    return report


def _store(run_dir: Path, report: FidelityReport) -> None:
    # Re-read the record: it may have changed (e.g. merged weights added) while we scored.
    record = load_run(run_dir)
    record.fidelity = report.model_dump(mode="json")
    save_run(run_dir, record)


def _typical_words(dataset_dir: Path) -> list[str] | None:
    """My typical words, from the training split (None: no training split to read)."""
    try:
        records = read_records(dataset_dir / TRAIN_FILE)
    except TrainError:
        return None
    return typical_words_of(records) if records else None


def rejudge_run(run_dir: Path) -> FidelityReport:
    """The run's stored report with its figures computed again from the replies it judged
    (`REPLIES_FILE`): the same replies, today's figures; the perplexities are kept.

    Args:
        run_dir: a run whose fidelity report was computed.
    """
    record = load_run(run_dir)
    path = run_dir / REPLIES_FILE
    if record.fidelity is None or not path.is_file():
        raise ChatError(
            f"Run {record.run_id} has no stored fidelity replies ({path} is missing).",
            hint=f"Compute the report first: twin eval {record.run_id}",
        )
    report = FidelityReport.model_validate(record.fidelity)
    judged = [SideBySide.model_validate(r) for r in json.loads(path.read_text("utf-8"))]
    style, twin_vs_me, base_vs_me = judge_replies(
        contexts=[r.context for r in judged],
        me=[r.real for r in judged],
        twin=[r.twin for r in judged],
        base=[r.base for r in judged],
        seed=report.seed,
        typical=_typical_words(record.dataset_dir),
    )
    report = report.model_copy(
        update={"style": style, "twin_vs_me": twin_vs_me, "base_vs_me": base_vs_me}
    )
    _store(run_dir, report)
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
    lines += _style_lines(report) + _discriminator_lines(report)
    if report.human is not None:
        rate = report.human.fooled_rate
        lines += [
            "",
            f'"Which one is me?" (people): {report.human.rounds} rounds, twin taken for me in '
            f"{report.human.fooled}"
            + (f" ({rate:.0%}; 50% = indistinguishable)" if rate is not None else ""),
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


def _number(value: float | None, spec: str = ".2f") -> str:
    return "–" if value is None else format(value, spec)


def _interval(low: float | None, high: float | None) -> str:
    return f" ({low:.2f}–{high:.2f})" if low is not None and high is not None else ""


def _style_lines(report: FidelityReport) -> list[str]:
    if report.style is None:
        return []
    drawn = ""
    if report.sampling is not None:
        top_k = report.sampling.top_k or "all"
        drawn = (
            f"; drawn at temperature {report.sampling.temperature:g}, top-k {top_k}, "
            f"top-p {report.sampling.top_p:g}"
        )
    lines = [
        "",
        f"Style of the replies to {report.replies} held-out contexts{drawn} (ratio 1.00 = like me)",
        f"  {'':36} {'me':>8} {'twin':>8} {'base':>8} {'base/me':>8} {'twin/me':>8} (95%)",
    ]
    for row in report.style.rows:
        values = (row.me, row.twin, row.base, row.base_ratio, row.twin_ratio)
        lines.append(
            f"  {row.figure:36} "
            + " ".join(f"{_number(v):>8}" for v in values)
            + _interval(row.twin_ratio_low, row.twin_ratio_high)
        )
    if report.style.typical_words:
        lines.append("  my typical words: " + ", ".join(report.style.typical_words))
    return lines


def _discriminator_lines(report: FidelityReport) -> list[str]:
    lines = ["", "Discriminator (can a classifier tell my replies? 0.50 = it cannot)"]
    for label, result in (("twin vs me", report.twin_vs_me), ("base vs me", report.base_vs_me)):
        if result is None:
            lines.append(f"  {label}: not enough held-out replies (need {MIN_PER_CLASS})")
            continue
        lines.append(
            f"  {label}: accuracy {result.accuracy:.2f} "
            f"[{result.accuracy_low:.2f}–{result.accuracy_high:.2f}], "
            f"AUC {result.auc:.2f} [{result.auc_low:.2f}–{result.auc_high:.2f}] "
            f"({result.per_class} replies each, 95% intervals)"
        )
    return lines


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())
