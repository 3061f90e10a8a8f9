"""The storage contract: everything the service relies on holds on every backend.

Parametrized over the embedded store, Arc through the emulator over real HTTP with rows read
from Arc (outbox shipped and out of the overlay), Arc with every row both in Arc and in the
read overlay (exercises the merge and the dedup by id), Arc databases written by the Go
memtrace: all rows in Go's layout, or Go's rows and memtrace's side by side in one measurement
(docs/migrating-from-go.md), PostgreSQL, and Arc with its outbox in PostgreSQL as in cluster
mode (both on a real server started by the suite; slow tier).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from memtrace.config import PostgresSettings
from memtrace.domain.memory import MemoryRecord
from memtrace.domain.timestamps import now_us
from memtrace.storage.arc.pg_outbox import PgOutbox
from memtrace.storage.arc.store import ArcStore
from memtrace.storage.base import MemoryQuery, MemoryStore, NewMemory
from memtrace.storage.embedded import EmbeddedStore
from memtrace.storage.postgres.db import PgDatabase
from memtrace.storage.postgres.store import PostgresStore
from memtrace.storage.rows import matches, sort_key
from memtrace.testing.arc_server import EmulatorServer
from tests.storage.arc_support import (
    FAST_ARC,
    arc_store,
    drained,
    eventually,
    memory,
    settled,
    write_go_layout,
)

ORG = "org_contract"
HOUR = 3_600_000_000
T0 = now_us() - 2 * HOUR  # all data in the last 2 hours, so 24h stats see everything


def dataset() -> list[NewMemory]:
    s = 1_000_000
    return [
        memory("Started crawl of Example.com", time_us=T0, session_id="sess_a", tags=("crawl",)),
        memory(
            "Found 3 PRODUCT pages",
            time_us=T0 + 10 * s,
            session_id="sess_a",
            event_type="page_crawled",
            tags=("crawl", "products"),
            importance=0.7,
            metadata={"pages": 3, "nested": {"ok": None}},
        ),
        memory(
            "Skip pagination",
            time_us=T0 + 20 * s,
            session_id="sess_a",
            memory_type="decision",
            event_type="decision",
            importance=0.9,
            metadata={"reasoning": "only 2 pages deep"},
        ),
        memory("429 from pricing API", time_us=T0 + 20 * s, event_type="error", tags=("api",)),
        memory(
            "Acme Corp, plan=enterprise",
            time_us=T0 + 30 * s,
            agent_id="planner",
            memory_type="entity",
            event_type="customer",
            importance=0.2,
        ),
        memory(
            "Goal: map the catalogue",
            time_us=T0 + 40 * s,
            agent_id="planner",
            session_id="sess_b",
            memory_type="session",
            event_type="goal",
            tags=("products",),
        ),
        memory("prod deploy done", time_us=T0 + 50 * s, tags=("production",)),
        memory("late crawl retry", time_us=T0 + 60 * s, session_id="sess_a", tags=("crawl",)),
    ]


@pytest.fixture(
    params=[
        "embedded",
        "arc",
        "arc-overlap",
        "arc-go",
        "arc-mixed",
        pytest.param("postgres", marks=pytest.mark.slow),
        pytest.param("arc-pg-outbox", marks=pytest.mark.slow),
    ]
)
async def loaded(
    request: pytest.FixtureRequest, tmp_path: Path, arc_server: EmulatorServer
) -> AsyncIterator[tuple[MemoryStore, list[MemoryRecord]]]:
    """A store of each backend holding :func:`dataset`, and the stored records."""
    store: MemoryStore
    db: PgDatabase | None = None
    if request.param in ("postgres", "arc-pg-outbox"):
        db = PgDatabase(PostgresSettings(url=request.getfixturevalue("pg_url")))
        await db.open()
    if request.param == "postgres":
        assert db is not None
        store = PostgresStore(db, ORG)
    elif request.param == "arc-pg-outbox":  # cluster mode: the outbox in PostgreSQL
        assert db is not None
        store = arc_store(arc_server, tmp_path, ORG, outbox=PgOutbox(db, ORG))
    elif request.param == "embedded":
        store = EmbeddedStore(tmp_path / "memories.db", ORG, synchronous="NORMAL")
    elif request.param != "arc-overlap":
        store = arc_store(arc_server, tmp_path, ORG)
    else:
        arc_server.emulator.flush_delay_s = 3600.0
        store = arc_store(
            arc_server,
            tmp_path,
            ORG,
            # never verified: every row stays in the overlay while Arc holds it too
            settings=FAST_ARC.model_copy(
                update={"verify_after_s": 3600.0, "visibility_grace_s": 3600.0}
            ),
        )
    items = dataset()
    go_rows = {"arc-go": len(items), "arc-mixed": 3}.get(request.param, 0)
    records = write_go_layout(arc_server, ORG, items[:go_rows]) if go_rows else []
    await store.open()  # type: ignore[attr-defined]
    if go_rows:  # the outbox's dedup index is seeded from Arc, Go's rows included

        async def seeded() -> bool:
            return await store.outbox.get_state("seeded") is not None  # type: ignore[attr-defined]

        await eventually(seeded)
    if go_rows < len(items):
        outcomes = await store.write(items[go_rows:3], HOUR) + await store.write(items[3:], HOUR)
        records += [o.record for o in outcomes if o.record is not None]
    assert len(records) == len(items)
    # Written memories sort in write order (ids increase); Go's rows, which have no write
    # order, by their derived ids, before memtrace's rows of the same instant.
    assert records == sorted(records, key=sort_key) or go_rows
    records.sort(key=sort_key)
    if request.param in ("arc", "arc-go", "arc-mixed", "arc-pg-outbox"):
        await settled(store)  # type: ignore[arg-type]
    elif request.param == "arc-overlap":
        await drained(store)  # type: ignore[arg-type]
        assert arc_server.emulator.flush() == len(items)
    yield store, records
    await store.close()
    if db is not None:
        await db.close()


def expected(records: list[MemoryRecord], q: MemoryQuery) -> list[MemoryRecord]:
    rows = sorted((r for r in records if matches(r, q)), key=sort_key, reverse=q.order == "desc")
    return rows[q.offset : q.offset + q.limit]


async def check(store: MemoryStore, records: list[MemoryRecord], q: MemoryQuery) -> list[str]:
    got = await store.query(q)
    assert got == expected(records, q)
    assert await store.count(q) == len([r for r in records if matches(r, q)])
    return [r.content for r in got]


async def test_round_trip_keeps_every_field(loaded: tuple[MemoryStore, list[MemoryRecord]]) -> None:
    store, records = loaded
    got = await store.query(MemoryQuery(org_id=ORG, order="asc", limit=100))
    assert got == records
    assert got[1].metadata == {"pages": 3, "nested": {"ok": None}}
    assert got[1].tags == ("crawl", "products") and got[1].importance == 0.7


async def test_time_windows_are_half_open(loaded: tuple[MemoryStore, list[MemoryRecord]]) -> None:
    store, records = loaded
    s = 1_000_000
    contents = await check(
        store, records, MemoryQuery(org_id=ORG, since=T0 + 10 * s, until=T0 + 30 * s)
    )
    assert contents[2] == "Found 3 PRODUCT pages"  # the first two share one instant
    assert {*contents[:2]} == {"429 from pricing API", "Skip pagination"}
    assert await check(store, records, MemoryQuery(org_id=ORG, since=T0 + 61 * s)) == []


async def test_filters(loaded: tuple[MemoryStore, list[MemoryRecord]]) -> None:
    store, records = loaded
    q = MemoryQuery(org_id=ORG)
    assert len(await check(store, records, replace(q, agent_id="planner"))) == 2
    assert len(await check(store, records, replace(q, session_id="sess_a"))) == 4
    assert await check(store, records, replace(q, memory_types=("decision", "entity"))) == [
        "Acme Corp, plan=enterprise",
        "Skip pagination",
    ]
    assert await check(store, records, replace(q, event_types=("error",))) == [
        "429 from pricing API"
    ]
    # tags: AND, exact ("prod" never matches "production")
    assert await check(store, records, replace(q, tags=("crawl", "products"))) == [
        "Found 3 PRODUCT pages"
    ]
    assert await check(store, records, replace(q, tags=("prod",))) == []
    assert await check(store, records, replace(q, min_importance=0.7)) == [
        "Skip pagination",
        "Found 3 PRODUCT pages",
    ]
    assert await check(store, records, replace(q, agent_id="nobody")) == []
    assert await check(store, records, replace(q, org_id="org_other")) == []


async def test_content_search_is_case_insensitive(
    loaded: tuple[MemoryStore, list[MemoryRecord]],
) -> None:
    store, records = loaded
    q = MemoryQuery(org_id=ORG)
    assert await check(store, records, replace(q, content_contains="product")) == [
        "Found 3 PRODUCT pages"
    ]
    assert len(await check(store, records, replace(q, content_contains="CRAWL"))) == 2
    assert await check(store, records, replace(q, content_contains="zz")) == []


async def test_ordering_ties_and_pagination(
    loaded: tuple[MemoryStore, list[MemoryRecord]],
) -> None:
    store, records = loaded
    q = MemoryQuery(org_id=ORG, limit=3)
    pages = []
    for order in ("asc", "desc"):
        seen: list[str] = []
        for offset in range(0, 9, 3):
            seen += await check(store, records, replace(q, order=order, offset=offset))  # type: ignore[arg-type]
        pages.append(seen)
    assert pages[0] == list(reversed(pages[1])) and len(pages[0]) == 8
    # two memories share T0+20s: ids break the tie (write order for memtrace's memories), in
    # the requested direction
    assert pages[0][2:4] == [r.content for r in records[2:4]]
    assert {*pages[0][2:4]} == {"Skip pagination", "429 from pricing API"}
    # has_more by look-ahead: limit+1 rows tell whether another page exists
    assert len(await store.query(replace(q, limit=8 + 1))) == 8


async def test_get_by_id(loaded: tuple[MemoryStore, list[MemoryRecord]]) -> None:
    store, records = loaded
    for record in records:
        assert await store.get(record.id) == record
    assert await store.get("mem_01ZZZZZZZZZZZZZZZZZZZZZZZZ") is None


async def test_agent_stats(loaded: tuple[MemoryStore, list[MemoryRecord]]) -> None:
    store, _ = loaded
    stats = await store.agent_stats("crawler", T0 + 15 * 1_000_000)
    assert stats.memory_count == 6
    assert stats.memory_types == {"decision": 1, "episodic": 5}
    assert (stats.memories_since, stats.errors_since) == (4, 1)
    empty = await store.agent_stats("nobody", T0)
    assert (empty.memory_count, empty.memory_types) == (0, {})


async def test_context_input(loaded: tuple[MemoryStore, list[MemoryRecord]]) -> None:
    """What session/agent context reads: a session's memories of chosen types in a window."""
    store, records = loaded
    q = MemoryQuery(
        org_id=ORG,
        session_id="sess_a",
        memory_types=("episodic", "decision"),
        since=T0,
        limit=2,
    )
    assert await check(store, records, q) == ["late crawl retry", "Skip pagination"]


