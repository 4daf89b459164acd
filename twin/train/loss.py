"""The training loss: next-token cross-entropy over my reply tokens only."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from litgpt.model import do_softcapping

from twin.train.data import IGNORE_INDEX

# Reply positions per head chunk: (chunk, V) logits at a time; with Gemma's 262k vocabulary
# 1024 positions take 1 GB in float32.
HEAD_CHUNK_POSITIONS = 1024


@contextlib.contextmanager
def _head_removed(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The model returns its final hidden states instead of logits; yields the head.

    litgpt's forward softcaps what its head returns (Gemma 2): with the head removed that would
    cap the hidden states, so the cap is lifted too and applied after the head by the caller.
    """
    inner: Any = getattr(model, "module", model)  # under a Fabric wrapper
    head, softcap = inner.lm_head, inner.config.final_logit_softcapping
    inner.lm_head = torch.nn.Identity()
    inner.config.final_logit_softcapping = None
    try:
        yield head
    finally:
        inner.lm_head = head
        inner.config.final_logit_softcapping = softcap


def reply_loss(
    model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Mean next-token cross-entropy over the reply tokens (labels ``-100`` elsewhere).

    The LM head is applied only at the positions whose next label counts, in chunks: the full
    (B, T, V) logits are never built. With a large vocabulary the head is most of the model's
    work (Gemma 3: 262k × 640, ~60% of the parameters) and replies are a fraction of the tokens,
    so this is where CPU training spends less. Equal to the cross-entropy of the full logits
    (tests/test_train.py checks loss and gradients).

    Args:
        model: a litgpt `GPT` (possibly wrapped by Fabric).
        input_ids: (B, T) token ids.
        labels: (B, T) targets, ``-100`` where nothing is learned.
    """
    inner: Any = getattr(model, "module", model)
    if type(inner).__name__ == "FullyShardedDataParallel":
        # Sharded over GPUs, the head's weight exists whole only inside the model's forward.
        logits = model(input_ids)  # (B, T, V)
        return torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)).float(),
            labels[:, 1:].reshape(-1),
            ignore_index=IGNORE_INDEX,
        )
    softcap = inner.config.final_logit_softcapping
    with _head_removed(model) as head:
        hidden = model(input_ids)  # (B, T, C): ln_f's output, the head's input
    targets = labels[:, 1:]  # (B, T-1): position t predicts label t+1
    counted = targets != IGNORE_INDEX
    picked, wanted = hidden[:, :-1][counted], targets[counted]  # (N, C), (N,)
    head_dtype = next(head.parameters()).dtype  # mixed precision: hidden may be bf16
    total = hidden.new_zeros(())
    for start in range(0, picked.size(0), HEAD_CHUNK_POSITIONS):
        chunk = picked[start : start + HEAD_CHUNK_POSITIONS].to(head_dtype)
        logits = head(chunk)  # (n, V)
        if softcap is not None:
            logits = do_softcapping(logits, thresh=softcap)
        chunk_targets = wanted[start : start + HEAD_CHUNK_POSITIONS]
        total = total + torch.nn.functional.cross_entropy(
            logits.float(), chunk_targets, reduction="sum"
        )
    if not picked.size(0):
        return hidden.sum() * 0.0  # nothing counts here: a zero that still backpropagates
    return total / picked.size(0)
