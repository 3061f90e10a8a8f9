"""Abuse limits as pure ASGI middleware, so they cover every mount (REST now, /mcp and /sse
later): per-caller rate limiting and a deadline for slow request bodies."""

from __future__ import annotations

import asyncio

import orjson
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memtrace.auth.keys import presented_key
from memtrace.auth.ratelimit import RateLimiter, SharedRateLimiter, caller_identity
from memtrace.config import Settings
from memtrace.domain.errors import InvalidInput, MemtraceError, RateLimited, RequestTimeout

# Probes and scrapes stay reachable whatever a caller does.
UNLIMITED_PATHS = frozenset({"/health", "/ready", "/metrics"})
_CLOSE = (b"connection", b"close")


async def send_error(send: Send, error: MemtraceError, *, close: bool = False) -> None:
    """Answer with the error's status, headers and ``{"error": …}`` body; ``close`` hangs up
    afterwards (a body that was not read must not be drained on a kept-alive connection)."""
    body = orjson.dumps(error.to_body())
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in error.headers().items()),
        *([_CLOSE] if close else []),
    ]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RateLimitMiddleware:
    """429 with ``Retry-After`` once a caller's token bucket is empty."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter | SharedRateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.limiter.enabled
            or scope.get("path") in UNLIMITED_PATHS
        ):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        refused: InvalidInput | None = None
        try:
            key = presented_key(scope["headers"])  # the one the authenticator reads
        except InvalidInput as exc:  # ambiguous: charged to the address, then refused
            key, refused = None, exc
        wait = self.limiter.acquire(caller_identity(key, client[0] if client else None))
        if wait > 0:
            error = RateLimited(
                retry_after=wait,
                hint="limits.rate_per_s and limits.rate_burst set the allowance per key",
            )
            await send_error(send, error)
            return
        if refused is not None:
            await send_error(send, refused, close=True)
            return
        await self.app(scope, receive, send)


class BodyTimeoutMiddleware:
    """Cuts off a request whose body trickles in: the whole body must arrive within
    ``timeout_s`` of the first read, else 408 and the connection is closed."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline: float | None = None
        body_done = False
        response_started = False
        timed_out = False

        async def timed_receive() -> Message:
            nonlocal deadline, body_done, timed_out
            if body_done:  # later reads only wait for a disconnect: no deadline
                return await receive()
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.timeout_s
            try:
                # (asyncio.timeout_at, not wait_for: no task per read, ~10 us less a request)
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                timed_out = True
                raise RequestTimeout(
                    f"request body not received within {self.timeout_s:g} s"
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def closing_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                if timed_out:  # the rest of the body may still be on its way: hang up
                    message = {**message, "headers": [*message["headers"], _CLOSE]}
            await send(message)

        try:
            await self.app(scope, timed_receive, closing_send)
        except RequestTimeout as exc:
            if response_started:
                raise
            await send_error(send, exc, close=True)


def install_abuse_limits(
    app: Starlette, settings: Settings, limiter: RateLimiter | SharedRateLimiter | None = None
) -> None:
    """Add the abuse-limit middleware (outermost, so it also guards later mounts).

    ``limiter``: the per-key limiter (shared by the workers of a multi-process server); by
    default one of this process from ``limits.rate_per_s`` and ``limits.rate_burst``."""
    app.add_middleware(BodyTimeoutMiddleware, timeout_s=settings.server.body_timeout_s)
    limits = settings.limits
    limiter = limiter or RateLimiter(limits.rate_per_s, limits.rate_burst)
    app.add_middleware(RateLimitMiddleware, limiter=limiter)
