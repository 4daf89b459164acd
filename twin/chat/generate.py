"""Replies from the twin: a base model (optionally with a run's adapter merged in), streamed.

`load_twin` loads the weights once; `Twin.stream_reply` renders the conversation with the same
prompt format the dataset uses (`twin.prepare.format`), then samples token by token with a KV
cache and yields text as soon as it is valid UTF-8. A reply ends where my turn ends: at EOS,
where the model starts the next speaker's tag, or where it writes prompt scaffolding ("### Input:",
the instruction line); none of that is ever shown. The web chat, the API and the game all reply
through `Twin.stream_reply`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from litgpt.config import Config as BaseConfig
from litgpt.generate.base import sample_top_p
from litgpt.lora import GPT as LoraGPT
from litgpt.lora import Config as LoraConfig
from litgpt.lora import lora_filter, merge_lora_weights
from litgpt.model import GPT
from litgpt.tokenizer import Tokenizer

from twin.basemodel.checkpoint import missing_files
from twin.config import Settings
from twin.errors import ChatError
from twin.prepare.format import (
    TURN_SEPARATOR,
    Turn,
    clean_reply,
    render_context,
    render_instruction,
    render_prompt,
    reply_stops,
    tag_turn,
    without_broken_chars,
)
from twin.train.record import RUN_RECORD, adapter_path, load_run
from twin.train.trainer import record_status, runs_dir

DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_K: int | None = 50
DEFAULT_TOP_P = 0.9
DEFAULT_MAX_NEW_TOKENS = 128
# The KV cache and the attention mask are allocated for the whole context up front; models
# advertising huge contexts (128k) would need gigabytes for a mask a chat never fills.
MAX_CONTEXT_TOKENS = 4096
TRAIN_HINT = "See `twin runs`, or train one with `twin train`."


class StopScanner:
    """Cuts a text stream at the first stop sequence, holding back what might start one (and
    trailing blanks, never shown at the end of a reply).

    Pure text logic: `feed` returns what is safe to show now; after a stop sequence is seen,
    `stopped` is true and nothing more is returned. `flush` returns what was held back when the
    stream ends for another reason (EOS, length).

    Args:
        stops: the sequences that end the text (not included in it).
        line_start: the text starts a line, so a stop beginning with a line break also
            matches at its very start (a reply that opens with another speaker's tag).
        skip_prefix: dropped when the text starts with it (my own tag before my reply).

    >>> scanner = StopScanner(["\\nAnna: "])
    >>> scanner.feed("hi\\nAn"), scanner.feed("na: bye"), scanner.stopped
    ('hi', '', True)
    """

    def __init__(
        self, stops: Sequence[str], *, line_start: bool = False, skip_prefix: str = ""
    ) -> None:
        self.stops = [s for s in stops if s]
        # A virtual line break before the text, dropped again from what is shown.
        self.held = "\n" if line_start else ""
        self._virtual = line_start
        self._prefix, self._start = skip_prefix, ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add ``text``; return the part that can no longer become a stop sequence.

        Args:
            text: the next decoded piece.
        """
        if self.stopped:
            return ""
        if self._prefix:  # still deciding whether the text starts with it
            self._start += text
            if self._prefix.startswith(self._start):
                return ""
            text, self._start = self._start.removeprefix(self._prefix), ""
            self._prefix = ""
        buffer = self.held + text
        cuts = [i for i in (buffer.find(s) for s in self.stops) if i >= 0]
        if cuts:
            self.stopped = True
            self.held = ""
            return self._shown(buffer[: min(cuts)].rstrip())
        safe = buffer[: len(buffer) - self._partial_stop_length(buffer)]
        # Trailing blanks wait for more text: before a stop or at the end they are not shown.
        safe = safe.rstrip()
        self.held = buffer[len(safe) :]
        return self._shown(safe)

    def flush(self) -> str:
        """What was held back; call when the stream ends without a stop sequence."""
        shown = ""
        if self._prefix:  # the text ended while it could still become the prefix
            prefix, start = self._prefix, self._start
            self._prefix, self._start = "", ""
            shown = self.feed(start) if start != prefix else ""
        rest, self.held = self.held, ""
        return shown + ("" if self.stopped else self._shown(rest.rstrip()))

    def _shown(self, text: str) -> str:
        if self._virtual and text:
            self._virtual = False
            return text[1:]
        return text

    def _partial_stop_length(self, buffer: str) -> int:
        # The longest end of `buffer` that is the beginning of some stop sequence.
        longest = max((len(s) for s in self.stops), default=1) - 1
        for size in range(min(longest, len(buffer)), 0, -1):
            tail = buffer[-size:]
            if any(s.startswith(tail) for s in self.stops):
                return size
        return 0


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


def _incremental_decoder(tokenizer: Tokenizer) -> Callable[[int], str | None]:
    """A function fed one token id at a time that returns new text once it is valid UTF-8.

    Byte-level BPE splits a Cyrillic letter or an emoji over several tokens; decoding them one
    by one would print replacement characters.
    """
    if tokenizer.backend == "huggingface":
        from tokenizers.decoders import DecodeStream

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
        if temperature < 0:
            raise ChatError(f"temperature must be ≥ 0, got {temperature}.", hint="Try 0.8.")
        if not 0.0 < top_p <= 1.0:
            raise ChatError(f"top_p must be in (0, 1], got {top_p}.", hint="Try 0.9.")
        if top_k is not None and top_k < 1:
            raise ChatError(f"top_k must be ≥ 1, got {top_k}.", hint="Try 50, or leave it out.")
        if not 0 < max_new_tokens < self.context_length:
            raise ChatError(
                f"max_new_tokens must be between 1 and {self.context_length - 1}, "
                f"got {max_new_tokens}.",
                hint="Try 128.",
            )
        prompt = self.prompt_ids(context=context, me=me, peer=peer, max_new_tokens=max_new_tokens)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        return self._stream_text(
            prompt,
            stops=reply_stops(me=me, peer=peer),
            own_tag=tag_turn(Turn(speaker=me, text="", mine=True)),
            finish=lambda rest: clean_reply(rest, me=me, peer=peer),
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            generator=generator,
        )

    def _stream_text(
        self,
        prompt: torch.Tensor,
        *,
        stops: list[str],
        own_tag: str,
        finish: Callable[[str], str],
        max_new_tokens: int,
        temperature: float,
        top_k: int | None,
        top_p: float,
        generator: torch.Generator | None,
    ) -> Iterator[str]:
        decode = _incremental_decoder(self.tokenizer)
        scanner = StopScanner(stops, line_start=True, skip_prefix=own_tag)
        with self._lock:
            for token_id in self._generate_ids(
                prompt,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                generator=generator,
            ):
                piece = without_broken_chars(decode(token_id) or "")
                if piece and (shown := scanner.feed(piece)):
                    yield shown
                if scanner.stopped:
                    return
            # What was held back may be a tag the length limit cut after its colon.
            if rest := finish(scanner.flush()):
                yield rest

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


def _load_weights(path: Path, what: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ChatError(f"{what} is missing: {path}.", hint="Train again with `twin train`.")
    try:
        # A private (copy-on-write) mapping: merging the adapter never writes to the file.
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except (RuntimeError, OSError, ValueError) as exc:
        raise ChatError(
            f"{what} at {path} cannot be read ({exc}).",
            hint="The file is damaged: replace it (download the base model again, or train "
            "again with `twin train`).",
        ) from exc
    return state.get("model", state)


def load_twin(*, base_model_dir: Path | None = None, run_dir: Path | None = None) -> Twin:
    """Load a base model and, given a run, merge its adapter in; keep the result for many replies.

    Merging (W += B·A·scale) makes every token as cheap as with the base model alone. It is
    safe because this instance is never trained: the separate LoRA weights are not needed
    again, and LoRA dropout only acts in training.

    Args:
        base_model_dir: litgpt checkpoint dir of the base model; default: the run's.
        run_dir: a finished training run (see `twin.train.record`); None: the base model alone.
    """
    record = load_run(run_dir) if run_dir is not None else None
    if base_model_dir is None:
        if record is None:
            raise ChatError(
                "Nothing to load: neither a run nor a base model was given.",
                hint="Pass a run dir (trained with `twin train`) or a base model dir.",
            )
        base_model_dir = record.base_model_dir
    missing = missing_files(base_model_dir)
    if missing:
        raise ChatError(
            f"The base model at {base_model_dir} is incomplete: missing {', '.join(missing)}.",
            hint="Put the base model the run was trained on back in place (`litgpt download "
            "…`), or build the offline demo with `twin model init-tiny`.",
        )
    config_file = base_model_dir / "model_config.yaml"
    try:
        tokenizer = Tokenizer(base_model_dir)
    except (OSError, NotImplementedError, ValueError, KeyError) as exc:
        raise ChatError(
            f"The tokenizer in {base_model_dir} cannot be loaded ({exc!r}).",
            hint="A checkpoint dir needs tokenizer.json (or tokenizer.model) and "
            "tokenizer_config.json.",
        ) from exc

    state = _load_weights(base_model_dir / "lit_model.pth", "The base model's weights")
    if run_dir is not None and record is not None:
        adapter_file = adapter_path(run_dir)
        adapter = _load_weights(adapter_file, "The run's adapter")
        if not adapter or not all(lora_filter(key, value) for key, value in adapter.items()):
            raise ChatError(
                f"{adapter_file} is not a LoRA adapter.", hint="Train again with `twin train`."
            )
        state = {**state, **adapter}
        config: BaseConfig = LoraConfig.from_file(config_file, **record.lora.litgpt_kwargs())
        model_class: type[GPT] = LoraGPT
    else:
        config = BaseConfig.from_file(config_file)
        model_class = GPT

    # Built on the meta device (no time spent on random init), then the loaded tensors are
    # adopted as they are; strict loading proves base + adapter cover every weight.
    with torch.device("meta"):
        model = model_class(config)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise ChatError(
            f"The weights do not fit the model described in {config_file}: {exc}",
            hint="Was the run trained on a different base model? Check base_model_dir in "
            "the run's run.json, or train again with `twin train`.",
        ) from exc
    model = model.to(dtype=torch.float32)
    model.max_seq_length = min(config.block_size, MAX_CONTEXT_TOKENS)
    # The rotary tables are not weights; rebuild them on the CPU after the meta construction.
    model.cos, model.sin = model.rope_cache(device=torch.device("cpu"))
    model.requires_grad_(False)
    model.eval()
    if isinstance(model, LoraGPT):
        merge_lora_weights(model)
    name = record.run_id if record is not None else "base"
    return Twin(model=model, tokenizer=tokenizer, name=name)


def resolve_run_dir(*, settings: Settings, run: str | Path | None = None) -> Path:
    """The run dir meant by ``run``: a path, a run id under the runs dir, or the newest finished.

    Args:
        settings: twin's settings (for the data dir).
        run: a run dir, a run id, or None for the newest run that finished training.
    """
    root = runs_dir(settings)
    if run is None:
        # Run ids sort by time; a run counts once training is done and its adapter is there.
        finished = [
            d
            for d in sorted(root.iterdir() if root.is_dir() else [])
            if adapter_path(d).is_file() and record_status(load_run(d)) == "done"
        ]
        if not finished:
            raise ChatError(f"No finished training run in {root}.", hint=TRAIN_HINT)
        return finished[-1].resolve()
    candidate = Path(run).expanduser()
    run_dir = candidate if candidate.is_dir() else root / str(run)
    if not (run_dir / RUN_RECORD).is_file():
        raise ChatError(f"No training run {str(run)!r} (looked in {root}).", hint=TRAIN_HINT)
    if not adapter_path(run_dir).is_file():
        raise ChatError(
            f"The run {run_dir.name} has no adapter yet (no {adapter_path(run_dir)}).",
            hint=f"Let it finish, or continue it with `twin train --resume {run_dir.name}`.",
        )
    return run_dir.resolve()
