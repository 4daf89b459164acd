"""The reply sampling defaults: the terminal chat, the web chat, the API and the exported
model's generation config all start from these.

A module of their own, without torch, so that ``twin --help`` can show them without loading a
model's libraries.
"""

from __future__ import annotations

from pydantic import BaseModel

from twin.errors import ChatError

DEFAULT_TEMPERATURE = 1.0
"""1.0 draws from what the model learned of me; lower sharpens it towards my most common reply,
so a twin writes shorter and plainer than I do: on the persona export a classifier told the
twin's replies from mine 66% of the time at 0.8 and 60% at 1.0, with my ")" and lengths closer
(`bench/bench_sweep.py`, bench/README.md)."""
DEFAULT_TOP_K: int | None = 50
DEFAULT_TOP_P = 0.9
DEFAULT_MAX_NEW_TOKENS = 128


class Sampling(BaseModel):
    """How a reply's tokens are drawn: top-k, then temperature, then top-p (litgpt's order)."""

    temperature: float = DEFAULT_TEMPERATURE
    """0 always picks the most likely token."""
    top_k: int | None = DEFAULT_TOP_K
    """Sample among the k most likely tokens (None: no limit)."""
    top_p: float = DEFAULT_TOP_P
    """Sample among the most likely tokens covering this probability (1: all)."""

    def check(self) -> None:
        """Raise `ChatError` naming the first setting out of range."""
        if self.temperature < 0:
            raise ChatError(
                f"temperature must be ≥ 0, got {self.temperature}.",
                hint=f"Try {DEFAULT_TEMPERATURE}.",
            )
        if not 0.0 < self.top_p <= 1.0:
            raise ChatError(
                f"top_p must be in (0, 1], got {self.top_p}.", hint=f"Try {DEFAULT_TOP_P}."
            )
        if self.top_k is not None and self.top_k < 1:
            raise ChatError(
                f"top_k must be ≥ 1, got {self.top_k}.", hint="Try 50, or leave it out."
            )
