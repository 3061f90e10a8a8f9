"""What an acknowledged memory on Arc rests on (docs/security.md, "Durability"): a row leaves
the outbox only once Arc shows it in a query, every batch's time unit is unambiguous, and rows
Arc refuses are parked instead of blocking the org. Against the emulator over real HTTP."""

from __future__ import annotations

from pathlib import Path

from memtrace.domain.timestamps import now_us
from memtrace.storage.arc.store import ArcStore
from memtrace.storage.base import MemoryQuery
from memtrace.telemetry.metrics import Metrics
from memtrace.testing.arc_server import EmulatorServer
from tests.storage.arc_support import (
    FAST_ARC,
    arc_store,
    drained,
    eventually,
    memory,
    settled,
)

ORG = "org_durable"
ALL = MemoryQuery(org_id=ORG, order="asc", limit=1000)


async def listed_ids(store: ArcStore) -> list[str]:
    return [r.id for r in await store.query(ALL)]


def arc_ids(server: EmulatorServer) -> list[str]:
    return [row[0] for row in server.emulator.sql("db1", "SELECT id FROM events ORDER BY id")]


async def test_rows_arc_lost_from_its_buffer_are_shipped_again(
    arc_server: EmulatorServer, tmp_path: Path
) -> None:
    """Arc answers 204, then crashes before its flush: nothing acknowledged may be lost, and
    reads must show every row the whole time (the overlay keeps it until Arc shows it)."""
    arc_server.emulator.flush_delay_s = 3600.0  # Arc buffers and does not flush on its own
    metrics = Metrics()
    store = arc_store(
        arc_server,
        tmp_path,
        ORG,
        settings=FAST_ARC.model_copy(update={"visibility_grace_s": 0.5}),
        metrics=metrics,
    )
    await store.open()
    try:
        now = now_us()
        outcomes = await store.write([memory(f"m{i}", time_us=now - i) for i in range(5)], None)
        ids = sorted(o.record.id for o in outcomes if o.record is not None)
        await drained(store)  # every row answered 204 and sits in Arc's buffer
        assert arc_server.emulator.buffered() == 5
        assert arc_server.emulator.lose_buffer() == 5  # the crash: Arc forgets them

        async def shipped_again_and_still_visible() -> bool:
            assert sorted(await listed_ids(store)) == ids  # never invisible, never twice
            return arc_server.emulator.buffered() == 5

        await eventually(shipped_again_and_still_visible)
        reshipped = metrics.registry.get_sample_value(
            "memtrace_arc_reshipped_total", {"org_id": ORG}
        )
        assert reshipped is not None and reshipped >= 5
        assert (await store.outbox.counts()).total == 5  # not verified yet: still kept
        assert arc_server.emulator.flush() == 5  # this time Arc flushes them
        await settled(store)  # verified in Arc, so they leave the outbox
        assert arc_ids(arc_server) == ids  # each exactly once
        assert sorted(await listed_ids(store)) == ids
    finally:
        await store.close()


async def test_unflushed_rows_stay_readable_past_the_grace(
    arc_server: EmulatorServer, tmp_path: Path
) -> None:
    """Arc's flush slower than ``visibility_grace_s``: shipped rows stay in the outbox (shipped
    again, never dropped) and visible until Arc shows them."""
    arc_server.emulator.flush_delay_s = 3600.0
    store = arc_store(
        arc_server,
        tmp_path,
        ORG,
        settings=FAST_ARC.model_copy(update={"visibility_grace_s": 0.2}),
    )
    await store.open()
    try:
        written = await store.write([memory("slow flush", time_us=now_us())], None)
        memory_id = written[0].record.id  # type: ignore[union-attr]
        await drained(store)

        async def shipped_more_than_once() -> bool:
            assert await listed_ids(store) == [memory_id]
            assert await store.count(ALL) == 1
            return arc_server.emulator.buffered() >= 2

        await eventually(shipped_more_than_once)
        arc_server.emulator.flush()
        await settled(store)
        assert await listed_ids(store) == [memory_id]  # Arc holds it twice; read once
        assert await store.count(ALL) == 1
    finally:
        await store.close()


async def test_backfill_before_april_1970_keeps_every_time(
    arc_server: EmulatorServer, tmp_path: Path
) -> None:
    """A backfill dated before 1970-04-26 first in a batch made Arc read the whole batch as
    milliseconds or seconds (a memory of today landed in year 58888)."""
    store = arc_store(arc_server, tmp_path, ORG)
    await store.open()
    try:
        now = now_us()
        times = [86_400_000_123, now, 5_000_001, 9_999_999_999_999, 10**13]
        outcomes = await store.write(
            [memory(f"at {t}", time_us=t, dedup_key=f"k{t}") for t in times], None
        )
        # a batch made only of early rows (it needs the unit anchor row)
        early = [7, 1_000_000, 3_600_000_000_123]
        outcomes += await store.write(
            [memory(f"early {t}", time_us=t, dedup_key=f"e{t}") for t in early], None
        )
        expected = {o.record.id: o.record.time for o in outcomes if o.record is not None}
        await settled(store)  # read back from Arc, not from the outbox
        got = {r.id: r.time for r in await store.query(ALL)}
        assert got == expected
        in_arc = arc_server.emulator.sql(
            "db1", f"SELECT id, epoch_us(time) FROM events WHERE org_id = '{ORG}'"
        )
        assert dict(in_arc) == expected
        stats = await store.agent_stats("crawler", 0)
        assert stats.memory_count == len(expected)
    finally:
        await store.close()


async def test_rows_arc_refuses_are_parked_not_blocking(
    arc_server: EmulatorServer, tmp_path: Path
) -> None:
    """One row Arc refuses must not hold back the org's other writes; it stays readable,
    counted, and ships once retried after the cause is fixed."""
    arc_server.emulator.refuse_content = "poison"
    store = arc_store(arc_server, tmp_path, ORG)
    await store.open()
    try:
        now = now_us()
        first = await store.write(
            [memory("poison pill" if i == 3 else f"fine {i}", time_us=now - i) for i in range(8)],
            None,
        )
        later = await store.write([memory("written after", time_us=now + 1)], None)
        ids = {o.record.id for o in first + later if o.record is not None}
        poison = first[3].record.id  # type: ignore[union-attr]

        async def others_reach_arc() -> bool:
            return set(arc_ids(arc_server)) == ids - {poison}

        await eventually(others_reach_arc)  # the refused row does not block the rest
        await settled_except_parked(store)
        assert (await store.outbox.counts()).parked == 1
        assert set(await listed_ids(store)) == ids  # the parked row is still readable
        assert (await store.get(poison)) is not None
        health = await store.health()
        assert health.healthy and health.outbox_parked == 1 and health.outbox_pending == 0
        assert health.detail is not None and "memtrace org outbox" in health.detail
        (row,) = await store.outbox.parked(10)
        assert row.id == poison and "refused" in row.reason

        arc_server.emulator.refuse_content = None  # fixed on Arc's side; the operator retries
        assert await store.outbox.unpark() == 1
        await settled(store)
        assert set(arc_ids(arc_server)) == ids
    finally:
        await store.close()


async def settled_except_parked(store: ArcStore) -> None:
    async def done() -> bool:
        counts = await store.outbox.counts()
        return counts.pending == 0 and counts.unverified == 0

    await eventually(done)
