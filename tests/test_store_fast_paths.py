"""Query plans and FTS indexing of the embedded store: faster paths, same answers.

Every combination is checked against a plain Python filter over all stored memories.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from memtrace.storage import sqlite as sqlite_module
from memtrace.storage.base import MemoryQuery, NewMemory
from memtrace.storage.embedded import EmbeddedStore

TAGS = ("a", "b", "c", "d")
TYPES = ("episodic", "decision", "entity")


def _items(count: int) -> list[NewMemory]:
    rng = random.Random(5)
    items = []
    for i in range(count):
        tags = tuple(rng.sample(TAGS, rng.randint(0, 3)))
        items.append(
            NewMemory(
                time=1_000_000 + rng.randrange(200) * 1000,  # many equal times: rowid breaks ties
                agent_id=f"agent_{i % 3}",
                session_id=None,
                memory_type=rng.choice(TYPES),
                event_type="general",
                content=f"memory {i}",
                metadata=None,
                tags=tags,
                importance=None,
                dedup_key=f"k{i}",
                parent_id=None,
            )
        )
    return items


def _expected(rows: list[NewMemory], ids: list[str], q: MemoryQuery) -> list[str]:
    hits = [
        (m.time, n, ids[n])
        for n, m in enumerate(rows)
        if all(t in m.tags for t in q.tags)
        and (not q.memory_types or m.memory_type in q.memory_types)
        and (q.agent_id is None or m.agent_id == q.agent_id)
        and (q.since is None or m.time >= q.since)
        and (q.until is None or m.time < q.until)
    ]
    hits.sort(reverse=q.order == "desc")
    return [memory_id for _, _, memory_id in hits][q.offset : q.offset + q.limit]


async def test_tag_queries_match_a_plain_filter(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "m.db", "org_t", synchronous="NORMAL")
    await store.open()
    try:
        rows = _items(600)
        outcomes = await store.write(rows, None)
        ids = [o.record.id for o in outcomes if o.record is not None]
        assert len(ids) == len(rows)
        tag_sets = [("a",), ("b", "c"), ("d", "a", "b")]
        for tags, types, agent, window, order, page in itertools.product(
            tag_sets,
            [(), ("decision",)],
            [None, "agent_1"],
            [(None, None), (1_050_000, 1_150_000)],
            ["desc", "asc"],
            [(50, 0), (20, 7)],
        ):
            q = MemoryQuery(
                org_id="org_t",
                tags=tags,
                memory_types=types,
                agent_id=agent,
                since=window[0],
                until=window[1],
                order=order,  # type: ignore[arg-type]
                limit=page[0],
                offset=page[1],
            )
            got = [m.id for m in await store.query(q)]
            assert got == _expected(rows, ids, q), q
    finally:
        await store.close()


async def test_fts_is_indexed_once_per_group_and_skips_rolled_back_jobs(tmp_path: Path) -> None:
    """Concurrent single writes share a group; FTS rows are added at its end. A job that fails
    (an id collision) is rolled back and must not be found; every other write is searchable as
    soon as it is acknowledged."""
    store = EmbeddedStore(tmp_path / "m.db", "org_t", synchronous="NORMAL")
    await store.open()
    try:
        (first,) = await store.write(
            [replace(_items(1)[0], content="needle zero", dedup_key="z")], None
        )
        assert first.record is not None
        batch = [
            replace(item, content=f"needle number {i}", dedup_key=f"n{i}")
            for i, item in enumerate(_items(40))
        ]
        batch[7] = replace(batch[7], id=first.record.id, content="needle collide")
        results = await asyncio.gather(
            *(store.write([item], None) for item in batch), return_exceptions=True
        )
        assert isinstance(results[7], sqlite3.IntegrityError)
        assert all(not isinstance(r, BaseException) for i, r in enumerate(results) if i != 7)
        for needle, expected in (("needle number", 39), ("needle collide", 0), ("zero", 1)):
            found = await store.query(MemoryQuery(org_id="org_t", content_contains=needle))
            assert len(found) == expected, needle
        found = await store.query(MemoryQuery(org_id="org_t", content_contains="needle number 12"))
        assert [m.content for m in found] == ["needle number 12"]
    finally:
        await store.close()


async def test_an_idle_writer_releases_its_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After writing, a writer left idle shrinks its cache once (not again until it writes),
    and keeps serving writes afterwards."""
    monkeypatch.setattr(sqlite_module, "IDLE_RELEASE_S", 0.05)
    store = EmbeddedStore(tmp_path / "m.db", "org_t", synchronous="NORMAL")
    await store.open()
    try:
        assert store._db.idle_releases == 0
        await store.write(_items(20), None)
        await _poll(lambda: store._db.idle_releases == 1)
        more = [replace(item, dedup_key=f"again{i}") for i, item in enumerate(_items(5))]
        outcomes = await store.write(more, None)
        assert all(o.record is not None for o in outcomes)
        await _poll(lambda: store._db.idle_releases == 2)
        assert await store.count(MemoryQuery(org_id="org_t")) == 25
    finally:
        await store.close()


async def _poll(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Like tests.helpers.wait_until, without blocking the event loop."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)
