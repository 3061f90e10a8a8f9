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


async def test_time_unit_guessing_is_arcs(arc: tuple[ArcEmulator, httpx.AsyncClient]) -> None:
    """The first value decides the unit of the whole column, compared signed, and products
    wrap around like Go's int64 (docs/arc.md): what memtrace's batches are built against."""
    emulator, client = arc
    day_us = 86_400_000_000
    assert await write(client, {"time": [day_us, 2 * day_us], "n": [1, 2]}) == 204  # read as ms
    assert await write(client, {"time": [-5, 7], "n": [3, 4]}) == 204  # negative: seconds
    now_us = 1_800_000_000_000_000
    assert await write(client, {"time": [5, now_us], "n": [5, 6]}) == 204  # times 1e6 wraps
    emulator.flush()
    got = dict(emulator.sql("db", "SELECT n, epoch_us(time) FROM events"))
    assert got[1] == day_us * 1000 and got[2] == 2 * day_us * 1000
    assert got[3] == -5_000_000 and got[4] == 7_000_000
    assert got[6] == (now_us * 1_000_000 + 2**63) % 2**64 - 2**63


async def test_lose_buffer_is_a_crash_before_the_flush(
    arc: tuple[ArcEmulator, httpx.AsyncClient],
) -> None:
    emulator, client = arc
    emulator.flush_delay_s = 0.0  # a buffer already due is flushed, hence durable
    assert await write(client, {"time": [1_800_000_000], "n": [1]}) == 204
    emulator.flush_delay_s = 3600.0
    assert await write(client, {"time": [1_800_000_001], "n": [2]}) == 204
    assert emulator.buffered() == 1
    control = await client.post("/_emulator/control", json={"lose_buffer": True})
    assert control.status_code == 200 and control.json()["lost"] == 1
    assert emulator.buffered() == 0 and emulator.lost == 1
    assert emulator.sql("db", "SELECT n FROM events") == [(1,)]
    denied = await client.post(
        "/_emulator/control", json={"fault": "503"}, headers={"x-api-key": "wrong"}
    )
    assert denied.status_code == 401 and emulator.fault is None
    refuse = await client.post("/_emulator/control", json={"refuse_content": "bad"})
    assert refuse.json()["refuse_content"] == "bad"
    body = {"time": [1_800_000_002, 1_800_000_003], "content": ["ok", "a bad row"]}
    assert await write(client, body) == 400


async def test_control_refuses_bad_switches(arc: tuple[ArcEmulator, httpx.AsyncClient]) -> None:
    emulator, client = arc
    for body in ({"fault": "418"}, {"flush_delay_ms": "soon"}, {"refuse_content": 3}, [1]):
        assert (await client.post("/_emulator/control", json=body)).status_code == 400, body
    assert emulator.fault is None and emulator.refuse_content is None
