"""Retries happen only where they should: counted with a fault-injecting transport in front of
the real app (sync and async), plus transport errors wrapped in the exception tree."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import httpx
import pytest
from tenacity import RetryCallState, Retrying

from memtrace import (
    AsyncMemtrace,
    InvalidInput,
    ListOptions,
    Memtrace,
    MemtraceConnectionError,
    NotFoundError,
    RateLimited,
    StorageUnavailable,
)
from memtrace.client._base import Call, _Wait, is_retryable
from tests.client.conftest import BASE, SyncApp
from tests.helpers import free_port

Fault = str | int  # "connect", "read" or an HTTP status to answer instead of the app


def _fault_response(fault: Fault, request: httpx.Request) -> httpx.Response:
    if fault == "connect":
        raise httpx.ConnectError("connection refused", request=request)
    if fault == "read":
        raise httpx.ReadError("connection reset", request=request)
    assert isinstance(fault, int)
    headers = {"Retry-After": "0"} if fault == 429 else {}
    return httpx.Response(fault, json={"error": f"injected {fault}"}, headers=headers)


class FaultySync(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport, faults: list[Fault]) -> None:
        self.inner, self.faults, self.requests = inner, list(faults), 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.faults:
            return _fault_response(self.faults.pop(0), request)
        return self.inner.handle_request(request)


class FaultyAsync(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, faults: list[Fault]) -> None:
        self.inner, self.faults, self.requests = inner, list(faults), 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.faults:
            return _fault_response(self.faults.pop(0), request)
        return await self.inner.handle_async_request(request)


@pytest.fixture
def faulty_sync(sync_app: SyncApp) -> Iterator[tuple[Memtrace, FaultySync]]:
    transport = FaultySync(sync_app.transport, [])
    with Memtrace(BASE, sync_app.key, transport=transport, backoff=0.001) as client:
        yield client, transport


RETRIED = [
    (["connect", "connect"], 3),
    ([503, 503], 3),
    ([429], 2),
    (["read", 503, "connect"], 4),
]


@pytest.mark.parametrize(("faults", "requests"), RETRIED)
def test_sync_retries_transient_failures(
    faulty_sync: tuple[Memtrace, FaultySync], faults: list[Fault], requests: int
) -> None:
    client, transport = faulty_sync
    transport.faults = list(faults)
    assert client.list_memories(ListOptions(agent_id="a1")).count == 0
    assert transport.requests == requests


@pytest.mark.parametrize(("faults", "requests"), RETRIED)
async def test_async_retries_transient_failures(
    asgi: httpx.ASGITransport, org_key: tuple[str, str], faults: list[Fault], requests: int
) -> None:
    transport = FaultyAsync(asgi, faults)
    async with AsyncMemtrace(BASE, org_key[1], transport=transport, backoff=0.001) as client:
        assert (await client.list_agents()).count == 0
    assert transport.requests == requests


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 500])
def test_never_retries_other_errors(faulty_sync: tuple[Memtrace, FaultySync], status: int) -> None:
    client, transport = faulty_sync
    transport.faults = [status]
    with pytest.raises(Exception) as info:
        client.list_agents()
    assert getattr(info.value, "status_code", None) == status
    assert transport.requests == 1


def test_real_4xx_is_not_retried(faulty_sync: tuple[Memtrace, FaultySync]) -> None:
    client, transport = faulty_sync
    with pytest.raises(InvalidInput):
        client.recall("a1", since="yesterday")
    with pytest.raises(NotFoundError):
        client.get_session("sess_nope")
    assert transport.requests == 2


def test_gives_up_after_max_retries(sync_app: SyncApp) -> None:
    transport = FaultySync(sync_app.transport, [503] * 10)
    client = Memtrace(BASE, sync_app.key, transport=transport, backoff=0.001, max_retries=2)
    with client, pytest.raises(StorageUnavailable) as info:
        client.list_agents()
    assert info.value.message == "injected 503"
    assert transport.requests == 3


async def test_write_is_not_resent_once_it_may_have_arrived(
    asgi: httpx.ASGITransport, org_key: tuple[str, str]
) -> None:
    transport = FaultyAsync(asgi, ["read"])
    async with AsyncMemtrace(BASE, org_key[1], transport=transport, backoff=0.001) as client:
        with pytest.raises(MemtraceConnectionError) as info:
            await client.remember("a1", "maybe stored")
        assert isinstance(info.value.__cause__, httpx.ReadError)
        assert transport.requests == 1
        # Refused before sending: safe to resend a write.
        transport.faults = ["connect"]
        memory = await client.remember("a1", "stored once")
        assert transport.requests == 3
        assert (await client.get_memory(memory.id)).content == "stored once"


def test_connection_refused_is_wrapped() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = Memtrace(url, "mtk_x", max_retries=1, backoff=0.001)
    with client, pytest.raises(MemtraceConnectionError) as info:
        client.list_agents()
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert "could not reach" in info.value.message


def _state_after(exc: BaseException, attempt: int = 1) -> RetryCallState:
    state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    try:
        raise exc
    except type(exc):
        state.set_exception(sys.exc_info())  # type: ignore[arg-type]
    return state


def test_backoff_is_jittered_and_respects_retry_after() -> None:
    wait = _Wait(backoff=0.01)
    pauses = {wait(_state_after(StorageUnavailable(), 3)) for _ in range(20)}
    assert all(0 <= p <= 0.04 for p in pauses)
    assert len(pauses) > 1  # jitter
    assert wait(_state_after(RateLimited(retry_after=7.0))) >= 7.0
    assert wait(_state_after(RateLimited(retry_after=3600.0))) <= 30.0  # capped


def test_retry_policy() -> None:
    write = Call("POST", "/api/v1/memories", idempotent=False)
    read = Call("GET", "/api/v1/memories")
    refused = MemtraceConnectionError()
    refused.__cause__ = httpx.ConnectError("refused")
    reset = MemtraceConnectionError()
    reset.__cause__ = httpx.ReadError("reset")
    assert is_retryable(refused, write) and is_retryable(refused, read)
    assert is_retryable(reset, read) and not is_retryable(reset, write)
    assert is_retryable(RateLimited(), write) and is_retryable(StorageUnavailable(), write)
    assert not is_retryable(InvalidInput("x: bad"), read)
