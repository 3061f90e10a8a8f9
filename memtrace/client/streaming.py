"""The live stream (``GET /api/v1/stream``) as an iterator and an async iterator that resume.

Each reconnect sends the id of the last event received as ``Last-Event-ID``, so the server
continues exactly after it: no memory is lost or repeated across a reconnect (docs/feed.md).
The server ends a stream after ``limits.stream_idle_s`` without an event; the iterators then
reconnect at once. A dropped connection is retried ``max_retries`` times in a row (with the
server's ``retry:`` pause); an error answer (401, 403, 400, 429 past the stream caps) raises.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Generic, TypeVar

import httpx

from memtrace.client import _endpoints as ep
from memtrace.client._base import Call, decode, wrap_transport_error
from memtrace.client.models import StreamParams

C = TypeVar("C", httpx.Client, httpx.AsyncClient)
DEFAULT_READ_TIMEOUT = 60.0  # > the server's heartbeat (15 s by default)


def _timeout(client: httpx.Client | httpx.AsyncClient, read_timeout: float) -> httpx.Timeout:
    return httpx.Timeout(client.timeout.connect, read=read_timeout, write=None, pool=None)


class _Resuming(Generic[C]):
    """What both iterators keep: the request, where to resume, the retry policy."""

    def __init__(
        self,
        client: C,
        params: StreamParams,
        *,
        last_event_id: str | None = None,
        max_retries: int = 5,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        self._client: C = client
        self.params = params
        self.last_event_id = last_event_id
        self.max_retries = max_retries
        self.read_timeout = read_timeout
        self.connections = 0  # streams opened (the first and each reconnect)
        self._closed = False

    def close(self) -> None:
        """Stop after the current event (the connection closes with the iterator)."""
        self._closed = True

    def _request(self) -> tuple[Call, dict[str, Any]]:
        """The next connection's request: it resumes after ``last_event_id``."""
        call = ep.stream_request(self.params, self.last_event_id)
        options = {
            "params": call.params,
            "headers": dict(call.headers),
            "timeout": _timeout(self._client, self.read_timeout),
        }
        return call, options


class MemoryStream(_Resuming[httpx.Client]):
    """Iterate for :class:`~memtrace.client._endpoints.StreamEvent` s; ``last_event_id`` is
    where a new stream would resume. Ends only when closed (or on an error answer)."""

    def __iter__(self) -> Iterator[ep.StreamEvent]:
        failures = 0
        while not self._closed:
            parser = ep.SseParser()
            call, options = self._request()
            try:
                with self._client.stream("GET", call.path, **options) as response:
                    if response.status_code >= 400:
                        response.read()
                        decode(response, call)
                    self.connections += 1
                    failures = 0
                    for line in response.iter_lines():
                        for event in parser.feed(line):
                            self.last_event_id = event.id
                            yield event
                            if self._closed:
                                return
                        if parser.last_id:  # (the open event: where this stream began)
                            self.last_event_id = parser.last_id
            except httpx.TransportError as exc:
                failures += 1
                if failures > self.max_retries:
                    raise wrap_transport_error(exc) from exc
                time.sleep(parser.retry_s)


class AsyncMemoryStream(_Resuming[httpx.AsyncClient]):
    """The async twin of :class:`MemoryStream` (``async for event in stream``)."""

    async def __aiter__(self) -> AsyncIterator[ep.StreamEvent]:
        failures = 0
        while not self._closed:
            parser = ep.SseParser()
            call, options = self._request()
            try:
                async with self._client.stream("GET", call.path, **options) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        decode(response, call)
                    self.connections += 1
                    failures = 0
                    async for line in response.aiter_lines():
                        for event in parser.feed(line):
                            self.last_event_id = event.id
                            yield event
                            if self._closed:
                                return
                        if parser.last_id:  # (the open event: where this stream began)
                            self.last_event_id = parser.last_id
            except httpx.TransportError as exc:
                failures += 1
                if failures > self.max_retries:
                    raise wrap_transport_error(exc) from exc
                await asyncio.sleep(parser.retry_s)
