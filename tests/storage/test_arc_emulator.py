"""The emulator behaves like Arc where memtrace depends on it (docs/arc.md), in process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import msgpack
import pytest

from memtrace.testing.arc_emulator import TEST_TOKEN, ArcEmulator


@pytest.fixture
async def arc() -> AsyncIterator[tuple[ArcEmulator, httpx.AsyncClient]]:
    emulator = ArcEmulator(flush_delay_s=3600)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emulator.app),
        base_url="http://arc",
        headers={"x-api-key": TEST_TOKEN, "x-arc-database": "db"},
    ) as client:
        yield emulator, client


async def write(client: httpx.AsyncClient, columns: dict[str, list[object]]) -> int:
    body = msgpack.packb({"m": "events", "columns": columns})
    return (await client.post("/api/v1/write/msgpack", content=body)).status_code


async def query(client: httpx.AsyncClient, sql: str) -> httpx.Response:
    return await client.post("/api/v1/query", json={"sql": sql})


async def test_write_buffer_flush_and_envelope(arc: tuple[ArcEmulator, httpx.AsyncClient]) -> None:
    emulator, client = arc
    # seconds are recognised by magnitude; the int-first column truncates a later float
    assert await write(client, {"time": [1_800_000_000, 1_800_000_001], "n": [1, 2.7]}) == 204
    empty = (await query(client, "SELECT * FROM events")).json()
    assert empty["success"] and empty["columns"] == [] and empty["data"] == []
    flushed = await client.post("/api/v1/write/line-protocol/flush")
    assert flushed.status_code == 200 and emulator.buffered() == 0
    body = (await query(client, "SELECT time, n FROM events ORDER BY time")).json()
    assert body["columns"] == ["time", "n"] and body["row_count"] == 2
    assert body["data"] == [["2027-01-15T08:00:00Z", 1], ["2027-01-15T08:00:01Z", 2]]


async def test_statement_rules_and_errors(arc: tuple[ArcEmulator, httpx.AsyncClient]) -> None:
    _, client = arc
    for sql in (
        "DROP TABLE events",
        "SELECT 1; SELECT 2",
        "SELECT * FROM db.events",
        "SELECT * FROM read_parquet('x')",
        "SELECT " + "1+" * 6000 + "1",
    ):
        assert (await query(client, sql)).status_code == 400, sql
    assert (await query(client, "SELECT 'DROP TABLE; x' AS a")).status_code == 200
    broken = await query(client, "SELECT nope(")
    assert broken.status_code == 500 and broken.json()["success"] is False


async def test_auth_and_faults(arc: tuple[ArcEmulator, httpx.AsyncClient]) -> None:
    emulator, client = arc
    denied = await client.post(
        "/api/v1/query", json={"sql": "SELECT 1"}, headers={"x-api-key": "wrong"}
    )
    assert denied.status_code == 401
    bearer = await client.post(
        "/api/v1/query", json={"sql": "SELECT 1"}, headers={"Authorization": f"Bearer {TEST_TOKEN}"}
    )
    assert bearer.status_code == 200
    emulator.fault = "503"
    assert (await query(client, "SELECT 1")).status_code == 503
    assert (await client.get("/health")).status_code == 503
    emulator.fault = None
    assert (await client.get("/health")).status_code == 200
