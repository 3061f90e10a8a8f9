"""Queued writes merged into one bulk call keep every per-write guarantee.

The writer is held busy by a first job until the others are queued, so they deterministically
share one group; then the merged call's effects are compared with running them one by one.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from memtrace.storage.base import MemoryQuery, NewMemory
from memtrace.storage.embedded import EmbeddedStore
from memtrace.storage.sqlite import SQLiteDatabase
from tests.helpers import wait_until

T = TypeVar("T")


def _setup(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS t (v TEXT UNIQUE)")


async def _queued_together(
    db: SQLiteDatabase, calls: list[Awaitable[T]]
) -> list[T | BaseException]:
    """Run ``calls`` so that they all land in the writer's next group."""
    gate = threading.Event()
    blocker = asyncio.ensure_future(db.write(lambda conn: gate.wait(10)))
    await asyncio.sleep(0)
    wait_until(lambda: db._queue.qsize() == 0)  # the writer holds the blocker
    tasks = [asyncio.ensure_future(call) for call in calls]
    await asyncio.sleep(0)
    wait_until(lambda: db._queue.qsize() == len(calls))
    gate.set()
    await blocker
    return list(await asyncio.gather(*tasks, return_exceptions=True))


async def test_merged_jobs_run_as_one_call_and_a_bad_one_fails_alone(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "t.db", setup=_setup, synchronous="NORMAL")
    await db.open()
    calls: list[list[str]] = []

    def insert(conn: sqlite3.Connection, payloads: list[Any]) -> list[str]:
        calls.append(list(payloads))
        conn.executemany("INSERT INTO t (v) VALUES (?)", [(p,) for p in payloads])
        return [f"ok {p}" for p in payloads]

    try:
        good = await _queued_together(db, [db.write_merged(insert, v) for v in "abc"])
        assert good == ["ok a", "ok b", "ok c"]
        assert calls == [["a", "b", "c"]]  # one call for the three writes

        calls.clear()
        mixed = await _queued_together(db, [db.write_merged(insert, v) for v in "dae"])
        assert mixed[0] == "ok d" and mixed[2] == "ok e"
        assert isinstance(mixed[1], sqlite3.IntegrityError)  # "a" exists: only it fails
        assert calls == [["d", "a", "e"], ["d"], ["a"], ["e"]]  # merged, then one by one
        rows = await db.read(lambda conn: [r[0] for r in conn.execute("SELECT v FROM t")])
        assert sorted(rows) == ["a", "b", "c", "d", "e"]
    finally:
        await db.close()


def _memory(n: int, **changes: Any) -> NewMemory:
    base = NewMemory(
        time=1_000_000 + n,
        agent_id="agent_1",
        session_id=None,
        memory_type="episodic",
        event_type="general",
        content=f"merged write {n}",
        metadata=None,
        tags=("t",),
        importance=None,
        dedup_key=f"k{n}",
        parent_id=None,
    )
    return replace(base, **changes)


@pytest.mark.parametrize("window", [None, 60_000_000])
async def test_store_writes_merged_in_a_group_match_one_by_one(
    tmp_path: Path, window: int | None
) -> None:
    store = EmbeddedStore(tmp_path / "m.db", "org_m", synchronous="NORMAL")
    await store.open()
    try:
        (existing,) = await store.write([_memory(0)], window)
        assert existing.record is not None
        writes = [
            [_memory(1)],
            [_memory(2, dedup_key="k1")],  # same key as the write before it
            [_memory(3), _memory(4), _memory(5, dedup_key="k3")],  # a batch, dup inside it
            [_memory(6, id=existing.record.id)],  # id collision: this write alone fails
            [_memory(7, dedup_key="k0")],  # same key as a committed memory
        ]
        results = await _queued_together(store._db, [store.write(w, window) for w in writes])
        assert isinstance(results[3], sqlite3.IntegrityError)
        first, second, batch, _, last = results
        assert isinstance(first, list) and isinstance(second, list)
        assert isinstance(batch, list) and isinstance(last, list)
        first_id = first[0].record.id
        if window is None:  # no dedup: every memory is stored
            assert all(o.record is not None for o in second + batch + last)
        else:
            assert second[0].record is None and second[0].existing_id == first_id
            assert batch[2].record is None and batch[2].existing_id == batch[0].record.id
            assert last[0].record is None and last[0].existing_id == existing.record.id
        stored = [o.record for o in first + second + batch + last if o.record is not None]
        ids = [r.id for r in stored]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)  # queue order, unique
        found = await store.query(MemoryQuery(org_id="org_m", content_contains="merged write"))
        assert sorted(m.id for m in found) == sorted([existing.record.id, *ids])
        assert not [m for m in found if m.content == "merged write 6"]
    finally:
        await store.close()
