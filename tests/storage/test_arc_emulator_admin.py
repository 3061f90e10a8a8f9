"""The emulator's delete and retention APIs behave like Arc's (docs/arc.md), in process, with
its Parquet files on disk."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgpack
import pytest

from memtrace.testing.arc_emulator import TEST_TOKEN, ArcEmulator

HOUR_S = 3600


@pytest.fixture
async def arc(tmp_path: Path) -> AsyncIterator[tuple[ArcEmulator, httpx.AsyncClient]]:
    emulator = ArcEmulator(data_dir=tmp_path / "arc")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emulator.app),
        base_url="http://arc",
        headers={"x-api-key": TEST_TOKEN, "x-arc-database": "db"},
    ) as client:
        yield emulator, client


async def write(client: httpx.AsyncClient, times: list[int], texts: list[str]) -> None:
    body = msgpack.packb({"m": "events", "columns": {"time": times, "text": texts}})
    assert (await client.post("/api/v1/write/msgpack", content=body)).status_code == 204


def delete(where: str, **extra: object) -> dict[str, object]:
    return {"database": "db", "measurement": "events", "where": where, **extra}


def files(emulator: ArcEmulator) -> list[Path]:
    assert emulator.data_dir is not None
    return sorted(emulator.data_dir.rglob("*.parquet"))


async def test_delete_is_off_by_default_and_checks_its_where(
    arc: tuple[ArcEmulator, httpx.AsyncClient],
) -> None:
    emulator, client = arc
    await write(client, [1_800_000_000, 1_800_000_001], ["a", "b"])
    off = await client.post("/api/v1/delete", json=delete("text = 'a'", confirm=True))
    assert off.status_code == 403 and "delete.enabled=true" in off.json()["error"]
    assert (await client.get("/api/v1/delete/config")).json()["enabled"] is False
    emulator.delete_enabled = True
    refused = {
        "": "WHERE clause is required",
        "text = 'a'; DROP TABLE x": "forbidden pattern: ;",
        "text = 'a' -- c": "forbidden pattern: --",
        "text = 'select me'": "forbidden keyword: SELECT",
        "text = 'xp_cmd'": "forbidden pattern: xp_",
        "text = 'a": "unmatched quotes",
        "(text = 'a'": "unmatched parentheses",
        "1=1": "Full table delete detected",
    }
    for where, message in refused.items():
        response = await client.post("/api/v1/delete", json=delete(where))
        assert response.status_code == 400 and message in response.json()["error"], where
    unconfirmed = await client.post("/api/v1/delete", json=delete("text = 'a'"))
    assert "Confirmation required" in unconfirmed.json()["error"]
    bad_sql = await client.post("/api/v1/delete", json=delete("nope = 1", confirm=True))
    assert bad_sql.status_code == 500


async def test_delete_rewrites_the_files_that_held_the_rows(
    arc: tuple[ArcEmulator, httpx.AsyncClient],
) -> None:
    emulator, client = arc
    emulator.delete_enabled = True
    base = 1_800_000_000
    await write(client, [base, base + 1, base + 2 * HOUR_S], ["keep", "secret-x", "other hour"])
    assert len(files(emulator)) == 2  # one file per hour partition
    assert any(b"secret-x" in f.read_bytes() for f in files(emulator))
    dry = await client.post("/api/v1/delete", json=delete("text = 'secret-x'", dry_run=True))
    assert dry.json()["deleted_count"] == 1 and dry.json()["rewritten_files"] == 0
    assert any(b"secret-x" in f.read_bytes() for f in files(emulator))
    done = await client.post("/api/v1/delete", json=delete("text = 'secret-x'", confirm=True))
    body = done.json()
    assert body["success"] and (body["deleted_count"], body["rewritten_files"]) == (1, 1)
    assert not any(b"secret-x" in f.read_bytes() for f in files(emulator))
    assert len(files(emulator)) == 2
    gone = await client.post("/api/v1/delete", json=delete("text = 'other hour'", confirm=True))
    assert gone.json()["deleted_count"] == 1 and len(files(emulator)) == 1  # emptied: removed
    rows = await client.post("/api/v1/query", json={"sql": "SELECT text FROM events"})
    assert rows.json()["data"] == [["keep"]]


async def test_delete_misses_the_write_buffer(arc: tuple[ArcEmulator, httpx.AsyncClient]) -> None:
    emulator, client = arc
    emulator.delete_enabled = True
    emulator.flush_delay_s = 3600
    await write(client, [1_800_000_000], ["buffered"])
    missed = await client.post("/api/v1/delete", json=delete("text = 'buffered'", confirm=True))
    assert missed.json()["deleted_count"] == 0
    await client.post("/api/v1/write/line-protocol/flush")
    rows = await client.post("/api/v1/query", json={"sql": "SELECT text FROM events"})
    assert rows.json()["data"] == [["buffered"]]


async def test_retention_policies(arc: tuple[ArcEmulator, httpx.AsyncClient]) -> None:
    emulator, client = arc
    now = int(time.time())
    await write(client, [now - 40 * 86_400, now - 10], ["old", "new"])
    policy = {"name": "p", "database": "db", "measurement": "events", "retention_days": 30}
    for bad, message in (
        ({**policy, "retention_days": 0}, "greater than 0"),
        ({**policy, "buffer_days": 30}, "greater than buffer_days"),
        ({k: v for k, v in policy.items() if k != "name"}, "name is required"),
    ):
        response = await client.post("/api/v1/retention", json=bad)
        assert response.status_code == 400 and message in response.json()["error"]
    created = await client.post("/api/v1/retention", json=policy)
    assert created.status_code == 201 and created.json()["is_active"] is False
    pid = created.json()["id"]
    again = await client.post("/api/v1/retention", json=policy)
    assert "already exists" in again.json()["error"]
    url = f"/api/v1/retention/{pid}"
    assert (await client.post(url + "/execute", json={})).status_code == 400  # no confirm
    inactive = await client.post(url + "/execute", json={"confirm": True})
    assert inactive.json()["error"] == "Retention policy is not active"
    assert (await client.put(url, json={**policy, "is_active": True})).status_code == 200
    dry = (await client.post(url + "/execute", json={"dry_run": True})).json()
    assert (dry["deleted_count"], dry["files_deleted"]) == (1, 1) and len(files(emulator)) == 2
    run = (await client.post(url + "/execute", json={"confirm": True})).json()
    assert (run["deleted_count"], run["affected_measurements"]) == (1, ["events"])
    assert len(files(emulator)) == 1
    history = (await client.get(url + "/executions")).json()["executions"]
    assert [x["deleted_count"] for x in history] == [1]
    assert (await client.get("/api/v1/retention/999")).status_code == 404
    assert (await client.delete(url)).status_code == 200
    assert (await client.get("/api/v1/retention")).json() == []
    assert (await client.patch(url, json={})).status_code == 405
