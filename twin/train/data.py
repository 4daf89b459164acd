"""Reading a prepared dataset for training: checks, hashing, tokenization with prompt masking.

The files (`twin.prepare.files`) are litgpt's JSON format (lists of ``instruction``, ``input``,
``output``) plus the stats ``twin prepare`` wrote. Samples are tokenized with
litgpt's own `SFTDataset` (prompt built with `render_prompt`, EOS after the reply, labels
``-100`` over the prompt so only my replies are learned), once, up front: the lengths are needed
to group batches by length, and the tiny datasets of chat replies fit in memory easily.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from litgpt.data import SFTDataset
from litgpt.prompts import PromptStyle
from litgpt.tokenizer import Tokenizer

from twin.errors import TrainError
from twin.prepare.files import (
    REBUILD_HINT,
    PrepareStats,
    dataset_mismatch,
    has_dataset,
    read_stats,
)
from twin.prepare.format import render_prompt

IGNORE_INDEX = -100


class TwinPromptStyle(PromptStyle):
    """litgpt's prompt-style interface over `render_prompt`, so training builds each prompt
    with the very function the chat uses."""

    def apply(self, prompt: str, *, sys_prompt: str | None = None, **kwargs: str) -> str:
        return render_prompt(instruction=prompt, input=kwargs.get("input", ""))


TokenizedSample = dict[str, torch.Tensor]
"""``input_ids`` and ``labels``, both (T,) int64."""


def read_records(path: Path) -> list[dict[str, str]]:
    """The records of one JSON dataset file, checked for litgpt's shape.

    Args:
        path: ``train.json`` or ``val.json``.
    """
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrainError(f"Cannot read {path}: {exc}", hint=REBUILD_HINT) from exc
    if not isinstance(records, list):
        raise TrainError(f"{path} is not a JSON list of samples.", hint=REBUILD_HINT)
    for number, record in enumerate(records):
        if not isinstance(record, dict) or not isinstance(record.get("output"), str):
            raise TrainError(f"Sample {number} of {path} has no text `output`.", hint=REBUILD_HINT)
        record.setdefault("instruction", "")
        record.setdefault("input", "")
    return records


def reprepare_command(
    *, base_model_dir: Path, dataset_dir: Path, stats: PrepareStats | None
) -> str:
    """The ``twin prepare`` command that rebuilds a dataset measured in this model's tokens.

    Args:
        base_model_dir: the checkpoint dir training will use.
        dataset_dir: the dataset's directory (passed as ``--out``).
        stats: the dataset's stats (its token budget is kept).
    """
    command = f"twin prepare --base {base_model_dir} --out {dataset_dir}"
    if stats is not None:
        command += f" --max-seq-length {stats.max_seq_length}"
    return command


def dataset_is_current(*, dataset_dir: Path, base_model_dir: Path) -> bool:
    """True when the dataset exists and was measured in the tokens of ``base_model_dir``
    (what a pipeline checks before training, re-preparing otherwise).

    Args:
        base_model_dir: the checkpoint dir training will use.
    """
    if not has_dataset(dataset_dir):
        return False
    return dataset_mismatch(read_stats(dataset_dir), base_model_dir) is None


def check_tokenizer(stats: PrepareStats | None, base_model_dir: Path, *, dataset_dir: Path) -> None:
    """Refuse a dataset whose lengths were not measured with the base model's tokenizer.

    Args:
        stats: the dataset's stats (None when it has none).
        base_model_dir: the checkpoint dir training will use.
        dataset_dir: the dataset's directory (for the command that rebuilds it).
    """
    reason = dataset_mismatch(stats, base_model_dir)
    if reason is not None:
        command = reprepare_command(
            base_model_dir=base_model_dir, dataset_dir=dataset_dir, stats=stats
        )
        raise TrainError(
            f"The dataset in {dataset_dir} does not fit the base model {base_model_dir}: "
            f"{reason}, so training would cut or drop replies.",
            hint=f"Rebuild it for this model: `{command}`, or train with the model it was "
            "built for (--base).",
        )


def load_split(
    path: Path, *, tokenizer: Tokenizer, max_seq_length: int
) -> tuple[list[TokenizedSample], int]:
    """Tokenize one split; leave out samples longer than ``max_seq_length`` (prompt, reply and
    EOS), so that no reply is ever learned cut off. The caller reports how many.

    Args:
        path: ``train.json`` or ``val.json``.
        tokenizer: the base model's tokenizer.
        max_seq_length: the most tokens a sample may take.

    Returns:
        The samples and how many were left out.
    """
    records = read_records(path)
    dataset = SFTDataset(
        data=records,
        tokenizer=tokenizer,
        prompt_style=TwinPromptStyle(),
        max_seq_length=-1,  # measure whole; too long is left out below, never cut
        mask_prompt=True,
        ignore_index=IGNORE_INDEX,
    )
    samples: list[TokenizedSample] = []
    for index in range(len(dataset)):
        item = dataset[index]
        input_ids, labels = item["input_ids"], item["labels"]
        assert isinstance(input_ids, torch.Tensor) and isinstance(labels, torch.Tensor)
        # labels[t] is predicted from position t-1: the first position teaches nothing.
        if len(input_ids) <= max_seq_length and bool((labels[1:] != IGNORE_INDEX).any()):
            samples.append({"input_ids": input_ids, "labels": labels})
    return samples, len(records) - len(samples)


def collate(
    samples: list[TokenizedSample], *, pad_id: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad a micro-batch to its longest sample.

    Args:
        samples: from `load_split`.
        pad_id: token id for padding inputs (labels are padded with ``-100``).

    Returns:
        ``input_ids`` and ``labels``, both (B, T).
    """
    pad = torch.nn.utils.rnn.pad_sequence
    input_ids = pad([s["input_ids"] for s in samples], batch_first=True, padding_value=pad_id)
    labels = pad([s["labels"] for s in samples], batch_first=True, padding_value=IGNORE_INDEX)
    return input_ids, labels
