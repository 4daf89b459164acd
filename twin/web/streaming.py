"""Streaming the model's blocking iterator to the browser without blocking the event loop, and
closing it the moment the client goes away, so the model's lock is released for the next caller.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from fastapi.responses import StreamingResponse
from starlette.types import Send

COALESCE_SECONDS = 0.01


def _next_batch(pieces: Iterator[str], window_seconds: float) -> str | None:
    """The next piece joined with those that follow within ``window_seconds``; None at the end."""
    first = next(pieces, None)
    if first is None:
        return None
    batch = [first]
    deadline = time.monotonic() + window_seconds
    while time.monotonic() < deadline:
        piece = next(pieces, None)
        if piece is None:
            break
        batch.append(piece)
    return "".join(batch)


async def iterate_in_thread(
    pieces: Iterator[str], *, window_seconds: float = COALESCE_SECONDS
) -> AsyncIterator[str]:
    """Yield from ``pieces``, generated in a worker thread; close ``pieces`` however the
    consumer stops (exhausted, cancelled, or the async generator closed).

    Pieces that arrive within ``window_seconds`` of the first of a batch go out together: a
    small model writes a token every millisecond or two, and a thread hop plus an event per
    token would cost more than the token itself. The first piece is never held back.

    Args:
        pieces: a blocking iterator, e.g. `twin.chat.generate.Twin.stream_reply`'s.
        window_seconds: how long to gather further pieces after the first of a batch.
    """
    window = 0.0  # the first piece goes out alone, at once
    try:
        while True:
            # Cancelling this await waits for the running batch to return (anyio does not
            # abandon the thread), so `close` below never meets a generator that is executing.
            batch = await anyio.to_thread.run_sync(_next_batch, pieces, window)
            if batch is None:
                return
            yield batch
            window = window_seconds
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()


class ClosingStreamingResponse(StreamingResponse):
    """A `StreamingResponse` that closes its body iterator when the stream ends for any reason.

    Starlette leaves an abandoned async generator to the garbage collector; the model's lock
    must not wait for that.
    """

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()


def sse(data: Any, *, event: str | None = None) -> str:
    """One Server-Sent Event carrying ``data`` as JSON (strings already encoded pass as is).

    Args:
        data: the payload (JSON-serialized unless it is a ``str``).
        event: the event name (None: the default ``message``).
    """
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n"


def event_stream(events: AsyncIterator[str]) -> ClosingStreamingResponse:
    """The HTTP response for an SSE stream (never cached).

    Args:
        events: the encoded events (see `sse`).
    """
    return ClosingStreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
