"""Token by token: picking the next token, and turning token ids into text as soon as it is
valid UTF-8."""

from __future__ import annotations

from collections.abc import Callable

import torch
from litgpt.generate.base import sample_top_p
from litgpt.tokenizer import Tokenizer
from tokenizers.decoders import DecodeStream


def sample_token(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_k: int | None,
    top_p: float,
    generator: torch.Generator | None,
) -> int:
    """Pick the next token id: top-k, then temperature, then top-p (litgpt's order).

    litgpt's `sample` draws from the global RNG; a reply streamed lazily interleaves with
    whatever else the process does between tokens, so a private generator keeps ``seed``
    reproducible.

    Args:
        logits: (V,) scores of the next token.
        temperature: 0 picks the most likely token.
        top_k: keep only the k most likely tokens (None: all).
        top_p: keep the smallest set of tokens whose probability reaches top_p.
        generator: the random source (None: torch's global one).
    """
    if top_k is not None:
        values, indices = torch.topk(logits, min(top_k, logits.size(-1)))
        logits = torch.full_like(logits, float("-inf")).scatter_(-1, indices, values)
    if temperature <= 0.0 or top_p <= 0.0:
        return int(torch.argmax(logits))
    logits = logits / temperature
    if top_p < 1.0:
        logits = sample_top_p(logits, top_p)
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, num_samples=1, generator=generator))


def incremental_decoder(tokenizer: Tokenizer) -> Callable[[int], str | None]:
    """A function fed one token id at a time that returns new text once it is valid UTF-8.

    Byte-level BPE splits a Cyrillic letter or an emoji over several tokens; decoding them one
    by one would print replacement characters.
    """
    if tokenizer.backend == "huggingface":
        stream = DecodeStream(skip_special_tokens=True)
        return lambda token_id: stream.step(tokenizer.processor, token_id)

    # SentencePiece has no streaming decoder: decode everything and hand out what is new.
    ids: list[int] = []
    shown = [""]

    def step(token_id: int) -> str | None:
        ids.append(token_id)
        text = tokenizer.processor.decode(ids)
        if text.endswith("\ufffd") or len(text) <= len(shown[0]):
            return None
        piece, shown[0] = text[len(shown[0]) :], text
        return piece

    return step
