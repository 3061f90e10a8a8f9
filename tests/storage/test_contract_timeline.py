"""The storage contract of timelines and decision outcomes, on every backend of
tests/storage/test_contract.py (the PostgreSQL ones against a real server): counts per bucket
and group computed by the store equal counting the rows in Python, for every filter, grouping
and bucket width, across whole hours (the embedded store's hourly counts) and partial ones,
with rows only in Arc's outbox, after deletes and imports; decision outcomes through the
service on each store (context and stats)."""

# ruff: noqa: F811 (tests take the contract suite's ``loaded`` fixture, imported below)

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from memtrace.config import load_settings
from memtrace.domain.errors import DuplicateMemory, InvalidInput, NotFound
from memtrace.domain.memory import MemoryRecord
from memtrace.domain.models import ContextRequest, OutcomeCreate, TimelineParams
from memtrace.metadata.catalog import Catalog
from memtrace.service import MemoryService
from memtrace.storage.base import MemoryQuery, MemoryStore, TimelineBucket, TimelineGroup
from memtrace.storage.embedded import EmbeddedStore, build_where
from memtrace.storage.rows import matches, record_from_new
from memtrace.storage.timeline import group_values
from memtrace.telemetry.metrics import Metrics
from memtrace.testing.arc_server import EmulatorServer
from tests.storage.arc_support import memory, settled
from tests.storage.test_contract import HOUR, ORG, T0, loaded  # noqa: F401 (the fixture)

Loaded = tuple[MemoryStore, list[MemoryRecord]]
S = 1_000_000
GROUPS: tuple[TimelineGroup | None, ...] = (None, "event_type", "memory_type", "agent_id", "tag")


@pytest.fixture(autouse=True)
def _arc_deletes_on(arc_server: EmulatorServer) -> None:
    """memtrace needs Arc's delete API, which Arc ships turned off (delete.enabled)."""
    arc_server.emulator.delete_enabled = True


def counted(
    records: list[MemoryRecord], q: MemoryQuery, width: int, group_by: TimelineGroup | None
) -> list[TimelineBucket]:
    """The timeline by counting the rows in Python: what every store must answer."""
    assert q.since is not None
    origin = q.since - q.since % width
    totals: dict[int, int] = {}
    groups: dict[int, dict[str, int]] = {}
    for r in records:
        if not matches(r, q):
            continue
        start = origin + (r.time - origin) // width * width
        totals[start] = totals.get(start, 0) + 1
        if group_by is not None:
            bucket = groups.setdefault(start, {})
            for value in group_values(r, group_by):
                bucket[value] = bucket.get(value, 0) + 1
    return [TimelineBucket(s, totals[s], groups.get(s, {})) for s in sorted(totals)]


FILTERS = {
    "none": {},
    "error": {"event_types": ("error",)},
    "two events": {"event_types": ("decision", "error")},
    "planner": {"agent_id": "planner"},
    "types": {"memory_types": ("decision", "entity")},
    "tag": {"tags": ("crawl",)},
    "two tags": {"tags": ("crawl", "products")},
    "session": {"session_id": "sess_a"},
    "contains": {"content_contains": "CRAWL"},
    "importance": {"min_importance": 0.5},
    "agent and event": {"agent_id": "crawler", "event_types": ("general",)},
}


async def check_all(
    store: MemoryStore,
    records: list[MemoryRecord],
    since: int,
    until: int,
    widths: tuple[int, ...] = (HOUR,),
    filters: tuple[str, ...] = tuple(FILTERS),
) -> None:
    base = MemoryQuery(org_id=ORG, since=since, until=until)
    for name in filters:
        q = replace(base, **FILTERS[name])  # type: ignore[arg-type]
        for width in widths:
            for group_by in GROUPS:
                got = await store.timeline(q, width, group_by)
                want = counted(records, q, width, group_by)
                assert got == want, (name, width, group_by)


async def first_rows_settled(store: MemoryStore, request: pytest.FixtureRequest) -> None:
    """The first memtrace rows in a measurement of Go's rows: until Arc shows memtrace's
    columns, a read may take such a row for a Go row (a race of the layout probe that counts
    and lists share, docs/migrating-from-go.md), so read once they are settled."""
    if request.node.callspec.params["loaded"] == "arc-go":
        await settled(store)  # type: ignore[arg-type]


