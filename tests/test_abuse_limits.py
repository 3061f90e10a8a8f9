"""Abuse limits: per-key rate limiting, query window/offset caps, slow clients, header caps."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from http_api.app import create_app
from memtrace.auth.ratelimit import RateLimiter, caller_identity
from memtrace.config import load_settings
from memtrace.runtime import Runtime
from tests.helpers import ServerProcess, create_org_key, wait_until

MEM = "/api/v1/memories"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_at_rate_and_caps_at_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("k") == pytest.approx(0.5)  # one token needs 1/rate seconds
    assert limiter.acquire("other") == 0.0  # buckets are per caller
    clock.now += 0.5
    assert limiter.acquire("k") == 0.0
    clock.now += 3600  # a long idle period refills only up to the burst
    assert [limiter.acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("k") > 0


def test_bucket_table_is_bounded_and_disabled_limiter_allows_all() -> None:
    limiter = RateLimiter(1.0, 1, clock=FakeClock(), max_buckets=10)
    for i in range(100):
        limiter.acquire(f"caller{i}")
    assert len(limiter._buckets) == 10
    off = RateLimiter(0.0, 1)
    assert all(off.acquire("k") == 0.0 for _ in range(100))


def test_caller_identity_never_contains_the_key() -> None:
    key = "mtk_" + "A" * 43
    ident = caller_identity(key, "10.0.0.1")
    assert key not in ident and "A" * 10 not in ident
    assert caller_identity(None, "10.0.0.1") == "addr:10.0.0.1"


@pytest.fixture
async def limited(data_dir: Path) -> AsyncIterator[tuple[httpx.AsyncClient, str, str]]:
    settings = load_settings(
        None,
        {
            "storage.data_dir": data_dir,
            "limits.rate_per_s": 0.001,  # effectively no refill during the test
            "limits.rate_burst": 3,
        },
    )
    runtime = Runtime(settings)
    await runtime.start()
    try:
        _, key_a = await create_org_key(runtime)
        _, key_b = await create_org_key(runtime)
        transport = httpx.ASGITransport(app=create_app(runtime, manage_runtime=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield client, key_a, key_b
    finally:
        await runtime.close()


async def test_rate_limit_is_per_key_with_retry_after(
    limited: tuple[httpx.AsyncClient, str, str],
) -> None:
    client, key_a, key_b = limited
    for _ in range(3):
        assert (await client.get(MEM, headers={"x-api-key": key_a})).status_code == 200
    refused = await client.get(MEM, headers={"x-api-key": key_a})
    assert refused.status_code == 429
    assert refused.json()["error"].startswith("rate limit exceeded")
    assert int(refused.headers["retry-after"]) >= 1
    # The same key as a bearer token shares the bucket; another key has its own.
    bearer = await client.get(MEM, headers={"authorization": f"Bearer {key_a}"})
    assert bearer.status_code == 429
    assert (await client.get(MEM, headers={"x-api-key": key_b})).status_code == 200
    # Probes are never limited.
    for _ in range(10):
        assert (await client.get("/health")).status_code == 200
    # Requests without a key are limited by client address (they cannot exhaust a key's bucket).
    statuses = [(await client.get(MEM)).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


async def test_rate_limit_configurable_by_environment(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    monkeypatch.setenv("MEMTRACE_LIMITS_RATE_PER_S", "0")
    monkeypatch.setenv("MEMTRACE_LIMITS_RATE_BURST", "7")
    settings = load_settings(None, {"storage.data_dir": data_dir})
    assert settings.limits.rate_per_s == 0 and settings.limits.rate_burst == 7


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "5000d"}, "since"),
        ({"since": "1990-01-01T00:00:00", "until": "2010-01-01T00:00:00"}, "since"),
        ({"offset": 100_001}, "offset"),
    ],
)
async def test_query_window_and_offset_caps(
    api: httpx.AsyncClient, params: dict[str, object], field: str
) -> None:
    listed = await api.get(MEM, params=params)
    assert listed.status_code == 400 and listed.json()["error"].startswith(f"{field}:")
    searched = await api.post("/api/v1/search", json=params)
    assert searched.status_code == 400 and searched.json()["error"].startswith(f"{field}:")


async def test_windows_within_the_cap_are_accepted(api: httpx.AsyncClient) -> None:
    assert (await api.get(MEM, params={"since": "3000d"})).status_code == 200
    assert (await api.get(MEM, params={"offset": 100_000})).status_code == 200
    session = (await api.post("/api/v1/sessions", json={"agent_id": "a1"})).json()["id"]
    context = await api.post(f"/api/v1/sessions/{session}/context", json={"since": "9999w"})
    assert context.status_code == 400 and context.json()["error"].startswith("since:")


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    """One server with short deadlines for the module's tests: they only open connections
    that the server cuts off, and none writes anything."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("slow") / "data",
        env={
            "MEMTRACE_SERVER_BODY_TIMEOUT_S": "1",
            "MEMTRACE_SERVER_HEADER_TIMEOUT_S": "1",
            "MEMTRACE_SERVER_MAX_HEADER_BYTES": "4096",
        },
    ).start()
    yield proc  # type: ignore[misc]
    proc.stop()


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def test_trickling_body_is_cut_off_with_408(slow_server: ServerProcess) -> None:
    assert slow_server.admin_key
    with socket.create_connection(("127.0.0.1", slow_server.port), timeout=20) as sock:
        head = (
            f"POST {MEM} HTTP/1.1\r\nhost: localhost\r\nx-api-key: {slow_server.admin_key}\r\n"
            "content-type: application/json\r\ncontent-length: 100\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"agent_id": "a", ')  # ...and the rest never comes
        reply = _read_all(sock)  # the server answers and closes the connection
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert b'"error":"request body not received within 1 s"' in reply
    with httpx.Client(base_url=slow_server.url) as client:
        listed = client.get(MEM, headers={"x-api-key": slow_server.admin_key})
        assert listed.json()["count"] == 0  # nothing half-written


def test_connection_without_complete_headers_is_closed(slow_server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", slow_server.port), timeout=20) as idle:
        assert _read_all(idle) == b""  # never sent anything: closed by the header deadline
    with socket.create_connection(("127.0.0.1", slow_server.port), timeout=20) as trickle:
        trickle.sendall(b"GET /health HTTP/1.1\r\nhost: localhost\r\n")  # headers never finish
        assert _read_all(trickle) == b""
    # A keep-alive connection is also closed when its next request does not come in time.
    with socket.create_connection(("127.0.0.1", slow_server.port), timeout=20) as kept:
        kept.sendall(b"GET /health HTTP/1.1\r\nhost: localhost\r\n\r\n")
        assert _read_all(kept).startswith(b"HTTP/1.1 200 ")
    assert httpx.get(f"{slow_server.url}/health").status_code == 200


def test_oversized_headers_are_refused(slow_server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", slow_server.port), timeout=20) as sock:
        # Headers that keep growing past the cap without ending are refused before the deadline.
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: localhost\r\nx-big: " + b"a" * 8192)
        reply = _read_all(sock)
    assert reply.startswith(b"HTTP/1.1 4")
    assert httpx.get(f"{slow_server.url}/health").status_code == 200


def test_rate_limit_is_on_by_default(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    for name in ("MEMTRACE_LIMITS_RATE_PER_S", "MEMTRACE_LIMITS_ORG_RATE_PER_S"):
        monkeypatch.delenv(name, raising=False)  # the test env turns them off
    limits = load_settings(None, {"storage.data_dir": data_dir}).limits
    # A fleet of hundreds of agents on one key fits (docs/configuration.md, "Sizing").
    assert limits.rate_per_s == 1000 and limits.rate_burst == 2000
    assert limits.org_rate_per_s == 2000 and limits.org_rate_burst == 4000


@pytest.mark.slow
def test_rate_limit_on_a_real_server(tmp_path: Path) -> None:
    env = {"MEMTRACE_LIMITS_RATE_PER_S": "0.001", "MEMTRACE_LIMITS_RATE_BURST": "2"}
    server = ServerProcess(tmp_path / "data", env=env).start()
    try:
        assert server.admin_key
        with httpx.Client(base_url=server.url, headers={"x-api-key": server.admin_key}) as c:
            statuses = [c.get(MEM).status_code for _ in range(3)]
            assert statuses == [200, 200, 429]
            refused = c.get(MEM)
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
            assert refused.json()["error"].startswith("rate limit exceeded")
            assert c.get("/health").status_code == 200
        # The limiter is ASGI middleware in front of every mount: MCP shares the key's bucket.
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        mcp = httpx.post(
            f"{server.url}/mcp",
            json=ping,
            headers={
                "x-api-key": server.admin_key,
                "accept": "application/json, text/event-stream",
            },
        )
        assert mcp.status_code == 429 and "retry-after" in mcp.headers
    finally:
        server.stop()


@pytest.mark.slow
def test_connections_over_the_cap_get_503(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", env={"MEMTRACE_SERVER_MAX_CONNECTIONS": "2"})
    server.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=20),
            socket.create_connection(("127.0.0.1", server.port), timeout=20),
        ):
            wait_until(lambda: httpx.get(f"{server.url}/health").status_code == 503)
        wait_until(lambda: httpx.get(f"{server.url}/health").status_code == 200)
    finally:
        server.stop()
