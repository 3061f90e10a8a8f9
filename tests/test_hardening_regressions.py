"""Regression tests for defects found by the hardening suite (fuzzing, matrix, fault tests)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from http_api.app import create_app
from memtrace.auth.keys import new_api_key
from memtrace.auth.permissions import parse_permissions
from memtrace.config import LogSettings
from memtrace.domain.errors import StorageUnavailable
from memtrace.domain.ids import DEFAULT_ORG_ID
from memtrace.domain.timestamps import now_us
from memtrace.metadata import sqlite as md
from memtrace.runtime import Runtime
from memtrace.storage.base import MemoryQuery
from memtrace.storage.sqlite import SQLiteDatabase
from memtrace.telemetry.logs import configure_logging
from memtrace.testing.arc_emulator import ArcEmulator
from memtrace.testing.arc_server import EmulatorServer
from tests.storage.arc_support import arc_store, drained
from tests.storage.arc_support import memory as arc_memory


@pytest.mark.parametrize(
    "url",
    ["/api/v1/agents", "/api/v1/sessions", "/api/v1/memories", "/api/v1/agents/a1/memories"],
)
async def test_offset_beyond_64_bits_is_400_not_500(api: httpx.AsyncClient, url: str) -> None:
    # Found by schemathesis: SQLite raised OverflowError on an offset past 2**63 (500).
    response = await api.get(url, params={"offset": str(2**64 + 1)})
    assert response.status_code == 400 and response.json()["error"].startswith("offset:")
    search = await api.post("/api/v1/search", json={"offset": 2**64})
    assert search.status_code == 400 and search.json()["error"].startswith("offset:")


async def test_blank_optional_fields_are_documented_as_absent(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Found by schemathesis: "" is accepted as "absent" but the schema's pattern forbade it.
    assert (await api.get("/api/v1/sessions", params={"agent_id": ""})).status_code == 200
    schema = create_app(runtime, manage_runtime=False).openapi()
    params = schema["paths"]["/api/v1/sessions"]["get"]["parameters"]
    agent_id = next(p for p in params if p["name"] == "agent_id")
    assert {"const": ""} in agent_id["schema"]["anyOf"]
    session_id = schema["components"]["schemas"]["MemoryCreate"]["properties"]["session_id"]
    assert {"const": ""} in session_id["anyOf"]


async def test_full_database_is_a_clear_503_and_nothing_is_written(tmp_path: Path) -> None:
    # Found by the disk-full fault test: the 503 said only "storage error: disk I/O error".
    db = SQLiteDatabase(tmp_path / "tiny.db", setup=_tiny_schema, synchronous="NORMAL")
    await db.open()
    try:
        await db.write(lambda conn: conn.execute("INSERT INTO t VALUES (?)", ("x" * 100,)))
        with pytest.raises(StorageUnavailable) as caught:
            await db.write(lambda conn: conn.execute("INSERT INTO t VALUES (?)", ("y" * 50_000,)))
        assert caught.value.message.startswith("storage is full")
        assert caught.value.status_code == 503
        rows = await db.read(lambda conn: conn.execute("SELECT count(*) FROM t").fetchone())
        assert rows == (1,)
        # The writer keeps working for writes that fit.
        await db.write(lambda conn: conn.execute("INSERT INTO t VALUES ('z')"))
    finally:
        await db.close()


def _tiny_schema(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)")
    conn.execute("PRAGMA max_page_count = 8")  # a few KiB: the "disk" is full after one row


def _deep(levels: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(levels):
        value = {"d": value}
    return value


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        # Found by schemathesis: orjson cannot encode integers past 64 bits (a 500).
        # (A memory body is parsed by orjson, which reads such integers as floats: accepted.)
        ("/api/v1/agents", {"name": "a1", "config": {"n": 2**64}}, "config"),
        (
            "/api/v1/memories",
            {"agent_id": "a", "content": "x", "metadata": _deep(300)},
            "metadata",
        ),
        ("/api/v1/sessions", {"agent_id": "a", "metadata": {"deep": _deep(300)}}, "metadata"),
        # Found by schemathesis: lax parsing took true as 1.0 and "0" as a Unix time.
        ("/api/v1/search", {"min_importance": True}, "min_importance"),
        ("/api/v1/search", {"limit": True}, "limit"),
        ("/api/v1/memories", {"agent_id": "a", "content": "x", "importance": "0.5"}, "importance"),
        ("/api/v1/memories", {"agent_id": "a", "content": "x", "time": "0"}, "time"),
        ("/api/v1/memories", {"agent_id": "a", "content": "x", "time": 1700000000}, "time"),
    ],
)
async def test_schema_violations_are_400_naming_the_field(
    api: httpx.AsyncClient, url: str, body: dict[str, object], field: str
) -> None:
    response = await api.post(url, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(f"{field}:")


async def test_session_update_with_huge_integer_metadata_is_400(api: httpx.AsyncClient) -> None:
    session = (await api.post("/api/v1/sessions", json={"agent_id": "a"})).json()["id"]
    response = await api.put(f"/api/v1/sessions/{session}", json={"metadata": {"n": 10**30}})
    assert response.status_code == 400 and response.json()["error"].startswith("metadata:")
    context = await api.post(f"/api/v1/sessions/{session}/context", json={"max_tokens": "500"})
    assert context.status_code == 400 and context.json()["error"].startswith("max_tokens:")


async def test_key_shaped_input_is_redacted_from_error_bodies(api: httpx.AsyncClient) -> None:
    # Found by the secrets test: a key pasted into a parameter came back in the 400 message.
    key = "mtk_" + "Ab3_-" * 8 + "xyz"
    response = await api.get("/api/v1/memories", params={"since": key})
    assert response.status_code == 400
    assert key not in response.text and "mtk_[redacted]" in response.text


def test_log_lines_redact_key_shaped_text(capsys: pytest.CaptureFixture[str]) -> None:
    # Found by the secrets test: the DEBUG access log printed a key a client put in a URL.
    key = "mtk_" + "Q" * 43
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging(LogSettings(level="DEBUG"))
        logging.getLogger("memtrace.test.access").info(
            '"GET /api/v1/memories?k=%s HTTP/1.1" 400', key
        )
        configure_logging(LogSettings(level="DEBUG", format="json"))
        logging.getLogger("memtrace.test").warning("bad key %s", key)
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    err = capsys.readouterr().err
    assert key not in err and err.count("mtk_[redacted]") == 2


async def test_overlapping_reloads_never_apply_an_older_key_snapshot(runtime: Runtime) -> None:
    # Found by the access matrix (flaky 401s): a reload that read the keys before a new key
    # was committed could finish after a newer reload and put the old snapshot back.
    original = runtime.catalog.admin_snapshot
    first_read = asyncio.Event()
    release = asyncio.Event()
    calls = 0

    async def snapshot_slow_first() -> Any:
        nonlocal calls
        calls += 1
        snapshot = await original()
        if calls == 1:
            first_read.set()
            await release.wait()
        return snapshot

    runtime.catalog.admin_snapshot = snapshot_slow_first  # type: ignore[method-assign]
    stale = asyncio.create_task(runtime.reload())
    await first_read.wait()  # the first reload holds a snapshot without the new key
    record, key = new_api_key(
        DEFAULT_ORG_ID, "new", parse_permissions("read"), rounds=4, now=now_us()
    )
    await runtime.catalog.db.write(lambda conn: md.insert_key(conn, record))
    fresh = asyncio.create_task(runtime.reload())
    for _ in range(100):  # give the newer reload every chance to finish first (it must not)
        if fresh.done():
            break
        await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(stale, fresh)
    principal = await runtime.authenticate(key)
    assert principal.key_id == record.id


async def test_a_batch_arc_holds_twice_is_read_once(tmp_path: Path) -> None:
    # Found by the Arc kill -9 loop: shipping is at-least-once, and a batch Arc accepted just
    # before the kill is sent again; stats counted it twice, pages came back short and
    # has_more could turn false early.
    server = EmulatorServer(ArcEmulator()).start()
    store = arc_store(server, tmp_path, "org_dup")
    await store.open()
    try:
        base = now_us() - 60_000_000
        await store.write([arc_memory(f"m{i}", time_us=base + i) for i in range(5)], None)
        await drained(store)
        server.emulator.sql("db1", "INSERT INTO events SELECT * FROM events")  # resent batch
        assert len(server.emulator.sql("db1", "SELECT id FROM events")) == 10
        first = await store.query(MemoryQuery(org_id="org_dup", limit=3))
        second = await store.query(MemoryQuery(org_id="org_dup", limit=3, offset=3))
        assert len(first) == 3 and len(second) == 2
        assert len({r.id for r in first + second}) == 5
        assert await store.count(MemoryQuery(org_id="org_dup")) == 5
        stats = await store.agent_stats("crawler", base - 1)
        assert stats.memory_count == 5 and stats.memories_since == 5
    finally:
        await store.close()
        server.stop()


async def test_blank_event_and_memory_type_mean_the_default_and_falsy_values_are_400(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Found by schemathesis (150+ examples): `v or "general"` also turned 0, false and [] into
    # the default, and the schema did not say that "" is accepted.
    blank = await api.post(
        "/api/v1/memories",
        json={"agent_id": "a", "content": "x", "event_type": "", "memory_type": ""},
    )
    assert blank.status_code == 201
    assert (blank.json()["event_type"], blank.json()["memory_type"]) == ("general", "episodic")
    for field in ("event_type", "memory_type"):
        for value in (0, False, []):
            bad = await api.post(
                "/api/v1/memories",
                json={"agent_id": "a", "content": f"{field}{value}", field: value},
            )
            assert bad.status_code == 400 and bad.json()["error"].startswith(f"{field}:")
    schema = create_app(runtime, manage_runtime=False).openapi()
    props = schema["components"]["schemas"]["MemoryCreate"]["properties"]
    assert {"const": ""} in props["event_type"]["anyOf"]
    assert {"const": ""} in props["memory_type"]["anyOf"]


async def test_null_for_a_defaulted_field_is_documented(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Found by schemathesis (300 examples): null means "the default" (memtrace-sdk 0.2.0
    # sends it) but the schema only allowed the field's own type.
    written = await api.post(
        "/api/v1/memories", json={"agent_id": "a", "content": "x", "memory_type": None}
    )
    assert written.status_code == 201 and written.json()["memory_type"] == "episodic"
    assert (await api.post("/api/v1/search", json={"limit": None})).status_code == 200
    schemas = create_app(runtime, manage_runtime=False).openapi()["components"]["schemas"]
    assert {"type": "null"} in schemas["MemoryCreate"]["properties"]["memory_type"]["anyOf"]
    assert {"type": "null"} in schemas["SearchRequest"]["properties"]["limit"]["anyOf"]
