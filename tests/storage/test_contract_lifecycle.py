"""The storage contract of the data lifecycle, on every backend of tests/storage/test_contract.py
(the PostgreSQL ones against a real server): delete (erasure from every read and from the dedup
window), forget by filter and retention sweeps (the lifecycle service over each store), insert
of records as they are (import), and walks by position (cursor paging), including a walk of
more than 100,000 memories under concurrent writes (slow)."""

# ruff: noqa: F811 (tests take the contract suite's ``loaded`` fixture, imported below)

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from memtrace.config import PostgresSettings, load_settings
from memtrace.domain.lifecycle import DAY_US, RetentionPolicy
from memtrace.domain.memory import MemoryRecord
from memtrace.domain.models import ForgetRequest
from memtrace.domain.timestamps import from_us, now_us
from memtrace.lifecycle.service import Lifecycle
from memtrace.metadata.catalog import Catalog
from memtrace.service import MemoryService
from memtrace.storage.arc.store import ArcStore
from memtrace.storage.base import MemoryQuery, MemoryStore, NewMemory
from memtrace.storage.embedded import EmbeddedStore
from memtrace.storage.postgres.db import PgDatabase
from memtrace.storage.postgres.store import PostgresStore
from memtrace.storage.rows import matches, record_from_new, sort_key
from memtrace.telemetry.metrics import Metrics
from memtrace.testing.arc_server import EmulatorServer
from tests.storage.arc_support import FAST_ARC, arc_store, eventually, memory
from tests.storage.test_contract import HOUR, ORG, T0, loaded  # noqa: F401 (the fixture)

Loaded = tuple[MemoryStore, list[MemoryRecord]]


@pytest.fixture(autouse=True)
def _arc_deletes_on(arc_server: EmulatorServer) -> None:
    """memtrace needs Arc's delete API, which Arc ships turned off (delete.enabled)."""
    arc_server.emulator.delete_enabled = True


@pytest.fixture
async def lifecycle(loaded: Loaded, tmp_path: Path) -> AsyncIterator[Lifecycle]:
    """The lifecycle service over the loaded store (a metadata DB of its own for the audit
    log), in batches of 2 so that every walk takes several store calls."""
    catalog = Catalog(tmp_path / "meta.db", synchronous="NORMAL")
    await catalog.open()
    settings = load_settings(overrides={"storage.data_dir": tmp_path, "retention.batch_size": 2})
    try:
        yield Lifecycle(MemoryService(ORG, loaded[0], catalog, settings, Metrics()), "tester")
    finally:
        await catalog.close()


async def walk(store: MemoryStore, q: MemoryQuery) -> list[MemoryRecord]:
    """Every memory matching ``q``, page after page, each page continuing after the last."""
    seen: list[MemoryRecord] = []
    while True:
        page = await store.query(replace(q, limit=q.limit + 1))
        seen += page[: q.limit]
        if len(page) <= q.limit:
            return seen
        last = page[q.limit - 1]
        q = replace(q, after=(last.time, last.id))


async def test_delete_removes_from_every_read(loaded: Loaded) -> None:
    store, records = loaded
    doomed = [records[1], records[4]]  # a tagged crawler memory, the planner's entity
    unknown = "mem_01ZZZZZZZZZZZZZZZZZZZZZZZZ"
    deleted = await store.delete([doomed[0].id, unknown, doomed[1].id, doomed[0].id])
    assert deleted == [doomed[0].id, doomed[1].id]
    left = [r for r in records if r not in doomed]
    q = MemoryQuery(org_id=ORG, order="asc", limit=100)
    assert await store.query(q) == left
    assert await store.count(q) == len(left)
    for tagged in (replace(q, tags=("products",)), replace(q, content_contains="product")):
        assert await store.query(tagged) == [r for r in left if matches(r, tagged)]
    assert await store.get(doomed[0].id) is None
    stats = await store.agent_stats("crawler", T0)
    assert stats.memory_count == 5 and stats.memory_types == {"decision": 1, "episodic": 4}
    planner = await store.agent_stats("planner", T0)
    assert planner.memory_types == {"session": 1}
    assert await store.delete([doomed[0].id]) == []  # idempotent


