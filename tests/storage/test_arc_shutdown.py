"""Graceful shutdown of an Arc store: pending outbox rows are shipped while Arc answers, and
stay durable in the outbox when it does not."""

from __future__ import annotations

import time
from pathlib import Path

from memtrace.config import ArcSettings
from memtrace.domain.timestamps import now_us
from memtrace.storage.arc.outbox import Outbox
from memtrace.testing.arc_server import EmulatorServer
from tests.storage.arc_support import arc_store, memory

# The shipper lingers 10 minutes before a batch, so only the shutdown drain can ship.
LINGERING = ArcSettings(
    flush_interval_ms=600_000, retry_max_s=0.2, visibility_grace_s=0.0, shutdown_drain_s=2.0
)


async def test_close_ships_pending_rows(arc_server: EmulatorServer, tmp_path: Path) -> None:
    store = arc_store(arc_server, tmp_path, "org_a", settings=LINGERING)
    await store.open()
    now = now_us()
    outcomes = await store.write([memory(f"m{i}", time_us=now - i) for i in range(5)], None)
    assert await store.outbox.pending_count() == 5

    await store.close()

    written = {outcome.record.id for outcome in outcomes if outcome.record is not None}
    in_arc = arc_server.emulator.sql("db1", "SELECT id FROM events")
    assert sorted(row[0] for row in in_arc) == sorted(written)


async def test_close_with_arc_down_keeps_rows_in_the_outbox(
    arc_server: EmulatorServer, tmp_path: Path
) -> None:
    store = arc_store(arc_server, tmp_path, "org_a", settings=LINGERING)
    await store.open()
    now = now_us()
    await store.write([memory(f"m{i}", time_us=now - i) for i in range(3)], None)
    arc_server.emulator.fault = 503

    started = time.monotonic()
    await store.close()
    assert time.monotonic() - started < LINGERING.shutdown_drain_s + 1.0

    outbox = Outbox(tmp_path / "org_a-db1-outbox.db", "org_a", synchronous="NORMAL")
    await outbox.open()
    try:
        assert await outbox.pending_count() == 3
    finally:
        await outbox.close()
