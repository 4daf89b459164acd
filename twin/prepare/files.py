"""The dataset directory: its file names, its stats written and read back typed, its hash.

Every stage that looks at a dataset (training, the pipeline, the web pages) goes through here,
so a file name or a stats field has one definition::

    train.json   [{"input": …, "instruction": …, "output": …}, …]   litgpt's JSON format
    val.json     the same, for whole sessions held out (possibly ``[]`` with a single session)
    stats.json   `PrepareStats`: counts, lengths, the scrub report (counts only), the tokenizer
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from twin.errors import PrepareError

TRAIN_FILE = "train.json"
VAL_FILE = "val.json"
STATS_FILE = "stats.json"
DATASET_FILES = (TRAIN_FILE, VAL_FILE, STATS_FILE)
REBUILD_HINT = "Run `twin prepare` to (re)build the dataset."


class TokenizerInfo(BaseModel):
    """Which tokenizer measured the lengths; the trainer refuses a dataset built for another."""

    dir: str
    sha256: str


class LengthStats(BaseModel):
    """Sample lengths (prompt + output + EOS) in the budget's unit."""

    mean: float
    p95: int
    max: int


class DialogStats(BaseModel):
    """What became of one dialog."""

    id: int
    status: str
    """``used``, ``excluded``, ``too_few_messages`` or ``no_samples``."""
    messages: int
    samples: int = 0


class PrepareStats(BaseModel):
    """The content of ``stats.json`` (plus timings and the output dir, not written)."""

    tokenizer: TokenizerInfo | None
    """None when lengths were measured in characters."""
    max_seq_length: int
    length_unit: str
    chars_per_token: int | None
    gap_seconds: int
    min_messages: int
    since: datetime | None
    until: datetime | None
    """Exclusive bound: a date given as ``until`` is moved to the next midnight, a time to the
    next second (``until`` itself is inclusive)."""
    val_fraction: float
    seed: int
    dialogs_used: int = 0
    dialogs_skipped: dict[str, int] = Field(default_factory=dict)
    dialogs: list[DialogStats] = Field(default_factory=list)
    messages: int = 0
    sessions: int = 0
    sessions_train: int = 0
    sessions_val: int = 0
    samples_train: int = 0
    samples_val: int = 0
    trimmed: int = 0
    """Samples whose input left out the oldest turns of their session."""
    duplicates_removed: int = 0
    """Samples left out because one with the same context and reply was already kept."""
    skipped_outputs: dict[str, int] = Field(default_factory=dict)
    lengths: LengthStats | None = None
    scrub: dict[str, dict[str, int]] = Field(default_factory=dict)
    """Dialog id → placeholder type → messages with it."""
    scrub_totals: dict[str, int] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict, exclude=True)
    """Seconds spent reading, in the rules, scrubbing and writing (varies run to run)."""
    out_dir: Path | None = Field(default=None, exclude=True)


def has_dataset(dataset_dir: Path) -> bool:
    """Whether a dataset was built (or placed) in ``dataset_dir``: its train split exists."""
    return (dataset_dir / TRAIN_FILE).is_file()


def read_stats(dataset_dir: Path) -> PrepareStats | None:
    """The stats of the dataset in ``dataset_dir``; None when it has none (not built yet, or
    a hand-made litgpt dataset, to which no length budget was applied).

    Raises:
        PrepareError: when ``stats.json`` exists but cannot be read as `PrepareStats` (cut
            short, edited, or written by another version): rebuilding it is the fix.
    """
    path = dataset_dir / STATS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PrepareError(
            f"Cannot read {path}: {exc.strerror or exc}.", hint=REBUILD_HINT
        ) from exc
    try:
        stats = PrepareStats.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the top"
        raise PrepareError(
            f"{path} is not the stats of a twin dataset ({where}: {first['msg']}).",
            hint=REBUILD_HINT,
        ) from exc
    stats.out_dir = dataset_dir
    return stats


def dataset_sha256(dataset_dir: Path) -> str:
    """One hash over the dataset files that exist (names and bytes): a run is pinned to the
    data it trained on, and a pipeline can tell a dataset rebuilt behind its back."""
    digest = hashlib.sha256()
    for name in DATASET_FILES:
        path = dataset_dir / name
        if path.is_file():
            digest.update(name.encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def tokenizer_fingerprint(checkpoint_dir: Path) -> str:
    """The sha256 of the tokenizer file litgpt would load from ``checkpoint_dir``: a dataset
    records it, and training refuses a dataset measured by another tokenizer.

    Args:
        checkpoint_dir: a litgpt checkpoint (or tokenizer) directory.
    """
    from twin.basemodel.checkpoint import TOKENIZER_FILES  # twin.basemodel loads slowly

    for name in TOKENIZER_FILES:
        path = checkpoint_dir / name
        if path.is_file():
            digest = hashlib.sha256()
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            return digest.hexdigest()
    raise PrepareError(
        f"{checkpoint_dir} has no tokenizer.json or tokenizer.model.",
        hint="Point --tokenizer at a litgpt checkpoint dir, or leave it out to use a "
        "character budget.",
    )


def dataset_mismatch(stats: PrepareStats | None, base_model_dir: Path) -> str | None:
    """Why a dataset's lengths were not measured in the tokens of ``base_model_dir``, or None
    when they were (or when the dataset was not built by ``twin prepare``: nothing was cut).

    A dataset measured in characters or by another tokenizer has samples that the model's
    tokenizer finds longer than the budget: training would cut their replies or drop them.

    Args:
        stats: the dataset's stats (None when it has none).
        base_model_dir: the checkpoint dir training will use.
    """
    if stats is None:
        return None  # a hand-made litgpt dataset: no budget was applied
    built_for = stats.tokenizer
    if built_for is None:
        return "its lengths were measured in characters, not in the model's tokens"
    if built_for.sha256 != tokenizer_fingerprint(base_model_dir):
        return f"it was built for the tokenizer of {built_for.dir}"
    return None
