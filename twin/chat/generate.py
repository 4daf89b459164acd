"""Replies from the twin: a base model (optionally with a run's adapter merged in), streamed.

`twin.chat.load.load_twin` loads the weights once; `Twin.stream_reply` renders the
conversation with the same prompt format the dataset uses (`twin.prepare.format`), then samples
token by token with a KV cache and yields text as soon as it is valid UTF-8. A reply ends where
my turn ends: at EOS, where the model starts the next speaker's tag, or where it writes prompt
scaffolding ("### Input:", the instruction line); none of that is ever shown
(`twin.chat.stops`). The web chat, the API and the game all reply through `Twin.stream_reply`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import torch
from litgpt.config import Config as BaseConfig
from litgpt.model import GPT
from litgpt.tokenizer import Tokenizer

from twin.chat.defaults import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_K,
    DEFAULT_TOP_P,
    Sampling,
)
from twin.chat.prefill import last_position_logits
from twin.chat.sampling import incremental_decoder, sample_token
from twin.chat.stops import reply_pieces
from twin.errors import ChatError
from twin.prepare.format import (
    TURN_SEPARATOR,
    Turn,
    render_context,
    render_instruction,
    render_prompt,
)

# The KV cache and the attention mask are allocated for the whole context up front; models
# advertising huge contexts (128k) would need gigabytes for a mask a chat never fills.
MAX_CONTEXT_TOKENS = 4096


def prefill_limit(config: BaseConfig) -> int | None:
    """The longest prompt the model can take in one pass with its KV cache, if limited.

    litgpt keeps sliding-window layers' cache as a ring of ``sliding_window_size`` entries and
    refuses a longer prefill (Gemma 3: 512). Decoding past it is fine, one token at a time.

    Args:
        config: the model's config.
    """
    if config.sliding_window_size and any(config.sliding_window_indices or [1]):
        return int(config.sliding_window_size)
    return None


class Twin:
    """A loaded model that answers in my voice. Build it with `load_twin`.

    One generation runs at a time per instance (a lock): the KV cache is shared state. Callers
    on other threads (the web app streams from a worker thread) wait their turn.

    Args:
        model: the litgpt model, adapter already merged, in eval mode on the CPU.
        tokenizer: the base model's tokenizer.
        name: what to call this model in reports (the run id, or "base").
    """

    def __init__(self, *, model: GPT, tokenizer: Tokenizer, name: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.context_length = model.max_seq_length
        self._lock = threading.Lock()
        model.set_kv_cache(batch_size=1, max_seq_length=self.context_length)

    def prefill_tokens(self) -> int | None:
        """The longest prompt the model takes in one pass (a sliding window), or None."""
        return prefill_limit(self.model.config)

    def prompt_ids(
        self, *, context: Sequence[Turn] | str, me: str, peer: str, max_new_tokens: int
    ) -> torch.Tensor:
        """The prompt's token ids, dropping the oldest turns until the reply fits the context.

        Args:
            context: the conversation so far (turns, or a rendered context as in a sample's
                ``input``: then the oldest lines are dropped).
            me: my display name (whose reply is wanted).
            peer: the other person's display name.
            max_new_tokens: room to keep for the reply.
        """
        instruction = render_instruction(me=me, peer=peer)
        if isinstance(context, str):
            lines = context.split(TURN_SEPARATOR) if context else []
            count = len(lines)

            def input_from(first: int) -> str:
                return TURN_SEPARATOR.join(lines[first:])
        else:
            count = len(context)

            def input_from(first: int) -> str:
                return render_context(context[first:])

        def encode(first: int) -> torch.Tensor:
            prompt = render_prompt(instruction=instruction, input=input_from(first))
            return self.tokenizer.encode(prompt).to(torch.int64)

        budget = self.context_length - max_new_tokens
        if (limit := self.prefill_tokens()) is not None:
            budget = min(budget, limit)
        # Fewer turns never make a longer prompt: binary search the fewest to drop.
        low, high = 0, max(count - 1, 0)
        best = encode(high)
        if len(best) > budget:
            raise ChatError(
                f"The last message needs {len(best)} tokens with the prompt; the model has room "
                f"for {budget} (context {self.context_length} minus {max_new_tokens} for the "
                "reply, at most the model's attention window).",
                hint="Send a shorter message or lower max_new_tokens.",
            )
        while low < high:
            middle = (low + high) // 2
            ids = encode(middle)
            if len(ids) <= budget:
                high, best = middle, ids
            else:
                low = middle + 1
        return best

    def stream_reply(
        self,
        *,
        context: Sequence[Turn] | str,
        me: str,
        peer: str,
        temperature: float = DEFAULT_TEMPERATURE,
        top_k: int | None = DEFAULT_TOP_K,
        top_p: float = DEFAULT_TOP_P,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        seed: int | None = None,
    ) -> Iterator[str]:
        """My next message, yielded piece by piece as it is generated.

        Bad arguments raise `ChatError` here, before the first piece; the model is busy (and
        other callers wait) from the first piece until the iterator is exhausted or closed, so
        a caller that stops early should ``close()`` it (garbage collection also does).

        Args:
            context: the conversation so far, oldest first (turns, or a rendered context).
            me: my display name: the reply is my turn.
            peer: the other person's display name.
            temperature: randomness; 0 always picks the most likely token.
            top_k: sample among the k most likely tokens (None: no limit).
            top_p: sample among the most likely tokens covering this probability (1: all).
            max_new_tokens: the longest reply, in tokens.
            seed: makes the reply reproducible (None: a different reply each time).
        """
        Sampling(temperature=temperature, top_k=top_k, top_p=top_p).check()
        if not 0 < max_new_tokens < self.context_length:
            raise ChatError(
                f"max_new_tokens must be between 1 and {self.context_length - 1}, "
                f"got {max_new_tokens}.",
                hint="Try 128.",
            )
        prompt = self.prompt_ids(context=context, me=me, peer=peer, max_new_tokens=max_new_tokens)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        ids = self._generate_ids(
            prompt,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            generator=generator,
        )
        return self._locked(reply_pieces(self._decoded(ids), me=me, peer=peer))

    def _locked(self, pieces: Iterator[str]) -> Iterator[str]:
        # The model is busy from the first piece until the reply ends or is closed.
        with self._lock:
            yield from pieces

    def _decoded(self, ids: Iterator[int]) -> Iterator[str]:
        decode = incremental_decoder(self.tokenizer)
        for token_id in ids:
            yield decode(token_id) or ""

    # The decorator (not a `with` block) so that inference mode is on only while the model
    # runs: torch enters and leaves it around each step of a decorated generator.
    @torch.inference_mode()
    def _generate_ids(
        self,
        prompt: torch.Tensor,
        *,
        max_new_tokens: int,
        temperature: float,
        top_k: int | None,
        top_p: float,
        generator: torch.Generator | None,
    ) -> Iterator[int]:
        """Token ids after ``prompt`` (1-D), up to EOS (not yielded) or ``max_new_tokens``."""
        eos_id = self.tokenizer.eos_id
        # Logits cover the padded vocabulary; ids past the tokenizer's are never real tokens.
        vocab_size = self.model.config.vocab_size
        prompt_length = prompt.size(0)
        tokens = prompt.view(1, -1)  # (1, T) on the first step, then (1, 1)
        input_pos = torch.arange(prompt_length)
        for step in range(max_new_tokens):
            # Positions < prompt_length + step are all written during this reply, so what an
            # earlier reply left in the cache beyond them is never read.
            if step == 0:
                logits = last_position_logits(self.model, tokens, input_pos, prompt_length)
            else:
                logits = self.model(tokens, input_pos, input_pos_maxp1=prompt_length + step)
            token_id = sample_token(
                logits[0, -1, :vocab_size],
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                generator=generator,
            )
            if token_id == eos_id:
                return
            yield token_id
            tokens = torch.tensor([[token_id]])
            input_pos = torch.tensor([prompt_length + step])
