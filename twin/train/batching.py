"""Which samples go into which micro-batch, in which order: pure, seeded, resumable.

Chat replies vary a lot in length; padding every micro-batch to its longest sample wastes most
of the compute on random batches. Length grouping (as in Hugging Face's ``group_by_length``)
shuffles the samples, cuts the permutation into mega-batches of ``mega_batch_factor`` micro-
batches, sorts each mega-batch by length and cuts it into micro-batches, then shuffles the
micro-batches. Batches stay random at the scale of an epoch, but their members have similar
lengths. The order of an epoch depends only on ``(seed, epoch)``, so a resumed run finds its
place from ``(epoch, batch index)`` alone.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

DEFAULT_MEGA_BATCH_FACTOR = 32


def epoch_batches(
    lengths: Sequence[int],
    *,
    micro_batch_size: int,
    seed: int,
    epoch: int,
    group_by_length: bool = True,
    mega_batch_factor: int = DEFAULT_MEGA_BATCH_FACTOR,
) -> list[list[int]]:
    """The micro-batches of one epoch, as lists of sample indices.

    Args:
        lengths: token count of every sample.
        micro_batch_size: samples per micro-batch (the last one may be smaller).
        seed: the run's seed.
        epoch: 0-based epoch number; each epoch gets its own order.
        group_by_length: sort within mega-batches to cut padding.
        mega_batch_factor: micro-batches per mega-batch (bigger: less padding, less randomness).
    """
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group_by_length:
        mega = micro_batch_size * mega_batch_factor
        order = [
            index
            for start in range(0, len(order), mega)
            for index in sorted(order[start : start + mega], key=lambda i: -lengths[i])
        ]
    batches = [
        order[start : start + micro_batch_size] for start in range(0, len(order), micro_batch_size)
    ]
    if group_by_length:
        rng.shuffle(batches)
    return batches


def padded_tokens(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> tuple[int, int]:
    """``(useful, total)`` token counts when every batch is padded to its longest member.

    Args:
        lengths: token count of every sample.
        batches: micro-batches of sample indices.
    """
    useful = sum(lengths[i] for batch in batches for i in batch)
    total = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches if batch)
    return useful, total


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Pad tokens / all tokens over ``batches`` (0 when nothing is padded).

    Args:
        lengths: token count of every sample.
        batches: micro-batches of sample indices.
    """
    useful, total = padded_tokens(lengths, batches)
    return 1.0 - useful / total if total else 0.0