async def test_forget_erases_exactly_what_matches(loaded: Loaded, lifecycle: Lifecycle) -> None:
    store, records = loaded
    since = from_us(T0 + 10_000_000).isoformat()
    request = ForgetRequest(agent_id="crawler", session_id="sess_a", since=since, dry_run=True)
    doomed = [r for r in records if r.agent_id == "crawler" and r.session_id == "sess_a"]
    doomed = [r for r in doomed if r.time >= T0 + 10_000_000]
    assert len(doomed) == 3  # more than one batch of 2
    assert (await lifecycle.forget(request)).matched == len(doomed)
    q = MemoryQuery(org_id=ORG, order="asc", limit=100)
    assert await store.query(q) == records  # a dry run deletes nothing
    result = await lifecycle.forget(request.model_copy(update={"dry_run": False}))
    assert result.deleted == len(doomed)
    assert await store.query(q) == [r for r in records if r not in doomed]
    for r in doomed:
        assert await store.get(r.id) is None
    assert (await lifecycle.forget(request.model_copy(update={"dry_run": False}))).deleted == 0
    audit = await lifecycle.catalog.list_audit(ORG)
    assert [(e.action, e.count, e.actor) for e in audit][:2] in (
        [("forget", 0, "tester"), ("forget", 3, "tester")],
        [("forget", 3, "tester"), ("forget", 0, "tester")],
    )


@pytest.mark.parametrize(
    "policy",
    [
        RetentionPolicy(days=1),  # every type: the store's bulk expiry first (Arc's policy)
        RetentionPolicy(days=0, types={"episodic": 1, "decision": 1}),  # row by row
    ],
)
async def test_retention_deletes_what_expired_and_nothing_else(
    loaded: Loaded, lifecycle: Lifecycle, policy: RetentionPolicy
) -> None:
    store, records = loaded
    now = T0 + 25_000_000 + DAY_US  # a day after the cutoff: T0 + 25 s
    expired = [r for r in records if r.time < T0 + 25_000_000 and policy.days_of(r.memory_type)]
    assert len(expired) == 4
    report = await lifecycle.retention_report(policy, now)
    assert sum(rule.count for rule in report) == len(expired)
    assert await lifecycle.apply_retention(policy, now) == len(expired)
    q = MemoryQuery(org_id=ORG, order="asc", limit=100)
    assert await store.query(q) == [r for r in records if r not in expired]
    assert await lifecycle.apply_retention(policy, now) == 0  # nothing left to expire


async def test_deleted_memory_leaves_the_dedup_window(loaded: Loaded) -> None:
    store, records = loaded
    first = records[0]
    again = memory("again", time_us=first.time + 1, dedup_key=first.dedup_key)
    assert (await store.write([again], HOUR))[0].existing_id == first.id
    await store.delete([first.id])
    assert (await store.write([again], HOUR))[0].record is not None


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_walk_by_position_sees_each_memory_once(loaded: Loaded, order: str) -> None:
    store, records = loaded
    base = MemoryQuery(org_id=ORG, order=order, limit=3)  # type: ignore[arg-type]
    for q in (
        base,
        replace(base, limit=1),
        replace(base, tags=("crawl",), limit=1),  # the tag-driven plan
        replace(base, session_id="sess_a", limit=2),
        replace(base, content_contains="a", limit=2),
        replace(base, since=T0 + 10 * 1_000_000, until=T0 + 50 * 1_000_000, limit=2),
    ):
        want = sorted((r for r in records if matches(r, q)), key=sort_key)
        got = await walk(store, q)
        assert got == (want if order == "asc" else want[::-1]), q


async def test_position_is_exclusive_and_breaks_time_ties_by_id(loaded: Loaded) -> None:
    store, records = loaded
    tied = sorted((r for r in records if r.time == T0 + 20 * 1_000_000), key=sort_key)
    assert len(tied) == 2
    q = MemoryQuery(org_id=ORG, order="asc", limit=10, after=(tied[0].time, tied[0].id))
    assert (await store.query(q))[0] == tied[1]
    q = replace(q, order="desc", after=(tied[1].time, tied[1].id))
    assert (await store.query(q))[0] == tied[0]


