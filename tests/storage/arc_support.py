"""Helpers for Arc tests: an Arc emulator over real HTTP, stores on it, async polling, orgs
bound to it and seeded (with the CLI in process)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from memtrace.auth.crypto import generate_master_key
from memtrace.config import ArcSettings
from memtrace.domain.memory import MemoryRecord
from memtrace.domain.timestamps import now_us
from memtrace.metadata.bindings import put_binding
from memtrace.runtime import Runtime
from memtrace.storage.arc.layouts import go_memory_id, go_row_digest
from memtrace.storage.arc.outbox_base import OutboxStore
from memtrace.storage.arc.store import ArcStore
from memtrace.storage.arc.target import ArcTarget
from memtrace.storage.base import NewMemory
from memtrace.storage.embedded import EmbeddedStore
from memtrace.telemetry.metrics import Metrics
from memtrace.testing.arc_emulator import TEST_TOKEN
from memtrace.testing.arc_server import EmulatorServer
from tests.go_deployment import GO_ARC_COLUMNS, go_json, write_go_rows
from tests.helpers import admin, create_org_key, invoke

FAST_ARC = ArcSettings(
    flush_interval_ms=10, retry_max_s=0.2, verify_after_s=0.0, visibility_grace_s=0.0
)
# MEMTRACE_MASTER_KEY values a server may start with after the binding was saved under another
# key, and the words of the refusal each one gets (pytest.param ids: missing ... wrong).
BAD_MASTER_KEYS = {
    "missing": ("", "MEMTRACE_MASTER_KEY is not set"),
    "corrupted": ("not-base64!", "malformed"),
    "short": ("c2hvcnQ=", "32 bytes"),
    "wrong": (generate_master_key(), "not the key it was encrypted with"),
}


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 15.0, interval: float = 0.05
) -> None:
    """Poll an async condition until it holds (no blind sleeps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def arc_store(
    server: EmulatorServer,
    tmp_path: Path,
    org_id: str,
    *,
    database: str = "db1",
    settings: ArcSettings = FAST_ARC,
    dedup_window_us: int | None = 24 * 3_600_000_000,
    metrics: Metrics | None = None,
    outbox: OutboxStore | None = None,
) -> ArcStore:
    return ArcStore(
        org_id,
        ArcTarget(server.url, database, "events", TEST_TOKEN),
        outbox or tmp_path / f"{org_id}-{database}-outbox.db",
        settings,
        metrics=metrics,
        synchronous="NORMAL",
        dedup_window_us=dedup_window_us,
    )


async def drained(store: ArcStore) -> None:
    """Wait until the store's outbox has shipped everything."""

    async def empty() -> bool:
        return await store.outbox.pending_count() == 0

    await eventually(empty)


async def settled(store: ArcStore) -> None:
    """Wait until Arc was seen to hold every row (the outbox is empty: reads come from Arc)."""

    async def empty() -> bool:
        return (await store.outbox.counts()).total == 0

    await eventually(empty)


def seed_embedded(data_dir: Path, org: str, items: list[NewMemory]) -> list[MemoryRecord]:
    """Memories written straight into the org's embedded store (the CLI's source of copies)."""

    async def run() -> list[MemoryRecord]:
        store = EmbeddedStore(data_dir / "orgs" / org / "memories.db", org, synchronous="NORMAL")
        await store.open()
        try:
            outcomes = await store.write(items, None)
        finally:
            await store.close()
        return [o.record for o in outcomes if o.record is not None]

    return asyncio.run(run())


def add_arc(
    data_dir: Path, env: dict[str, str], org: str, url: str, database: str = "acme"
) -> tuple[int, str, str]:
    """``memtrace org add-arc`` in process: (exit code, stdout, stderr)."""
    return invoke(
        data_dir, "org", "add-arc", org, "--url", url, "--database", database,
        "--api-key", TEST_TOKEN, env=env,
    )  # fmt: skip


def org_to_copy(
    data_dir: Path, env: dict[str, str], arc_server: EmulatorServer, n: int
) -> tuple[str, list[str]]:
    """An org with n embedded memories from an hour ago, bound to Arc: (org, memory ids)."""
    org = admin(data_dir, "org", "create", "acme", env=env)
    base = now_us() - 3_600_000_000
    items = [memory(f"old memory {i}", time_us=base + i) for i in range(n)]
    ids = [r.id for r in seed_embedded(data_dir, org, items)]
    assert add_arc(data_dir, env, org, arc_server.url)[0] == 0
    return org, ids


def memory(
    content: str = "did something",
    *,
    time_us: int,
    agent_id: str = "crawler",
    session_id: str | None = None,
    memory_type: str = "episodic",
    event_type: str = "general",
    tags: tuple[str, ...] = (),
    importance: float | None = None,
    metadata: dict[str, object] | None = None,
    dedup_key: str | None = None,
) -> NewMemory:
    return NewMemory(
        time=time_us,
        agent_id=agent_id,
        session_id=session_id,
        memory_type=memory_type,
        event_type=event_type,
        content=content,
        metadata=metadata,
        tags=tags,
        importance=importance,
        dedup_key=dedup_key or f"k{time_us}{content[:20]}{agent_id}",
        parent_id=None,
    )


# Go's columns in the order of memtrace's row shape (after id and time).
GO_READ_ORDER = (
    "org_id", "agent_id", "session_id", "memory_type", "event_type", "content",
    "metadata_json", "tags_csv", "importance", "dedup_key", "parent_id",
)  # fmt: skip


def write_go_layout(
    server: EmulatorServer, org_id: str, items: list[NewMemory], *, database: str = "db1"
) -> list[MemoryRecord]:
    """Write ``items`` to Arc as the Go memtrace did (its 12 columns, ns times, no id) and
    return the records memtrace must read back (ids derived from the rows)."""
    columns: dict[str, list[object]] = {name: [] for name in GO_ARC_COLUMNS}
    records = []
    for item in items:
        row = {
            "time": item.time * 1000 + 789,  # Go's ns; Arc keeps µs
            "org_id": org_id,
            "agent_id": item.agent_id,
            "session_id": item.session_id or "",
            "memory_type": item.memory_type,
            "event_type": item.event_type,
            "content": item.content,
            "metadata_json": go_json(item.metadata) if item.metadata else "{}",
            "tags_csv": ",".join(item.tags),
            "dedup_key": item.dedup_key,
            "importance": float(item.importance or 0.0),
            "parent_id": item.parent_id or "",
        }
        for name in GO_ARC_COLUMNS:
            columns[name].append(row[name])
        read_back = [None, item.time, *(row[n] for n in GO_READ_ORDER)]
        records.append(
            MemoryRecord(
                go_memory_id(item.time, go_row_digest(read_back)),
                item.time,
                org_id,
                item.agent_id,
                item.session_id,
                item.memory_type,
                item.event_type,
                item.content,
                item.metadata,
                item.tags,
                item.importance,
                item.dedup_key,
                item.parent_id,
            )
        )
    with httpx.Client(base_url=server.url) as http:
        write_go_rows(http, database, "events", columns, TEST_TOKEN)
    return records


async def bound_org(
    runtime: Runtime, server: EmulatorServer | None
) -> tuple[str, dict[str, str], dict[str, str]]:
    """A new org (bound to Arc when ``server`` is given): its id, rw and admin headers."""
    org_id, key = await create_org_key(runtime)
    _, admin = await create_org_key(runtime, permissions="admin", org_id=org_id)
    if server is not None:

        def bind(conn: Any) -> None:
            put_binding(
                conn,
                org_id,
                url=server.url,
                database="acme",
                measurement="events",
                api_key=TEST_TOKEN,
                now=now_us(),
            )

        await runtime.catalog.db.write(bind)
        await runtime.reload()
    return org_id, {"x-api-key": key}, {"x-api-key": admin}
