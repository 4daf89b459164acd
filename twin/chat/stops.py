"""Where a reply ends: the stop sequences of my turn and the scanner that cuts a text stream at
them, for the local model (`twin.chat.generate`) and a remote one (`twin.chat.remote`) alike."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from twin.prepare.format import Turn, clean_reply, reply_stops, tag_turn, without_broken_chars

__all__ = ["StopScanner", "reply_pieces", "reply_stops"]


def reply_pieces(pieces: Iterable[str], *, me: str, peer: str) -> Iterator[str]:
    """What to show of a model's text for my turn, piece by piece: the same text as
    `clean_reply` of the whole (it ends at any speaker's tag or the prompt's scaffolding, my own
    opening tag and broken characters dropped), shown as soon as no stop can begin in it.

    Args:
        pieces: the model's text as it comes (decoded tokens, or a server's stream).
        me: my display name: the text is my turn.
        peer: the other person's display name.

    >>> list(reply_pieces(["Olga: ok", ", 8 it", " isAnna:"], me="Olga", peer="Anna"))
    ['ok', ', 8 it', ' is']
    """
    own_tag = tag_turn(Turn(speaker=me, text="", mine=True))
    scanner = StopScanner(reply_stops(me=me, peer=peer), line_start=True, skip_prefix=own_tag)
    for piece in pieces:
        piece = without_broken_chars(piece)
        if piece and (shown := scanner.feed(piece)):
            yield shown
        if scanner.stopped:
            return
    # What was held back may be a tag the length limit cut after its colon.
    if rest := clean_reply(scanner.flush(), me=me, peer=peer):
        yield rest


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
