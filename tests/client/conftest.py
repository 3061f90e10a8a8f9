"""Fixtures of the client SDK tests: an :class:`AsyncMemtrace` on the real app in process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from http_api.app import create_app
from memtrace.client import AsyncMemtrace
from memtrace.runtime import Runtime

BASE = "http://memtrace.test"


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