async def test_dedup_within_window_and_batch(
    loaded: tuple[MemoryStore, list[MemoryRecord]],
) -> None:
    store, records = loaded
    first = records[0]
    again = memory("x", time_us=first.time + 1, dedup_key=first.dedup_key)
    twin = memory("y", time_us=now_us(), dedup_key="fresh-key")
    outcomes = await store.write([again, twin, replace(twin, content="z")], HOUR)
    assert outcomes[0].existing_id == first.id
    assert outcomes[1].record is not None
    assert outcomes[2].existing_id == outcomes[1].record.id
    # outside the window it is a new memory; with dedup off, always new
    later = memory("x", time_us=first.time + 2 * HOUR, dedup_key=first.dedup_key)
    assert (await store.write([later], HOUR))[0].record is not None
    assert (await store.write([again], None))[0].record is not None


async def age_dedup_index(store: MemoryStore, *, forget_all: bool = False) -> None:
    """Run the store's dedup housekeeping as if time had passed. The embedded store keeps
    every key. The Arc store prunes its local window index (what its shipper does every 5 s);
    ``forget_all`` empties it, as if every key had been written and dated long ago, so only
    Arc itself still knows them."""
    if isinstance(store, ArcStore):
        if forget_all:
            far = now_us() + 100 * 365 * 24 * HOUR
            await store.outbox.prune_keys(far, far)
        else:
            await store.shipper.prune_keys()


