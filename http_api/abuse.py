"""Abuse limits as pure ASGI middleware, so they cover every mount (REST, /mcp and /sse):
rate limiting per key and per org, and a deadline for slow request bodies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memtrace.auth.keys import presented_key
from memtrace.auth.ratelimit import RateLimiter, SharedRateLimiter, caller_identity
from memtrace.config import Settings
from memtrace.domain.errors import InvalidInput, MemtraceError, RateLimited, RequestTimeout
from memtrace.telemetry.metrics import Metrics

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


_HINTS = {
    "key": "limits.rate_per_s and limits.rate_burst set the allowance per key",
    "org": "limits.org_rate_per_s and limits.org_rate_burst set the allowance per org "
    "(all its keys together)",
}


class RateLimitMiddleware:
    """429 with ``Retry-After`` once the caller's key bucket, or its org's, is empty.

    The org of a key is known once this process has verified the key (``org_of``); a key's
    first request is limited by its key bucket alone.
    """

    def __init__(
        self,
        app: ASGIApp,
        limiter: RateLimiter | SharedRateLimiter,
        org_limiter: RateLimiter | SharedRateLimiter | None = None,
        org_of: Callable[[str | None], str | None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.org_limiter = org_limiter
        self.org_of = org_of
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        refused: InvalidInput | None = None
        try:
            key = presented_key(scope["headers"])  # the one the authenticator reads
        except InvalidInput as exc:  # ambiguous: charged to the address, then refused
            key, refused = None, exc
        wait, scope_name = 0.0, "key"
        if self.limiter.enabled:
            wait = self.limiter.acquire(caller_identity(key, client[0] if client else None))
        if not wait and self.org_limiter is not None and self.org_limiter.enabled:
            org = self.org_of(key) if self.org_of is not None else None
            if org is not None:
                wait, scope_name = self.org_limiter.acquire("org:" + org), "org"
        if wait > 0:
            error = RateLimited(retry_after=wait, hint=_HINTS[scope_name])
            if self.metrics is not None:
                self.metrics.rate_limited.labels(scope_name).inc()
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
    app: Starlette,
    settings: Settings,
    *,
    limiter: RateLimiter | SharedRateLimiter | None = None,
    org_limiter: RateLimiter | SharedRateLimiter | None = None,
    org_of: Callable[[str | None], str | None] | None = None,
    metrics: Metrics | None = None,
) -> None:
    """Add the abuse-limit middleware (outermost, so it also guards later mounts).

    Args:
        limiter, org_limiter: the per-key and per-org limiters (the runtime's: shared by the
            workers of a multi-process server, and in cluster mode enforcing this replica's
            share); by default ones of this process from ``limits.rate_*`` and
            ``limits.org_rate_*``.
        org_of: the org of an already verified key (``Authenticator.known_org``); without it
            only the per-key limit applies.
    """
    app.add_middleware(BodyTimeoutMiddleware, timeout_s=settings.server.body_timeout_s)
    limits = settings.limits
    app.add_middleware(
        RateLimitMiddleware,
        limiter=limiter or RateLimiter(limits.rate_per_s, limits.rate_burst),
        org_limiter=org_limiter or RateLimiter(limits.org_rate_per_s, limits.org_rate_burst),
        org_of=org_of,
        metrics=metrics,
    )
