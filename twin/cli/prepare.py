"""``twin prepare``: build the training dataset from the included chats."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from twin.config import get_settings
from twin.errors import PrepareError
from twin.prepare.dataset import PrepareStats, default_tokenizer_dir, prepare_dataset
from twin.prepare.scrub import ScrubConfig


def _parse_when(value: str | None, option: str) -> date | datetime | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
    except ValueError:
        raise PrepareError(
            f"{option} {value!r} is not a date.",
            hint="Use YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC unless an offset is given).",
        ) from None


def _read_blocklist(path: Path | None) -> list[str]:
    if path is None:
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PrepareError(
            f"Could not read the blocklist {path}: {exc}",
            hint="Pass a UTF-8 text file with one string per line.",
        ) from exc
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def prepare(
    out: Path | None = typer.Option(None, "--out", help="Dataset dir (default: DATA_DIR/dataset)."),
    tokenizer: Path | None = typer.Option(
        None,
        "--tokenizer",
        "--base",
        help="litgpt checkpoint dir (the base model) whose tokenizer measures lengths "
        "(default: the base model's if it has one, else a character budget).",
    ),
    max_seq_length: int = typer.Option(512, help="Most tokens per prompt + reply."),
    gap_hours: float = typer.Option(24.0, help="A silence this long starts a new conversation."),
    min_messages: int = typer.Option(10, help="Skip chats with fewer messages."),
    since: str | None = typer.Option(None, help="Only messages from this date (UTC)."),
    until: str | None = typer.Option(None, help="Only messages up to this date (inclusive)."),
    val_fraction: float = typer.Option(
        0.1, help="Share of samples held out for validation (whole conversations)."
    ),
    seed: int = typer.Option(42, help="Seed of the train/validation split."),
    blocklist: Path | None = typer.Option(
        None, help="File of strings to redact, one per line (e.g. names, addresses)."
    ),
) -> None:
    """Turn the included chats into a scrubbed instruction dataset (train/val/stats JSON)."""
    settings = get_settings()
    if tokenizer is None:
        tokenizer = default_tokenizer_dir(settings)
    console = Console(stderr=True)
    with Progress(
        TextColumn("chats"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("prepare", total=None)
        stats = prepare_dataset(
            settings=settings,
            out_dir=out or settings.dataset_dir,
            tokenizer_dir=tokenizer,
            max_seq_length=max_seq_length,
            gap_seconds=max(1, round(gap_hours * 3600)),
            min_messages=min_messages,
            since=_parse_when(since, "--since"),
            until=_parse_when(until, "--until"),
            val_fraction=val_fraction,
            seed=seed,
            scrub_config=ScrubConfig(
                regions=list(settings.phone_regions), blocklist=_read_blocklist(blocklist)
            ),
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    typer.echo(summary(stats))


def summary(stats: PrepareStats) -> str:
    """The few lines printed after a run.

    Args:
        stats: what `prepare_dataset` returned.
    """
    if stats.tokenizer is not None:
        measured = f"tokens of {stats.tokenizer.dir}"
    else:
        measured = f"characters ({stats.chars_per_token} per token assumed; no tokenizer found)"
    skipped = ", ".join(f"{n} {reason}" for reason, n in stats.dialogs_skipped.items()) or "none"
    outputs = ", ".join(f"{n} {reason}" for reason, n in stats.skipped_outputs.items()) or "none"
    scrubbed = ", ".join(f"{n} {kind}" for kind, n in stats.scrub_totals.items()) or "nothing"
    lines = [
        f"dataset written to {stats.out_dir}",
        f"  samples: {stats.samples_train} train, {stats.samples_val} val "
        f"({stats.sessions_train} + {stats.sessions_val} conversations); "
        f"duplicates removed: {stats.duplicates_removed}",
        f"  chats: {stats.dialogs_used} used; skipped: {skipped}",
        f"  messages read: {stats.messages}; replies skipped: {outputs}; "
        f"trimmed context: {stats.trimmed}",
        f"  lengths measured in {measured}, limit {stats.max_seq_length} tokens",
    ]
    if stats.lengths is not None:
        lines.append(
            f"  length ({stats.length_unit}): mean {stats.lengths.mean:g}, "
            f"p95 {stats.lengths.p95}, max {stats.lengths.max}"
        )
    lines.append(f"  scrubbed: {scrubbed}")
    lines.extend(f"  warning: {w}" for w in stats.warnings)
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    app.command("prepare")(prepare)
