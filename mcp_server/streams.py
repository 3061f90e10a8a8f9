"""Limits on long-lived MCP streams, so no key or org can hold the server's connections.

Legacy SSE (``GET /sse``) keeps one response open per client session. Open streams are capped
by the runtime's :class:`~memtrace.auth.streams.StreamCounts`, shared with the REST live feed
(``GET /api/v1/stream``): per API key, per org and in all; past a cap the answer is 429 with
``Retry-After``. A stream that sends no message for ``limits.stream_idle_s`` is closed (its
keep-alive pings do not count): an abandoned client does not hold a slot forever.
Streamable HTTP runs stateless, so ``GET /mcp`` (a standalone stream for server-initiated
messages, which a stateless server never sends) answers 405.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memtrace.auth.keys import presented_key
from memtrace.auth.streams import STREAM_RETRY_S, StreamCounts
from memtrace.domain.errors import MemtraceError, RateLimited
from memtrace.runtime import Runtime

__all__ = ["STREAM_RETRY_S", "StreamCounts", "limit_streams"]


async def _refuse(send: Send, scope: Scope, receive: Receive, error: MemtraceError) -> None:
    response = JSONResponse(error.to_body(), error.status_code, headers=error.headers())
    await response(scope, receive, send)


class StreamGate:
    """``GET /sse`` under the stream caps and the idle lifetime."""

    def __init__(self, app: ASGIApp, runtime: Runtime, counts: StreamCounts) -> None:
        self.app = app
        self.runtime = runtime
        self.counts = counts
        self.idle_s = runtime.settings.limits.stream_idle_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        try:  # (the key gate in front has verified the key: this is a cache hit)
            principal = await self.runtime.authenticate(presented_key(scope["headers"]))
        except MemtraceError as exc:
            await _refuse(send, scope, receive, exc)
            return
        refused = self.counts.open(principal)
        if refused is not None:
            error = RateLimited(f"too many open streams: {refused}", retry_after=STREAM_RETRY_S)
            await _refuse(send, scope, receive, error)
            return
        metrics = self.runtime.metrics.open_streams
        metrics.set(self.counts.open_now)
        try:
            await self._serve(scope, receive, send)
        finally:
            self.counts.close(principal)
            metrics.set(self.counts.open_now)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the stream; once it has sent no message for ``idle_s``, tell it the client left
        (it then ends by itself) and finish the response."""
        loop = asyncio.get_running_loop()
        last_message = loop.time()
        idle = asyncio.Event()
        state = {"body_read": False, "started": False, "finished": False, "again": False}

        timers: list[asyncio.TimerHandle] = []

        def check_idle() -> None:
            due = last_message + self.idle_s
            if loop.time() >= due:
                idle.set()
            else:
                timers[0] = loop.call_at(due, check_idle)

        timers.append(loop.call_at(last_message + self.idle_s, check_idle))

        async def tracked_send(message: Message) -> None:
            nonlocal last_message
            if message["type"] == "http.response.start":
                if state["started"]:
                    # The SDK's endpoint returns a response of its own once its stream has
                    # ended; the stream was the response: drop the second one.
                    state["again"] = True
                    return
                state["started"] = True
            elif state["again"]:
                return
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                if body and not body.startswith(b":"):  # ": ping" comments keep nothing alive
                    last_message = loop.time()
                state["finished"] = not message.get("more_body", False)
            await send(message)

        async def idle_receive() -> Message:
            if not state["body_read"]:
                message = await receive()
                state["body_read"] = message["type"] != "http.request" or not message.get(
                    "more_body", False
                )
                return message
            return await _first(receive(), idle)

        try:
            await self.app(scope, idle_receive, tracked_send)
            if state["started"] and not state["finished"]:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            timers[0].cancel()


async def _first(message: Any, idle: asyncio.Event) -> Message:
    """The next ASGI message, or a disconnect once the stream has been idle too long."""
    received = asyncio.ensure_future(message)
    expired = asyncio.ensure_future(idle.wait())
    done, _ = await asyncio.wait({received, expired}, return_when=asyncio.FIRST_COMPLETED)
    if received in done:
        expired.cancel()
        result: Message = received.result()
        return result
    received.cancel()
    return {"type": "http.disconnect"}


class NoStandaloneStream:
    """``GET /mcp`` is 405 on a stateless server (MCP clients then only POST)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            body = {
                "error": "GET /mcp: this server is stateless and opens no stream; "
                "POST JSON-RPC messages to /mcp"
            }
            await JSONResponse(body, 405, headers={"allow": "POST"})(scope, receive, send)
            return
        await self.app(scope, receive, send)


def limit_streams(
    routes: Iterable[BaseRoute], runtime: Runtime, *, mcp_path: str, sse_path: str
) -> list[BaseRoute]:
    """The MCP routes with the stream caps on ``GET sse_path`` and 405 on ``GET mcp_path``."""
    counts = runtime.streams
    wrapped: list[BaseRoute] = []
    for route in routes:
        if isinstance(route, Route) and route.path == sse_path:
            route = Route(route.path, StreamGate(route.app, runtime, counts), methods=route.methods)
        elif isinstance(route, Route) and route.path == mcp_path:
            route = Route(route.path, NoStandaloneStream(route.app), methods=route.methods)
        wrapped.append(route)
    return wrapped
