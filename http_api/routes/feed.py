"""The feed ("what's new since I last looked") and the live stream (docs/feed.md)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from http_api.deps import JsonRoute, ReadFeed, get_principal, get_runtime, json_response
from memtrace.auth.keys import Principal
from memtrace.auth.streams import STREAM_RETRY_S
from memtrace.domain.errors import MemtraceError, RateLimited
from memtrace.domain.models import (
    FeedConfirm,
    FeedCursor,
    FeedCursorParams,
    FeedPage,
    FeedParams,
    StreamParams,
)
from memtrace.domain.positions import encode_position
from memtrace.service_feed import ChangeStream

router = APIRouter(prefix="/api/v1", tags=["feed"], route_class=JsonRoute)


@router.get("/feed", response_model=FeedPage, summary="Memories other agents wrote since you read")
async def read_feed(feed: ReadFeed, params: Annotated[FeedParams, Query()]) -> Response:
    return json_response((await feed.read(params)).to_wire())


@router.post("/feed/confirm", response_model=FeedCursor, summary="Move a reader's feed cursor")
async def confirm_feed(feed: ReadFeed, body: FeedConfirm) -> Response:
    return json_response((await feed.confirm(body)).to_wire())


@router.get("/feed/cursor", response_model=FeedCursor, summary="A reader's feed cursor")
async def feed_cursor(feed: ReadFeed, params: Annotated[FeedCursorParams, Query()]) -> Response:
    return json_response((await feed.cursor(params.reader)).to_wire())


def _event(position: int, memory: bytes) -> bytes:
    return (
        b"id: " + encode_position(position).encode() + b"\nevent: memory\ndata: " + memory + b"\n\n"
    )


async def _sse(
    stream: ChangeStream, heartbeat_s: float, idle_s: float
) -> AsyncGenerator[bytes, None]:
    """The stream as Server-Sent Events: one ``memory`` event per memory, ``: ping`` after
    ``heartbeat_s`` without one; ends after ``idle_s`` without one (the client reconnects with
    ``Last-Event-ID``, losing nothing)."""
    # The start position as the first event's id: a client that reconnects before any memory
    # came still resumes from where this stream began (nothing written meanwhile is lost).
    start = encode_position(stream.start).encode()
    yield b"retry: 2000\nid: " + start + b"\nevent: open\ndata: {}\n\n"
    loop = asyncio.get_running_loop()
    last_event = loop.time()
    # an empty batch comes after min(heartbeat_s, idle_s) without a memory
    batches = stream.batches(min(heartbeat_s, idle_s))
    try:
        async for batch in batches:
            if batch:
                last_event = loop.time()
                yield b"".join(_event(p, orjson.dumps(r.to_wire())) for p, r in batch)
            elif loop.time() - last_event >= idle_s:
                return
            else:
                yield b": ping\n\n"
    except MemtraceError as exc:  # (the store went away: the client reconnects and resumes)
        yield b": error " + exc.message.replace("\n", " ").encode() + b"\n\n"
    finally:
        await batches.aclose()  # type: ignore[attr-defined]


class EventStreamResponse(Response):
    """``text/event-stream`` sent as it comes; ends when the events end or the client leaves,
    and then calls ``on_close`` (which releases the stream's slot under the caps)."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncGenerator[bytes, None], on_close: Callable[[], None]) -> None:
        self.status_code = 200
        self.background = None
        self.body = b""
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),  # (proxies: do not buffer)
        ]
        self._events = events
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def pump() -> None:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for chunk in self._events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def left() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        tasks = [asyncio.ensure_future(pump()), asyncio.ensure_future(left())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = None if task.cancelled() else task.exception()
                if error is not None and not isinstance(error, OSError):  # (OSError: it left)
                    raise error
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._events.aclose()
            self._on_close()


# Each Server-Sent Event, as OpenAPI tools read one (docs/feed.md): an ``open`` event (its id is
# where the stream starts), then ``memory`` events (data: the memory's JSON, id: its position).
_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["open", "memory"]},
        "id": {"type": "string"},
        "data": {"type": "string", "description": "JSON: {} for open, the Memory for memory"},
        "retry": {"type": "integer"},
    },
    "required": ["event", "id", "data"],
}
_EVENTS = "Server-Sent Events: `open`, then one `memory` per new memory; `: ping` comments"


@router.get(
    "/stream",
    status_code=200,
    summary="Live stream of new memories (Server-Sent Events)",
    response_class=EventStreamResponse,
    responses={200: {"content": {"text/event-stream": {"schema": _EVENT}}, "description": _EVENTS}},
)
async def stream(
    request: Request,
    principal: Annotated[Principal, Depends(get_principal)],
    params: Annotated[StreamParams, Query()],
) -> Response:
    principal.require("read")
    runtime = get_runtime(request)
    feed = await runtime.feed(principal.org_id)
    opened = await feed.open_stream(params, request.headers.get("last-event-id"))
    refused = runtime.streams.open(principal)
    if refused is not None:
        raise RateLimited(f"too many open streams: {refused}", retry_after=STREAM_RETRY_S)
    runtime.metrics.open_streams.set(runtime.streams.open_now)

    def closed() -> None:
        runtime.streams.close(principal)
        runtime.metrics.open_streams.set(runtime.streams.open_now)

    limits = runtime.settings.limits
    return EventStreamResponse(
        _sse(opened, limits.stream_heartbeat_s, limits.stream_idle_s), closed
    )
