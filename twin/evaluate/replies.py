"""The twin's reply to a held-out sample, as the fidelity report and the game both draw it.

Light (no torch): the game imports it in the web app.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from twin.chat.defaults import Sampling
from twin.prepare.format import Turn, record_speakers


class Replier(Protocol):
    """What replies: `twin.chat.generate.Twin` or the remote backend."""

    def stream_reply(
        self, *, context: Sequence[Turn] | str, me: str, peer: str, temperature: float,
        top_k: int | None, top_p: float, max_new_tokens: int, seed: int | None,
    ) -> Iterator[str]: ...  # fmt: skip


def reply_to_sample(
    twin: Replier,
    sample: Mapping[str, Any],
    *,
    sampling: Sampling,
    max_new_tokens: int,
    seed: int | None,
) -> str:
    """The twin's whole reply, blanks around it stripped, to a dataset sample's context
    (``input``), written as the sample's ``me`` to its ``peer``."""
    me, peer = record_speakers(sample)
    pieces = twin.stream_reply(
        context=sample["input"],
        me=me,
        peer=peer,
        temperature=sampling.temperature,
        top_k=sampling.top_k,
        top_p=sampling.top_p,
        max_new_tokens=max_new_tokens,
        seed=seed,
    )
    return "".join(pieces).strip()
