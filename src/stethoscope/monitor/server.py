"""Running the app under uvicorn with bounded clients: at most ``max_connections`` at once
(uvicorn's ``limit_concurrency``: 503 past it), request headers complete within
`HEADER_TIMEOUT_S` of the connection (or of the request's first byte) and at most
`MAX_HEADER_BYTES` long, idle keep-alive connections closed after `KEEP_ALIVE_S`, websocket
frames of at most `WS_MAX_BYTES`, and tokens redacted from every log line (`guard`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .guard import redact_uvicorn_logs

HEADER_TIMEOUT_S = 10.0  # a client has this long to send a request's headers (slowloris)
KEEP_ALIVE_S = 5  # an idle keep-alive connection is closed after this long
MAX_HEADER_BYTES = 16 * 1024  # h11's largest incomplete event: the request line and headers
WS_MAX_BYTES = 1024 * 1024  # the largest websocket frame (1 s of 192 kHz float32 PCM is 768 KiB)
MAX_CONNECTIONS = 64  # default --max-connections


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a header timeout: uvicorn itself waits forever for the
    headers of a connection's first request, and for the rest of a request once its first
    byte came. The connection is closed when they are not complete in `HEADER_TIMEOUT_S`."""

    header_timeout = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the header clock with the connection."""
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timeout)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def data_received(self, data: bytes) -> None:
        """Bytes of a new request start the clock; complete headers stop it."""
        if self._header_timer is None and self.conn.their_state is h11.IDLE:
            self._arm()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock with the connection."""
        self._disarm()
        super().connection_lost(exc)

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.warning(
                "closed a connection whose request headers were not complete in %g s",
                self.header_timeout,
            )
            self.transport.close()


@dataclass(frozen=True)
class Limits:
    """The connection limits `run` gives uvicorn."""

    max_connections: int = MAX_CONNECTIONS
    header_timeout: float = HEADER_TIMEOUT_S
    keep_alive: int = KEEP_ALIVE_S
    max_header_bytes: int = MAX_HEADER_BYTES
    ws_max_bytes: int = WS_MAX_BYTES


def config(
    app: Any, host: str, port: int, limits: Limits = Limits(), quiet: bool = False
) -> uvicorn.Config:
    """uvicorn's configuration of ``app`` with ``limits`` (h11 with its header timeout; the
    websockets implementation with its frame limit)."""
    protocol = type("GuardedH11Limited", (GuardedH11,), {"header_timeout": limits.header_timeout})
    cfg = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        ws="websockets-sansio",
        ws_max_size=limits.ws_max_bytes,
        limit_concurrency=limits.max_connections,
        timeout_keep_alive=limits.keep_alive,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        log_level="warning" if quiet else "info",
        access_log=not quiet,
        timeout_graceful_shutdown=10,
    )
    redact_uvicorn_logs()  # after uvicorn configured its loggers
    return cfg


def run(app: Any, host: str, port: int, limits: Limits = Limits(), quiet: bool = False) -> None:
    """Serve ``app`` until SIGINT or SIGTERM."""
    uvicorn.Server(config(app, host, port, limits, quiet)).run()
