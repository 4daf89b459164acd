"""The prompt's pass through the model (prefill), computing only the logits that are used."""

from __future__ import annotations

import torch
from litgpt.model import GPT


class _LastPositionHead(torch.nn.Module):
    """The LM head applied to the last position only: (B, T, C) → (B, 1, V)."""

    def __init__(self, head: torch.nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden[:, -1:])


def last_position_logits(
    model: GPT, tokens: torch.Tensor, input_pos: torch.Tensor, prompt_length: int
) -> torch.Tensor:
    """The prefill's logits at the prompt's last position only, (1, 1, V).

    litgpt's forward applies the head at every position; only the last one picks the first
    token. With Gemma 3's 262k vocabulary the head is ~60% of the model's work per position, so
    on a 100-token prompt most of the prefill (the wait for the first piece) went to logits that
    were thrown away. The model's own softcapping still applies, after this head.
    """
    head = model.lm_head
    model.lm_head = _LastPositionHead(head)
    try:
        return model(tokens, input_pos, input_pos_maxp1=prompt_length)
    finally:
        model.lm_head = head
