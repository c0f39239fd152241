"""How ``plait server`` runs the app on uvicorn: deadlines, so slow clients cannot hold connections.

- headers: a connection whose request headers are not complete within
  ``header_timeout`` seconds of its first byte (or of connecting) is closed;
- body: ``create_app(body_timeout=...)`` answers 408 (``plait.http.guard.BodyDeadline``);
- idle keep-alive connections close after ``keep_alive_timeout``;
- headers are at most ``MAX_HEADER_BYTES`` (h11's incomplete-event limit).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_KEEP_ALIVE_TIMEOUT = 5.0
MAX_HEADER_BYTES = 16 * 1024


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request headers take too long to arrive."""

    header_timeout = DEFAULT_HEADER_TIMEOUT
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # IDLE: the request line and headers are still arriving (for the first
        # request, or the next one on a kept-alive connection).
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            if self._header_deadline is None:
                self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_deadline = self.loop.call_later(self.header_timeout, self._on_header_deadline)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _on_header_deadline(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def server_config(
    app: Any,
    host: str,
    port: int,
    *,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT,
    log_level: str = "warning",
) -> uvicorn.Config:
    """The uvicorn configuration ``plait server`` uses."""

    class Protocol(DeadlineH11Protocol):
        pass

    Protocol.header_timeout = header_timeout
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=Protocol,
        timeout_keep_alive=max(1, round(keep_alive_timeout)),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        log_level=log_level,
    )
