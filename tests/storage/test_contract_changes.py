"""The storage contract of change positions (docs/feed.md), on every backend of
tests/storage/test_contract.py (the PostgreSQL ones against a real server): memories come in
commit order whatever their time, filters apply, a position is never handed out twice (not
even after the newest memory was erased), and a reader racing concurrent writers sees every
memory exactly once."""

# ruff: noqa: F811 (tests take the contract suite's ``loaded`` fixture, imported below)

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from memtrace.domain.memory import MemoryRecord, WriteOutcome
from memtrace.storage.base import CHANGE_SCAN, MemoryQuery, MemoryStore, NewMemory
from memtrace.storage.rows import matches
from memtrace.testing.arc_server import EmulatorServer
from tests.storage.arc_support import memory
from tests.storage.test_contract import HOUR, ORG, T0, loaded  # noqa: F401 (the fixture)

Loaded = tuple[MemoryStore, list[MemoryRecord]]
ALL = MemoryQuery(org_id=ORG)


@pytest.fixture(autouse=True)
def _arc_deletes_on(arc_server: EmulatorServer) -> None:
    """memtrace needs Arc's delete API, which Arc ships turned off (delete.enabled)."""
    arc_server.emulator.delete_enabled = True


async def walk(
    store: MemoryStore, after: int, q: MemoryQuery = ALL, limit: int = 2
) -> tuple[list[tuple[int, MemoryRecord]], int]:
    """Every change after ``after`` matching ``q``, page after page; and the last position."""
    seen: list[tuple[int, MemoryRecord]] = []
    while True:
        page = await store.changes(after, q, limit)
        assert len(page.entries) <= limit
        assert page.position >= after
        seen += page.entries
        after = page.position
        if page.complete:
            return seen, after


def stored(outcomes: list[WriteOutcome]) -> list[MemoryRecord]:
    return [o.record for o in outcomes if o.record is not None]


def backdated() -> list[NewMemory]:
    """Memories whose times do not follow their write order (a backfill among new ones)."""
    s = 1_000_000
    return [
        memory("new one", time_us=T0 + 90 * s, agent_id="scout", tags=("fresh",)),
        memory("backfilled", time_us=T0 - 30 * HOUR, agent_id="scout", event_type="error"),
        memory("newer", time_us=T0 + 95 * s, agent_id="analyst", importance=0.8),
        memory("same instant", time_us=T0 + 95 * s, agent_id="analyst", tags=("fresh", "x")),
    ]


async def test_changes_follow_commit_order_not_time(loaded: Loaded) -> None:
    store, _ = loaded
    head = await store.change_head()
    items = backdated()
    first = stored(await store.write(items[:2], HOUR))
    second = stored(await store.write(items[2:], HOUR))
    seen, last = await walk(store, head)
    # write order, not time order (the memories of one batch commit together: their order
    # among themselves is the store's)
    got = [r for _, r in seen]
    assert len(got) == 4
    assert {r.id for r in got[:2]} == {r.id for r in first}
    assert {r.id for r in got[2:]} == {r.id for r in second}
    assert sorted(got, key=lambda r: r.id) == sorted(first + second, key=lambda r: r.id)
    positions = [p for p, _ in seen]
    assert positions == sorted(set(positions)) and positions[0] > head
    assert last == positions[-1] == await store.change_head()
    # nothing after the head; a walk from there is empty and complete
    page = await store.changes(last, ALL, 10)
    assert page.entries == [] and page.complete and page.position == last


async def test_changes_filter_like_queries(loaded: Loaded) -> None:
    store, _ = loaded
    head = await store.change_head()
    written = stored(await store.write(backdated(), HOUR))
    for q in (
        replace(ALL, agent_id="analyst"),
        replace(ALL, tags=("fresh",)),
        replace(ALL, event_types=("error",)),
        replace(ALL, min_importance=0.5),
        replace(ALL, content_contains="NEW"),
        replace(ALL, agent_id="nobody"),
    ):
        seen, last = await walk(store, head, q, limit=1)
        assert [r for _, r in seen] == [r for r in written if matches(r, q)], q
        assert last == await store.change_head()  # the walk passes what did not match


async def test_a_position_is_never_handed_out_twice(loaded: Loaded) -> None:
    store, _ = loaded
    head = await store.change_head()
    first = stored(await store.write([memory("a", time_us=T0 + 100, agent_id="x")], HOUR))
    doomed = stored(await store.write([memory("b", time_us=T0 + 200, agent_id="x")], HOUR))
    seen, _ = await walk(store, head)
    doomed_at = seen[-1][0]
    assert await store.delete([doomed[0].id]) == [doomed[0].id]
    after = stored(await store.write([memory("c", time_us=T0 + 300, agent_id="x")], HOUR))
    seen, _ = await walk(store, head)
    assert [r.content for _, r in seen] == ["a", "c"]  # the erased memory is gone
    assert seen[0][1] == first[0] and seen[1][1] == after[0]
    assert seen[1][0] > doomed_at  # a reader already at "b" still gets "c"


async def test_a_selective_filter_reads_a_bounded_window(loaded: Loaded) -> None:
    """One call looks at no more than CHANGE_SCAN memories: a filter matching nothing
    returns an incomplete page whose position has moved on (the next call continues)."""
    store, _ = loaded
    head = await store.change_head()
    t = T0 + 1000
    items = [memory(f"bulk {i}", time_us=t + i, agent_id="bulk") for i in range(CHANGE_SCAN + 5)]
    for start in range(0, len(items), 1000):
        await store.write(items[start : start + 1000], None)
    page = await store.changes(head, replace(ALL, agent_id="nobody"), 10)
    assert page.entries == [] and not page.complete
    assert page.position == head + CHANGE_SCAN
    rest = await store.changes(page.position, replace(ALL, agent_id="nobody"), 10)
    assert rest.complete and rest.position == await store.change_head()


async def test_racing_writers_are_each_seen_once(loaded: Loaded) -> None:
    """Writers commit while a reader follows the change log: the reader ends with every
    memory exactly once, whatever order the commits took."""
    store, _ = loaded
    head = await store.change_head()
    writers, per_writer = 6, 25
    done = asyncio.Event()

    async def writer(w: int) -> list[MemoryRecord]:
        out: list[MemoryRecord] = []
        for i in range(per_writer):
            at = T0 + 500_000 + (i * writers + w) * 7 - (w % 3) * 3 * HOUR  # some backdated
            item = memory(f"w{w} #{i}", time_us=at, agent_id=f"writer{w}")
            if i % 5 == 4:  # some batches
                batch = [item, replace(item, content=item.content + " b", dedup_key=f"b{w}{i}")]
                out += stored(await store.write(batch, HOUR))
            else:
                out += stored(await store.write([item], HOUR))
            await asyncio.sleep(0)
        return out

    async def reader() -> list[tuple[int, MemoryRecord]]:
        seen: list[tuple[int, MemoryRecord]] = []
        position = head
        while True:
            finished = done.is_set()  # read once more after the writers finished
            page = await store.changes(position, ALL, 7)
            seen += page.entries
            position = page.position
            if finished and page.complete:
                return seen
            await asyncio.sleep(0)

    reading = asyncio.create_task(reader())
    results = await asyncio.gather(*(writer(w) for w in range(writers)))
    done.set()
    seen = await asyncio.wait_for(reading, 120)
    written = [r for batch in results for r in batch]
    ids = [r.id for _, r in seen]
    assert len(ids) == len(set(ids)), "a memory was delivered twice"
    assert set(ids) == {r.id for r in written}, "a memory was skipped"
    assert [p for p, _ in seen] == sorted(p for p, _ in seen)