async def in_arc(store: MemoryStore, arc_server: EmulatorServer) -> None:
    """For an Arc store: wait until every row is shipped and make Arc flush them."""
    if isinstance(store, ArcStore):
        await drained(store)
        arc_server.emulator.flush()


async def test_dedup_of_a_resent_backfill(
    loaded: tuple[MemoryStore, list[MemoryRecord]], arc_server: EmulatorServer
) -> None:
    """Same rule on every backend: a duplicate is a memory with the same key less than the
    window away in memory time, however old that time and whenever the first one was written."""
    store, _ = loaded
    backfill = memory("imported from last week's log", time_us=T0 - 72 * HOUR, dedup_key="bf")
    (first,) = await store.write([backfill], HOUR)
    assert first.record is not None
    await age_dedup_index(store)  # the housekeeping that forgot it within 5 s
    (resent,) = await store.write([backfill], HOUR)
    assert resent.existing_id == first.record.id

    # Much later: the Arc store's local index has forgotten the key; Arc still knows it.
    await in_arc(store, arc_server)
    await age_dedup_index(store, forget_all=True)
    nearby = replace(backfill, time=backfill.time + HOUR // 2, content="same key, 30 min later")
    (again,) = await store.write([nearby], HOUR)
    assert again.existing_id == first.record.id
    farther = replace(backfill, time=backfill.time + 2 * HOUR)
    (new,) = await store.write([farther], HOUR)
    assert new.record is not None


async def test_text_after_a_nul_is_found(loaded: tuple[MemoryStore, list[MemoryRecord]]) -> None:
    # Found by adversarial testing: the embedded trigram index stopped at a NUL (FTS5 reads
    # text up to it), so a search of 3+ ASCII characters never found what followed.
    store, records = loaded
    new = memory("head\x00tail after the NUL, Mixed Case", time_us=T0 + 70 * 1_000_000)
    (outcome,) = await store.write([new], HOUR)
    assert outcome.record is not None
    if isinstance(store, ArcStore):
        await drained(store)
    everything = [*records, outcome.record]
    q = MemoryQuery(org_id=ORG)
    for needle in ("tail after", "MIXED case", "nul,", "head", "d\x00t"):
        found = await check(store, everything, replace(q, content_contains=needle))
        assert found == [new.content], needle