async def test_timeline_counts_what_the_rows_hold(loaded: Loaded) -> None:
    store, records = loaded
    # whole hours around the data (the hourly counts), and windows that cut an hour
    await check_all(store, records, T0 - 5 * HOUR, T0 + HOUR, (HOUR, 3 * HOUR))
    await check_all(store, records, T0 + 15 * S, T0 + 45 * S, (60 * S, 10 * S))
    start = T0 - T0 % HOUR
    await check_all(store, records, start, start + 2 * HOUR, (HOUR, 24 * HOUR), ("none", "tag"))
    empty = MemoryQuery(org_id=ORG, since=T0 - 9 * HOUR, until=T0 - 8 * HOUR)
    assert await store.timeline(empty, HOUR, None) == []


async def test_timeline_over_many_hours_with_fresh_writes(
    loaded: Loaded, request: pytest.FixtureRequest
) -> None:
    """Memories in other hours (on Arc still in the outbox, or just shipped), some at an
    hour's first microsecond, one exactly at the window's end (not counted)."""
    store, records = loaded
    hour = T0 - T0 % HOUR
    times = [hour - 5 * HOUR, hour - 5 * HOUR, hour - 3 * HOUR + 1, hour - 26 * HOUR, hour + 7]
    items = [
        memory(
            f"later note {i}",
            time_us=at,
            agent_id=("crawler", "planner", "scout")[i % 3],
            event_type=("error", "general")[i % 2],
            tags=(("crawl",), (), ("infra", "crawl"))[i % 3],
            session_id="sess_c" if i % 2 else None,
        )
        for i, at in enumerate(times)
    ]
    outcomes = await store.write(items, HOUR)
    everything = records + [o.record for o in outcomes if o.record is not None]
    assert len(everything) == len(records) + len(items)
    await first_rows_settled(store, request)
    some = ("none", "error", "planner", "tag", "session", "agent and event")
    await check_all(store, everything, hour - 30 * HOUR, hour + HOUR, (HOUR, 6 * HOUR))
    await check_all(store, everything, hour - 26 * HOUR, hour - 5 * HOUR, (HOUR,), some)
    await check_all(store, everything, hour - 5 * HOUR + 1, T0 + 30 * S, (HOUR, 60 * S), some)


async def test_timeline_after_deletes_and_imports(
    loaded: Loaded, request: pytest.FixtureRequest
) -> None:
    store, records = loaded
    doomed = [records[1], records[4]]  # a tagged crawler memory, the planner's entity
    assert await store.delete([r.id for r in doomed]) == [r.id for r in doomed]
    left = [r for r in records if r not in doomed]
    await check_all(store, left, T0 - 5 * HOUR, T0 + HOUR)
    imported = [
        replace(memory(f"imported {i}", time_us=T0 - (i + 1) * HOUR, tags=("old",)), id=mid)
        for i, mid in enumerate(
            ("mem_01J0000000000000000000000A", "mem_01J0000000000000000000000B")
        )
    ]
    assert sorted(await store.insert_records(imported)) == sorted(i.id for i in imported)  # type: ignore[misc]
    left += [record_from_new(i, i.id, ORG) for i in imported]  # type: ignore[arg-type]
    await first_rows_settled(store, request)
    await check_all(store, left, T0 - 5 * HOUR, T0 + HOUR)


async def test_hourly_counts_are_built_for_an_older_store_file(tmp_path: Path) -> None:
    """A store file of schema 3 (the change sequence, no hourly counts) gets them from its rows
    when opened."""
    path = tmp_path / "memories.db"
    store = EmbeddedStore(path, ORG, synchronous="NORMAL")
    await store.open()
    items = [
        memory(
            f"m{i}", time_us=T0 - i * 20 * 60 * S, tags=("a", "b")[: i % 3], event_type=f"e{i % 2}"
        )
        for i in range(12)
    ]
    records = [o.record for o in await store.write(items, None) if o.record is not None]
    await store.close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE timeline_counts")
    conn.execute("DROP INDEX memories_outcomes")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    store = EmbeddedStore(path, ORG, synchronous="NORMAL")
    await store.open()
    try:
        await check_all(store, records, T0 - 6 * HOUR, T0 + HOUR)
    finally:
        await store.close()
    # and the outcomes of an agent are read through their own partial index (agent stats
    # and context do not walk every memory of the agent)
    conn = sqlite3.connect(path)
    where, params = build_where(MemoryQuery(org_id=ORG, agent_id="a", event_types=("outcome",)))
    plan = conn.execute(f"EXPLAIN QUERY PLAN SELECT id FROM memories m WHERE {where}", params)
    assert "memories_outcomes" in str(plan.fetchall())
    conn.close()


