"""The dataset rules, pure: a dialog's messages → sessions → turns → samples.

No I/O, no clock, no global randomness: the same messages always give the same samples, so the
rules are testable in microseconds and the web preview can reuse them. `twin.prepare.dataset`
feeds them from the store and writes the files.

Decisions a reader may look for:

- **Sessions** split wherever two consecutive messages are at least ``gap_seconds`` apart.
- **Turns** merge one speaker's consecutive messages with ``"\\n"``. Media shows as a typed
  placeholder (``<photo>``, ``<voice>``, …: the store's media kind), followed by its caption
  on the same line. A forwarded message shows as ``<forwarded> text``: it is context, never
  my words. Service messages (phone calls, pins) carry no words and are dropped, as are
  empty texts.
- **Samples**: each of my turns that follows the other person's turn. The first turn of a
  session, when it is mine, is skipped: nothing came before it, and the chat always answers
  something. The output is my turn without its forwarded messages (a turn mixing both keeps
  its own messages, in order; the forwards stay visible in later samples' context). Outputs
  with no words (only media placeholders) or only forwards are skipped.
- **Length**: the input is trimmed by whole turns from the oldest until prompt + output + EOS
  fit the budget. A reply that does not fit even with just the turn it answers is skipped, not
  truncated: a cut-off reply would teach the model to stop mid-sentence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate
from typing import Any, Protocol

from pydantic import BaseModel, Field

from twin.prepare.format import (
    TURN_SEPARATOR,
    Turn,
    render_instruction,
    render_prompt,
    tag_turn,
)
from twin.prepare.scrub import Scrubber, ScrubReport
from twin.store import ChatMessage

DAY_SECONDS = 86_400
CHARS_PER_TOKEN = 3
"""Character budget when no tokenizer is at hand: English runs about 4 characters per token in
common BPE vocabularies, Cyrillic and emoji fewer; 3 keeps most samples inside the real limit."""
FORWARDED = "<forwarded>"
# A message is scrubbed after this many messages before it (either speaker).
_CONTEXT_MESSAGES = 2


class SessionTurn(Turn):
    """A `Turn` plus what a sample needs from it when it is mine."""

    reply: str = ""
    """My own words in this turn: its non-forwarded messages, rendered and merged."""
    reply_has_text: bool = False
    """True when ``reply`` holds more than media placeholders."""


class Sample(BaseModel):
    """One training record (litgpt's JSON format) plus its measured length."""

    instruction: str
    input: str
    output: str
    me: str
    """The speaker tags the instruction and the input were rendered with: whoever replies to a
    held-out sample later (evaluation, the game) reads them here, not out of the sentence."""
    peer: str
    length: int
    """Prompt + output + EOS, in the budget's unit."""
    trimmed: bool = False
    """True when older turns of the session were left out to fit the budget."""

    def record(self) -> dict[str, str]:
        """The object written to the JSON files: litgpt's ``instruction``, ``input`` and
        ``output`` (litgpt passes the other keys to the prompt style, which ignores them)."""
        return self.model_dump(include={"instruction", "input", "output", "me", "peer"})


class SessionSamples(BaseModel):
    """The samples of one session and why some of my turns gave none."""

    samples: list[Sample] = Field(default_factory=list)
    skipped: dict[str, int] = Field(default_factory=dict)
    """Reason → count: ``no_context``, ``forwarded_only``, ``media_only``, ``reply_too_long``,
    ``context_too_long``."""


WindowLength = Callable[[int, int], int]
"""``length(start, stop)``: the prompt's length with ``turns[start:stop]`` as its input."""
TaggedTurns = Sequence[str]
"""A session's turns as `tag_turn` renders them (``"Name: text"``), rendered once per session:
a sample's input is a window of them joined by ``TURN_SEPARATOR`` (`render_context`)."""


class LengthBudget(Protocol):
    """How long a sample may be and how to measure it (tokens or characters)."""

    unit: str
    limit: int

    def measure(
        self, *, instruction: str, tagged: TaggedTurns, outputs: Sequence[str]
    ) -> tuple[WindowLength, list[int]]:
        """Measure one session at once: a function giving the prompt's length for any window
        of the ``tagged`` turns, and the length of each output, EOS included."""
        ...


def _prompt_frame(instruction: str) -> tuple[str, str] | None:
    """``(head, tail)`` such that a prompt is ``head + "\n" + tag_0 + … + "\n" + tag_n + tail``.

    Measuring each ``"\n" + tag`` once lets a window's length be a sum instead of a new
    measurement for every sample. None when the template does not end its head with a line
    break (then every window is measured whole).
    """
    head, _, tail = render_prompt(instruction=instruction, input="\x00").partition("\x00")
    return (head[:-1], tail) if head.endswith("\n") else None


def _summed(fixed: int, pieces: Sequence[int]) -> WindowLength:
    cumulative = list(accumulate(pieces, initial=0))
    return lambda start, stop: fixed + cumulative[stop] - cumulative[start]


def _measured_whole(
    instruction: str, tagged: TaggedTurns, measure: Callable[[str], int]
) -> WindowLength:
    return lambda start, stop: measure(
        render_prompt(instruction=instruction, input=TURN_SEPARATOR.join(tagged[start:stop]))
    )


class CharBudget:
    """The budget when no tokenizer is at hand: ``CHARS_PER_TOKEN`` characters per token.

    Args:
        max_seq_length: the token limit to approximate.
        chars_per_token: the assumed average.

    >>> budget = CharBudget(max_seq_length=10)
    >>> budget.limit, budget.output_length("hi")  # EOS counts as one token's worth
    (30, 5)
    """

    unit = "chars"

    def __init__(self, *, max_seq_length: int, chars_per_token: int = CHARS_PER_TOKEN) -> None:
        self.chars_per_token = chars_per_token
        self.limit = max_seq_length * chars_per_token

    def output_length(self, output: str) -> int:
        return len(output) + self.chars_per_token

    def measure(
        self, *, instruction: str, tagged: TaggedTurns, outputs: Sequence[str]
    ) -> tuple[WindowLength, list[int]]:
        lengths = [self.output_length(o) for o in outputs]
        frame = _prompt_frame(instruction)
        if frame is None:
            return _measured_whole(instruction, tagged, len), lengths
        head, tail = frame
        return _summed(len(head) + len(tail), [len(t) + 1 for t in tagged]), lengths


class TokenBudget:
    """The budget in tokens of a litgpt `Tokenizer`, counted as litgpt's `SFTDataset` encodes a
    sample: the prompt with the tokenizer's BOS rule, the output with EOS.

    Each turn is encoded once and windows are summed, after checking on the session's whole
    prompt that encoding the pieces separately gives exactly the same tokens (true of
    byte-level BPE at line breaks); where it does not, each window is encoded whole.

    Args:
        tokenizer: a `litgpt.tokenizer.Tokenizer` (anything with its ``encode``).
        max_seq_length: the token limit.
    """

    unit = "tokens"

    def __init__(self, *, tokenizer: Any, max_seq_length: int) -> None:
        self.tokenizer = tokenizer
        self.limit = max_seq_length
        # litgpt's `encode` builds a torch tensor per call; for a Hugging Face tokenizer the same
        # ids come from its Rust batch encoder, called once per session with no tensors (~10x
        # faster). `encode_batch_fast` (recent tokenizers releases) skips the character offsets,
        # which nothing here reads: the same ids, ~30% sooner.
        processor = tokenizer.processor if tokenizer.backend == "huggingface" else None
        self.encode_batch: Callable[[list[str]], list[Any]] | None = (
            getattr(processor, "encode_batch_fast", None) or processor.encode_batch
            if processor is not None
            else None
        )

    def encode_many(self, texts: Sequence[str], *, bos: bool | None, eos: bool) -> list[list[int]]:
        """Token ids of each text, exactly as litgpt's ``Tokenizer.encode`` gives them.

        Args:
            texts: the strings to encode.
            bos: litgpt's ``bos`` argument (None: the tokenizer's own rule).
            eos: whether to end with EOS.
        """
        return self.encode_flagged([(t, bos, eos) for t in texts])

    def encode_flagged(self, items: Sequence[tuple[str, bool | None, bool]]) -> list[list[int]]:
        """`encode_many` where each text has its own ``(text, bos, eos)``: one batch call.

        Args:
            items: the strings with litgpt's ``bos`` and ``eos`` arguments for each.
        """
        tokenizer = self.tokenizer
        if self.encode_batch is None:
            return [tokenizer.encode(t, bos=bos, eos=eos).tolist() for t, bos, eos in items]
        result = []
        encodings = self.encode_batch([text for text, _, _ in items])
        for encoding, (_, bos, eos) in zip(encodings, items, strict=True):
            ids = encoding.ids
            # The same BOS/EOS rules as litgpt.tokenizer.Tokenizer.encode.
            if bos or (bos is None and tokenizer.use_bos):
                if not ids or ids[0] != tokenizer.bos_id:
                    ids = [tokenizer.bos_id, *ids]
            elif ids and ids[0] == tokenizer.bos_id:
                ids = ids[1:]
            if eos and (not ids or ids[-1] != tokenizer.eos_id):
                ids = [*ids, tokenizer.eos_id]
            elif not eos and ids and ids[-1] == tokenizer.eos_id:
                ids = ids[:-1]
            result.append(ids)
        return result

    def measure(
        self, *, instruction: str, tagged: TaggedTurns, outputs: Sequence[str]
    ) -> tuple[WindowLength, list[int]]:
        def prompt_length(prompt: str) -> int:
            return len(self.encode_many([prompt], bos=None, eos=False)[0])

        replies: list[tuple[str, bool | None, bool]] = [(o, False, True) for o in outputs]
        frame = _prompt_frame(instruction)
        if frame is None or not tagged:
            lengths = [len(ids) for ids in self.encode_flagged(replies)]
            return _measured_whole(instruction, tagged, prompt_length), lengths
        head, tail = frame
        texts = ["\n" + t for t in tagged]
        whole = head + "".join(texts) + tail
        n = len(texts)
        # (head, *pieces, tail, whole prompt, *outputs): everything of the session in one call.
        pieces: list[tuple[str, bool | None, bool]] = [(t, False, False) for t in (*texts, tail)]
        ids = self.encode_flagged([(head, None, False), *pieces, (whole, None, False), *replies])
        first, middle, last, whole_ids = ids[0], ids[1 : n + 1], ids[n + 1], ids[n + 2]
        lengths = [len(i) for i in ids[n + 3 :]]
        if whole_ids != [token for part in (first, *middle, last) for token in part]:
            return _measured_whole(instruction, tagged, prompt_length), lengths
        return _summed(len(first) + len(last), [len(p) for p in middle]), lengths


def iter_sessions(
    messages: Iterable[ChatMessage], *, gap_seconds: int = DAY_SECONDS
) -> Iterator[list[ChatMessage]]:
    """Yield sessions from messages already sorted by time, then id (streams a dialog).

    Gaps are measured between messages someone wrote or sent (text or media): a service
    message (a pin, a call) 20 h after the last one does not bridge a 40 h silence into one
    session; it stays with the session before it.

    Args:
        messages: one dialog's messages in ``(sent_unix, tg_id)`` order.
        gap_seconds: a gap this long or longer starts a new session.

    Raises:
        ValueError: when the messages are out of order.
    """
    session: list[ChatMessage] = []
    last_said: int | None = None  # sent_unix of the session's last message that is not service
    for message in messages:
        if session:
            last = session[-1]
            if (message.sent_unix, message.tg_id) < (last.sent_unix, last.tg_id):
                raise ValueError("messages must be sorted by (sent_unix, tg_id)")
        if is_said(message):
            if last_said is not None and message.sent_unix - last_said >= gap_seconds:
                yield session
                session = []
            last_said = message.sent_unix
        session.append(message)
    if session:
        yield session


def is_said(message: ChatMessage) -> bool:
    """Whether someone wrote or sent `message` (text or media), as opposed to a service event."""
    return not message.service_kind and bool(message.media_kind or message.text.strip())


def split_into_sessions(
    messages: Iterable[ChatMessage], *, gap_seconds: int = DAY_SECONDS
) -> list[list[ChatMessage]]:
    """Split a dialog's messages into sessions wherever the gap is at least ``gap_seconds``.

    Args:
        messages: one dialog's messages, in any order (sorted here by time, then id).
        gap_seconds: a gap this long or longer starts a new session.

    >>> day = 86_400
    >>> msgs = [ChatMessage(1, 0, False, "hi"), ChatMessage(2, day - 1, True, "hey"),
    ...         ChatMessage(3, 2 * day - 1, False, "still there?")]
    >>> [[m.tg_id for m in s] for s in split_into_sessions(msgs)]
    [[1, 2], [3]]
    """
    ordered = sorted(messages, key=lambda m: (m.sent_unix, m.tg_id))
    return list(iter_sessions(ordered, gap_seconds=gap_seconds))


def render_message(message: ChatMessage) -> str | None:
    """A message as it reads in a turn, or None when it carries nothing to read.

    >>> render_message(ChatMessage(1, 0, True, "look!", media_kind="photo", forwarded=True))
    '<forwarded> <photo> look!'
    """
    if message.service_kind:
        return None
    parts = [FORWARDED] if message.forwarded else []
    if message.media_kind:  # one word of the store's vocabulary (`normalize_media_kind`)
        parts.append(f"<{message.media_kind}>")
    text = message.text.strip()
    if text:
        parts.append(text)
    if not parts or parts == [FORWARDED]:
        return None
    return " ".join(parts)


def scrub_session(
    messages: list[ChatMessage], scrubber: Scrubber, report: ScrubReport, key: str
) -> list[ChatMessage]:
    """Scrub each message, reading it after the two before it (either speaker): a secret is
    often its own message, right after the one that names or asks for it."""
    scrubbed: list[ChatMessage] = []
    for i, message in enumerate(messages):
        if not message.text:
            scrubbed.append(message)
            continue
        context = [m.text for m in messages[max(0, i - _CONTEXT_MESSAGES) : i] if m.text]
        result = scrubber.scrub(message.text, context=context)
        if result.found:
            report.add(key, result.found)
            message = message._replace(text=result.text)
        scrubbed.append(message)
    return scrubbed


def merge_consecutive(messages: Sequence[ChatMessage], *, me: str, peer: str) -> list[SessionTurn]:
    """Merge one session's consecutive messages of one speaker into turns.

    Service messages and empty texts are dropped first, so two runs of the same speaker
    around a dropped message become one turn.

    Args:
        messages: one session, in time order.
        me: the owner's display name (the speaker of my turns).
        peer: the other person's display name.

    >>> turns = merge_consecutive([ChatMessage(1, 0, False, "hi"), ChatMessage(2, 1, False, "?"),
    ...                            ChatMessage(3, 2, True, "hey")], me="Me", peer="Anna")
    >>> [(t.speaker, t.text) for t in turns]
    [('Anna', 'hi\\n?'), ('Me', 'hey')]
    """
    turns: list[SessionTurn] = []
    lines: list[str] = []
    own: list[str] = []
    own_has_text = False
    mine: bool | None = None

    def close() -> None:
        if lines:
            turns.append(
                SessionTurn(
                    speaker=me if mine else peer,
                    text="\n".join(lines),
                    mine=bool(mine),
                    reply="\n".join(own) if mine else "",
                    reply_has_text=own_has_text if mine else False,
                )
            )

    for message in messages:
        line = render_message(message)
        if line is None:
            continue
        if mine is None or bool(message.out) != mine:
            close()
            lines, own, own_has_text, mine = [], [], False, bool(message.out)
        lines.append(line)
        if not message.forwarded:
            own.append(line)
            own_has_text = own_has_text or bool(message.text.strip())
    close()
    return turns


def build_samples(
    turns: Sequence[SessionTurn], *, me: str, peer: str, budget: LengthBudget
) -> SessionSamples:
    """One sample per turn of mine that answers the other person, fitted to the budget.

    Args:
        turns: one session's turns, from `merge_consecutive`.
        me: the owner's display name.
        peer: the other person's display name.
        budget: the length limit and how to measure it.

    >>> turns = merge_consecutive([ChatMessage(1, 0, False, "coming?"),
    ...                            ChatMessage(2, 5, True, "yes!")], me="Me", peer="Anna")
    >>> sample = build_samples(turns, me="Me", peer="Anna",
    ...                        budget=CharBudget(max_seq_length=512)).samples[0]
    >>> sample.input, sample.output
    ('Anna: coming?', 'yes!')
    """
    instruction = render_instruction(me=me, peer=peer)
    result = SessionSamples()
    skipped: Counter[str] = Counter()
    replying: list[int] = []  # my turns that can give a sample
    for i, turn in enumerate(turns):
        if not turn.mine:
            continue
        if i == 0:
            skipped["no_context"] += 1
        elif not turn.reply:
            skipped["forwarded_only"] += 1
        elif not turn.reply_has_text:
            skipped["media_only"] += 1
        else:
            replying.append(i)
    if not replying:
        result.skipped = dict(sorted(skipped.items()))
        return result
    # Measured once per session, only when a sample needs it.
    tagged = [tag_turn(t) for t in turns]
    window_length, output_lengths = budget.measure(
        instruction=instruction, tagged=tagged, outputs=[turns[i].reply for i in replying]
    )
    for i, output_length in zip(replying, output_lengths, strict=True):
        room = budget.limit - output_length
        start = _oldest_fitting_start(i, room, window_length)
        if start is None:
            too_long = window_length(i, i) > room
            skipped["reply_too_long" if too_long else "context_too_long"] += 1
            continue
        result.samples.append(
            Sample(
                instruction=instruction,
                me=me,
                peer=peer,
                # render_context(turns[start:i]), from the tags rendered once above
                input=TURN_SEPARATOR.join(tagged[start:i]),
                output=turns[i].reply,
                length=window_length(start, i) + output_length,
                trimmed=start > 0,
            )
        )
    result.skipped = dict(sorted(skipped.items()))
    return result


def _oldest_fitting_start(stop: int, room: int, window_length: WindowLength) -> int | None:
    """The smallest ``start`` with ``window_length(start, stop) <= room`` (None if even the last
    turn alone is too long). Gallops back, then bisects: few measurements even when each one
    encodes the whole window."""
    if window_length(stop - 1, stop) > room:
        return None
    fits, step = stop - 1, 1
    while fits > 0:
        candidate = max(0, stop - 1 - 2 * step)
        if window_length(candidate, stop) > room:
            low, high = candidate + 1, fits  # the answer is in [low, high]
            while low < high:
                middle = (low + high) // 2
                if window_length(middle, stop) <= room:
                    high = middle
                else:
                    low = middle + 1
            return low
        fits, step = candidate, step * 2
    return 0
