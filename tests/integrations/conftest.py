"""Fixtures of the OpenAI Agents SDK tests: tracing off, an :class:`AsyncMemtrace` on the real
app in process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from agents import set_tracing_disabled

from http_api.app import create_app
from memtrace import AsyncMemtrace
from memtrace.runtime import Runtime
from tests.client.conftest import BASE


@pytest.fixture(autouse=True)
def _no_tracing() -> Iterator[None]:
    set_tracing_disabled(True)  # tracing would try to export to the OpenAI API
    yield
    set_tracing_disabled(False)


@pytest.fixture
async def mt(runtime: Runtime, org_key: tuple[str, str]) -> AsyncIterator[AsyncMemtrace]:
    asgi = httpx.ASGITransport(app=create_app(runtime, manage_runtime=False))
    async with AsyncMemtrace(BASE, org_key[1], transport=asgi, backoff=0.01) as client:
        yield client
