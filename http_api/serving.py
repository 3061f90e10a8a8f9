"""uvicorn settings for the abuse limits that live below ASGI: a deadline for request headers
(uvicorn has none, so a client that opens a connection and sends nothing, or trickles its
headers, would hold it forever), connection and header-size caps."""

from __future__ import annotations

import asyncio
import logging
import threading
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    HTTPTOOLS = True
except ImportError:  # httptools is a dependency, but uvicorn runs without it
    HttpToolsProtocol = H11Protocol  # type: ignore[misc,assignment]
    HTTPTOOLS = False

from memtrace.config import Settings
from memtrace.runtime import Runtime

log = logging.getLogger("memtrace.http")


class _HeaderDeadline:
    """Closes a connection whose next request line and headers do not arrive within
    ``header_timeout_s`` (armed on connect and after each response). Mixed into uvicorn's
    h11 and httptools protocols (both set ``self.cycle`` once a request's headers are in)."""

    header_timeout_s = 10.0
    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    logger: Any

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        if self.cycle is not self._waiting_after:  # a new request's headers are complete
            self._disarm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._waiting_after = self.cycle
        self._header_timer: asyncio.TimerHandle | None = self.loop.call_later(
            self.header_timeout_s, self._header_deadline_passed
        )

    def _disarm_header_deadline(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _header_deadline_passed(self) -> None:
        self._header_timer = None
        if self.cycle is self._waiting_after and not self.transport.is_closing():
            self.logger.info("closing a connection that sent no complete request in time")
            self.transport.close()


class HeaderDeadlineProtocol(_HeaderDeadline, H11Protocol):  # type: ignore[misc]
    """h11 with the header deadline; h11 itself caps the header size."""


_TOO_LARGE = b"request headers too large"
_TOO_LARGE_RESPONSE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"content-length: " + str(len(_TOO_LARGE)).encode() + b"\r\n\r\n" + _TOO_LARGE
)


class FastHeaderDeadlineProtocol(_HeaderDeadline, HttpToolsProtocol):  # type: ignore[misc]
    """httptools (C parser, ~25% less server CPU per request than h11, bench/README.md) with
    the header deadline and the header-size cap that h11 enforces by itself: the request line
    and headers of one request may not exceed ``max_header_bytes``, whether they arrive
    complete or keep growing without an end (431, then the connection is closed)."""

    max_header_bytes = 64 * 1024
    _header_bytes = 0  # request line and headers of the current request so far

    def on_message_begin(self) -> None:
        self._header_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count_header_bytes(self, amount: int) -> None:
        self._header_bytes += amount
        if self._header_bytes > self.max_header_bytes:
            raise ValueError("request headers too large")  # the parser stops: 400, closed

    def data_received(self, data: bytes) -> None:
        waiting = self.cycle is getattr(self, "_waiting_after", self.cycle)
        super().data_received(data)
        # Headers still incomplete: count what arrived, so a header that never ends is cut off.
        if waiting and self.cycle is self._waiting_after and not self.transport.is_closing():
            self._pending_bytes = getattr(self, "_pending_bytes", 0) + len(data)
            if self._pending_bytes > self.max_header_bytes:
                self.transport.write(_TOO_LARGE_RESPONSE)
                self.transport.close()
        else:
            self._pending_bytes = 0


class WorkerProtocol(FastHeaderDeadlineProtocol if HTTPTOOLS else HeaderDeadlineProtocol):  # type: ignore[misc]
    """The protocol of ``memtrace serve --workers N``: uvicorn pickles its configuration to
    the worker processes, so the class is named by its import path and each worker sets the
    limits from its settings (:func:`configure_worker_protocol`)."""


WORKER_PROTOCOL = f"{__name__}:WorkerProtocol"


def configure_worker_protocol(settings: Settings) -> None:
    """Apply the server's header deadline and size cap in this worker process."""
    WorkerProtocol.header_timeout_s = settings.server.header_timeout_s
    WorkerProtocol.max_header_bytes = settings.server.max_header_bytes


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config`` that enforce the server's abuse limits."""
    server = settings.server
    protocol = type(
        "HeaderDeadlineProtocol",
        (FastHeaderDeadlineProtocol if HTTPTOOLS else HeaderDeadlineProtocol,),
        {"header_timeout_s": server.header_timeout_s, "max_header_bytes": server.max_header_bytes},
    )
    return {
        "http": protocol,
        "timeout_keep_alive": server.keepalive_timeout_s,
        "limit_concurrency": server.max_connections,
        "h11_max_incomplete_event_size": server.max_header_bytes,
    }


class DelayedExitServer(uvicorn.Server):
    """uvicorn's server, except that with ``server.shutdown_delay_s`` the first SIGTERM/SIGINT
    only marks the runtime draining (``/ready`` answers 503 while every request is still
    served) and starts uvicorn's graceful shutdown that long after: a load balancer's health
    check takes the replica out before its listener closes. A second signal stops it at once."""

    def __init__(self, config: uvicorn.Config, runtime: Runtime, delay_s: float) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.delay_s = delay_s
        self._exit_timer: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.delay_s <= 0 or not self.started or self._exit_timer is not None:
            if self._exit_timer is not None:
                self._exit_timer.cancel()
            super().handle_exit(sig, frame)
            return
        self.runtime.draining = True
        log.warning("draining: /ready answers 503; stopping in %g s", self.delay_s)
        self._exit_timer = threading.Timer(self.delay_s, super().handle_exit, (sig, frame))
        self._exit_timer.daemon = True
        self._exit_timer.start()
