"""Fixtures of the client SDK tests: an :class:`AsyncMemtrace` on the real app in process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest

from http_api.app import create_app
from memtrace.client import AsyncMemtrace, Memtrace
from memtrace.config import Settings
from memtrace.runtime import Runtime
from tests.helpers import create_org_key

T = TypeVar("T")

BASE = "http://localhost"


@pytest.fixture
def asgi(runtime: Runtime) -> httpx.ASGITransport:
    return httpx.ASGITransport(app=create_app(runtime, manage_runtime=False))


@pytest.fixture
async def aclient(
    asgi: httpx.ASGITransport, org_key: tuple[str, str]
) -> AsyncIterator[AsyncMemtrace]:
    """The async SDK client, authenticated as org "acme", through ASGITransport."""
    async with AsyncMemtrace(BASE, org_key[1], transport=asgi, backoff=0.01) as client:
        yield client


class LoopThread:
    """An event loop in a background thread, so sync code can drive the async app."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


class SyncASGITransport(httpx.BaseTransport):
    """httpx's ASGITransport for a sync client: each request runs on the app's loop thread."""

    def __init__(self, app: Any, loop: LoopThread) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.loop = loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def forward() -> tuple[int, httpx.Headers, bytes]:
            response = await self.inner.handle_async_request(request)
            return response.status_code, response.headers, await response.aread()

        status, headers, body = self.loop.run(forward())
        return httpx.Response(status, headers=headers, content=body, request=request)


@dataclass
class SyncApp:
    """The real app on a background loop: a transport for sync clients and org keys."""

    runtime: Runtime
    loop: LoopThread
    transport: SyncASGITransport
    key: str

    def new_key(self, permissions: str = "read,write") -> str:
        return self.loop.run(create_org_key(self.runtime, "other", permissions))[1]

    def client(self, key: str | None = None, **kwargs: Any) -> Memtrace:
        return Memtrace(BASE, key or self.key, transport=self.transport, backoff=0.01, **kwargs)


@pytest.fixture
def sync_app(settings: Settings) -> Iterator[SyncApp]:
    loop = LoopThread()
    runtime = Runtime(settings)
    loop.run(runtime.start())
    try:
        app = create_app(runtime, manage_runtime=False)
        _, key = loop.run(create_org_key(runtime, "acme"))
        yield SyncApp(runtime, loop, SyncASGITransport(app, loop), key)
    finally:
        loop.run(runtime.close())
        loop.stop()


@pytest.fixture
def sclient(sync_app: SyncApp) -> Iterator[Memtrace]:
    """The sync SDK client, authenticated as org "acme", on the real app."""
    with sync_app.client() as client:
        yield client