async def test_insert_records_keeps_ids_and_is_idempotent(loaded: Loaded) -> None:
    store, records = loaded
    copies = [
        replace(new_memory(records[2]), id="mem_01ARZ3NDEKTSV4RRFFQ69G5FAV", time=T0 - HOUR),
        replace(new_memory(records[0]), id="mem_01ARZ3NDEKTSV4RRFFQ69G5FAW", time=T0 - HOUR),
    ]
    held = replace(new_memory(records[3]), id=records[3].id)
    assert await store.insert_records([*copies, held]) == [c.id for c in copies]
    assert await store.insert_records(copies) == []
    stored = await store.get("mem_01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert stored == record_from_new(copies[0], "mem_01ARZ3NDEKTSV4RRFFQ69G5FAV", ORG)
    everything = await store.query(MemoryQuery(org_id=ORG, order="asc", limit=100))
    assert [r.id for r in everything[:2]] == [c.id for c in copies]
    # imported memories take part in dedup like any other
    again = memory("dup", time_us=T0 - HOUR + 5, dedup_key=copies[1].dedup_key)
    assert (await store.write([again], HOUR))[0].existing_id == copies[1].id


def new_memory(record: MemoryRecord) -> NewMemory:
    """A stored memory as it would be imported (the id set by the caller)."""
    return NewMemory(
        record.time,
        record.agent_id,
        record.session_id,
        record.memory_type,
        record.event_type,
        record.content,
        record.metadata,
        record.tags,
        record.importance,
        record.dedup_key,
        record.parent_id,
    )


async def test_expire_never_removes_newer_memories(loaded: Loaded) -> None:
    store, records = loaded
    removed = await store.expire(T0 - HOUR)
    assert removed == 0  # nothing is older than the cutoff
    assert len(await store.query(MemoryQuery(org_id=ORG, limit=100))) == len(records)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["embedded", "arc", "arc-overlap", "postgres"])
async def test_walk_of_100k_under_concurrent_writes(
    backend: str, tmp_path: Path, arc_server: EmulatorServer, request: pytest.FixtureRequest
) -> None:
    """The ETL case: 100,000+ memories over three days, read in pages of 1000 while writers
    keep adding; every memory (old and new) is seen exactly once, in order."""
    store: MemoryStore
    db: PgDatabase | None = None
    if backend == "embedded":
        store = EmbeddedStore(tmp_path / "memories.db", ORG, synchronous="NORMAL")
    elif backend == "postgres":  # cluster mode: the three days span the shared partitions
        db = PgDatabase(PostgresSettings(url=request.getfixturevalue("pg_url")))
        await db.open()
        store = PostgresStore(db, ORG)
    else:
        overlap = backend == "arc-overlap"
        if overlap:
            arc_server.emulator.flush_delay_s = 3600.0
        slow = 3600.0 if overlap else 0.0  # overlap: rows stay in the overlay, never verified
        settings = FAST_ARC.model_copy(
            update={"visibility_grace_s": slow, "verify_after_s": slow, "batch_size": 5000}
        )
        store = arc_store(arc_server, tmp_path, ORG, settings=settings)
    await store.open()  # type: ignore[attr-defined]
    try:
        start = now_us() - 3 * 24 * HOUR
        total = 100_500
        for first in range(0, total, 5000):
            items = [
                memory(f"etl row {i}", time_us=start + i * 2_500_000, agent_id=f"a{i % 7}")
                for i in range(first, min(first + 5000, total))
            ]
            await store.write(items, None)
        if isinstance(store, ArcStore):
            arc = store

            async def shipped() -> bool:  # 100k rows: far longer than drained()'s deadline
                return await arc.outbox.pending_count() == 0

            await eventually(shipped, timeout=300)
        if backend == "arc-overlap":
            arc_server.emulator.flush()

        written: list[str] = []
        stop = asyncio.Event()

        async def writer() -> None:
            n = 0
            while not stop.is_set():
                batch = [memory(f"live {n}-{j}", time_us=now_us()) for j in range(20)]
                outcomes = await store.write(batch, None)
                written.extend(o.record.id for o in outcomes if o.record is not None)
                n += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(writer())
        seen: list[MemoryRecord] = []
        q = MemoryQuery(org_id=ORG, order="asc", limit=1000)
        while True:
            page = await store.query(replace(q, limit=1001))
            seen += page[:1000]
            if len(page) <= 1000:
                if stop.is_set():
                    break
                stop.set()
                await task  # the last writes land; one more pass picks up the tail
            if page:
                last = seen[-1]
                q = replace(q, after=(last.time, last.id))
        ids = [r.id for r in seen]
        assert len(ids) == len(set(ids)), "a memory was seen twice"
        assert len(ids) == total + len(written)
        assert set(written) <= set(ids)
        assert [sort_key(r) for r in seen] == sorted(sort_key(r) for r in seen)
    finally:
        await store.close()
        if db is not None:
            await db.close()
