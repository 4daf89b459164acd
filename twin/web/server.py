"""uvicorn, set up for twin: one worker, no Server header, no proxy headers, and a deadline
for request headers.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but waits forever for the
rest of a request's headers once a byte has arrived, so a client sending a header a byte a
minute ("slowloris") holds a connection for good. `HeaderTimeoutProtocol` closes it when the
headers are not complete `HEADER_TIMEOUT_SECONDS` after the connection opened (or after the
previous response). h11 already caps their size (16 KB).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_SECONDS = 10.0
KEEP_ALIVE_SECONDS = 5


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request headers come too slowly."""

    header_timeout_seconds = HEADER_TIMEOUT_SECONDS
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the headers are in
            self._disarm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_header_timer()  # the next request on this connection gets the same

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(
            self.header_timeout_seconds, self._headers_too_slow
        )

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


SERVER_OPTIONS: dict[str, Any] = {
    # One worker: login throttling, live job progress and Telegram clients live in this
    # process (sessions are in the database).
    "workers": 1,
    "http": HeaderTimeoutProtocol,
    "timeout_keep_alive": KEEP_ALIVE_SECONDS,
    "server_header": False,
    "proxy_headers": False,  # a local app: a client's X-Forwarded-* is never trusted
}


def server_config(app: FastAPI, *, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    """The uvicorn configuration twin serves ``app`` with: `SERVER_OPTIONS` on ``host:port``."""
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, **SERVER_OPTIONS)