# --- decision outcomes, through the service on each store ------------------------------------


@pytest.fixture
async def service(loaded: Loaded, tmp_path: Path) -> AsyncIterator[MemoryService]:
    catalog = Catalog(tmp_path / "meta.db", synchronous="NORMAL")
    await catalog.open()
    settings = load_settings(overrides={"storage.data_dir": tmp_path})
    try:
        yield MemoryService(ORG, loaded[0], catalog, settings, Metrics())
    finally:
        await catalog.close()


async def test_outcomes_of_decisions(
    loaded: Loaded, service: MemoryService, request: pytest.FixtureRequest
) -> None:
    store, records = loaded
    decision = next(r for r in records if r.memory_type == "decision")  # "Skip pagination"
    body = OutcomeCreate(outcome="success", content="crawl done in 3 min", metrics={"pages": 2})
    stored = await service.record_outcome(decision.id, body)
    await first_rows_settled(store, request)
    assert (stored.parent_id, stored.event_type, stored.memory_type) == (
        decision.id,
        "outcome",
        "episodic",
    )
    assert stored.agent_id == decision.agent_id and stored.session_id == decision.session_id
    assert stored.metadata == {"outcome": "success", "metrics": {"pages": 2}}
    assert await store.get(stored.id) == stored  # an ordinary memory: every client reads it
    with pytest.raises(DuplicateMemory) as duplicate:
        await service.record_outcome(decision.id, body)
    assert duplicate.value.existing_id == stored.id
    with pytest.raises(InvalidInput, match=r"decision_id: .* not a decision"):
        await service.record_outcome(records[0].id, body)
    with pytest.raises(NotFound):
        await service.record_outcome("mem_01ZZZZZZZZZZZZZZZZZZZZZZZZ", body)

    context = await service.session_context("sess_a", ContextRequest())
    line = next(x for x in context.context.splitlines() if "Skip pagination" in x)
    assert line.endswith(
        "Skip pagination — reasoning: only 2 pages deep — outcome: success (crawl done in 3 min) "
        "[pages=2]"
    )
    assert context.context.count("crawl done in 3 min") == 1  # folded, not a line of its own
    # the decision's context alone (only decisions asked for) still shows the outcome
    only = await service.session_context("sess_a", ContextRequest(include_types=["decision"]))
    assert "outcome: success (crawl done in 3 min)" in only.context and only.memory_count == 2

    stats = await service.agent_stats(decision.agent_id)
    assert (stats.decisions_with_outcome, stats.decision_successes) == (1, 1)
    assert stats.decision_success_rate == 1.0
    later = OutcomeCreate(outcome="failure", content="pagination was needed after all")
    await service.record_outcome(decision.id, later)  # the latest outcome counts
    stats = await service.agent_stats(decision.agent_id)
    assert (stats.decisions_with_outcome, stats.decision_successes) == (1, 0)
    assert stats.decision_success_rate == 0.0
    context = await service.agent_context(decision.agent_id, ContextRequest(since="1d"))
    assert "outcome: failure (pagination was needed after all)" in context.context
    planner = await service.agent_stats("planner")
    assert planner.decisions_with_outcome == 0 and planner.decision_success_rate is None


async def test_timeline_through_the_service(loaded: Loaded, service: MemoryService) -> None:
    _, records = loaded
    params = TimelineParams(
        since="1d", bucket="1h", group_by="event_type", event_type="error,general"
    )
    data = await service.timeline(params)
    assert data["bucket_seconds"] == 3600 and data["group_by"] == "event_type"
    assert len(data["buckets"]) in (24, 25)  # every hour of the window, empty ones included
    wanted = [r for r in records if r.event_type in ("error", "general")]
    assert data["total"] == len(wanted)
    assert sum(b["count"] for b in data["buckets"]) == len(wanted)
    assert sum(b["groups"].get("error", 0) for b in data["buckets"]) == 1
    assert all(b["start"].endswith(":00:00.000000Z") for b in data["buckets"])
    with pytest.raises(InvalidInput, match=r"^bucket: "):
        await service.timeline(TimelineParams(since="30d", bucket="1m"))
    with pytest.raises(InvalidInput, match=r"^bucket: "):
        await service.timeline(TimelineParams(bucket="1 hour"))
    with pytest.raises(InvalidInput, match=r"^event_type: "):
        await service.timeline(TimelineParams(event_type="not valid"))
