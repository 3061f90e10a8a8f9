"""Ingest through ArcStore into the Arc emulator: acknowledged rows/s, shipped rows/s, ship latency,
and CPU per memory against the embedded store in the same run.

The emulator runs as its own process (`python -m memtrace.testing.arc_server`, real HTTP); the
store runs here with its durable outbox (synchronous=FULL, the default) in a temp dir. Writes
are batches of --batch memories, as the REST batch endpoint would hand them to the store.
Before that, the same memories go into an EmbeddedStore (same batches, same settings): the CPU
of this process per memory (all threads; the emulator's CPU is not counted) compares the two
paths, acknowledged (until the last write returned) and, for Arc, until every row was shipped
and verified (the outbox empty).

.venv/bin/python -m bench.arc_ingest --memories 100000 --batch 1000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import DAY_US, free_port, percentile, print_table, wait_healthy
from bench.common import memory as sample_memory
from memtrace.config import ArcSettings
from memtrace.domain.dedup import derive_dedup_key
from memtrace.domain.timestamps import now_us
from memtrace.storage.arc.store import ArcStore
from memtrace.storage.arc.target import ArcTarget
from memtrace.storage.base import NewMemory
from memtrace.storage.embedded import EmbeddedStore

TOKEN = "bench-token"


def new_memories(total: int, seed: int = 11, days: int = 30) -> list[NewMemory]:
    rng = random.Random(seed)
    now = now_us()
    out = []
    for i in range(total):
        item = sample_memory(i, rng, now, 30, 100)
        at = now - rng.randrange(max(1, days * DAY_US))
        out.append(
            NewMemory(
                time=at,
                agent_id=item["agent_id"],
                session_id=item.get("session_id"),
                memory_type=item["memory_type"],
                event_type=item["event_type"],
                content=item["content"],
                metadata=item.get("metadata"),
                tags=tuple(item.get("tags", ())),
                importance=item["importance"],
                dedup_key=derive_dedup_key(
                    item["agent_id"], item["event_type"], item.get("session_id"), item["content"]
                ),
                parent_id=None,
            )
        )
    return out


WINDOW_US = 24 * 3_600_000_000


async def embedded_cpu(items: list[NewMemory], batch: int, workdir: Path) -> float:
    """CPU seconds of this process to write ``items`` into an EmbeddedStore, batch by batch."""
    store = EmbeddedStore(workdir / "memories.db", "org_bench")
    await store.open()
    cpu = time.process_time()
    for start in range(0, len(items), batch):
        await store.write(items[start : start + batch], WINDOW_US)
    cpu = time.process_time() - cpu
    await store.close()
    return cpu


async def run(total: int, batch: int, url: str, workdir: Path, days: int) -> list[tuple[str, str]]:
    fields = ArcSettings.model_fields
    verifies = "verify_after_s" in fields  # False for a tree from before rows were verified
    settings = ArcSettings(batch_size=1000, flush_interval_ms=50)
    store = ArcStore(
        "org_bench",
        ArcTarget(url, "bench", "events", TOKEN),
        workdir / "arc_outbox.db",
        settings,
        dedup_window_us=WINDOW_US,
    )
    # Ship latency per row, from the write's return (acknowledged) to Arc's 204: timed around
    # the client's write, so the figure is the same for any version of the store.
    acked_at: dict[str, int] = {}
    shipped_at: dict[str, int] = {}
    client_write = store.client.write

    async def timed_write(measurement: str, columns: Any) -> None:
        await client_write(measurement, columns)
        at = now_us()
        for memory_id in columns["id"]:
            shipped_at.setdefault(memory_id, at)

    store.client.write = timed_write  # type: ignore[method-assign]

    async def write(items: list[NewMemory]) -> None:
        outcomes = await store.write(items, WINDOW_US)
        at = now_us()
        for outcome in outcomes:
            if outcome.record is not None:
                acked_at[outcome.record.id] = at

    async def outbox_left() -> int:
        if verifies:
            return int((await store.outbox.counts()).total)  # type: ignore[attr-defined]
        return 0

    items = new_memories(total, days=days)
    embedded = await embedded_cpu(items, batch, workdir)
    await store.open()
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, total, batch):
        await write(items[start : start + batch])
    acked, acked_cpu = time.perf_counter() - started, time.process_time() - cpu
    while await store.outbox.pending_count():
        await asyncio.sleep(0.02)
    shipped = time.perf_counter() - started
    while await outbox_left():
        await asyncio.sleep(0.05)
    verified, verified_cpu = time.perf_counter() - started, time.process_time() - cpu
    heavy = [shipped_at[i] - acked_at[i] for i in acked_at if i in shipped_at]
    # Light load: single writes at ~200/s, the latency a lone agent's memory sees.
    light = new_memories(500, seed=12, days=days)
    light_ids = set(acked_at)
    for item in light:
        await write([item])
        await asyncio.sleep(0.005)
    while await store.outbox.pending_count():
        await asyncio.sleep(0.02)
    await store.close()
    lat = [v / 1000 for v in heavy]
    light_lat = [shipped_at[i] / 1000 - acked_at[i] / 1000 for i in acked_at if i not in light_ids]
    per = 1e6 / total
    return [
        ("memories", f"{total:,} in batches of {batch}, times spread over {days} days"),
        ("CPU per memory, embedded store", f"{embedded * per:.1f} us"),
        (
            "CPU per memory, Arc acknowledged",
            f"{acked_cpu * per:.1f} us ({acked_cpu / embedded:.2f}x the embedded store)",
        ),
        (
            "CPU per memory, Arc shipped + verified",
            f"{verified_cpu * per:.1f} us ({verified_cpu / embedded:.2f}x the embedded store)",
        ),
        ("acknowledged (outbox commit)", f"{total / acked:,.0f} rows/s ({acked:.2f} s)"),
        ("shipped to Arc (end to end)", f"{total / shipped:,.0f} rows/s ({shipped:.2f} s)"),
        (
            "verified in Arc, outbox empty",
            f"{verified:.2f} s (verify_after_s {settings.verify_after_s} s)"  # type: ignore[attr-defined]
            if verifies
            else "n/a (rows not verified)",
        ),
        (
            "ship latency p50 / p99 / max",
            f"{percentile(lat, 50):.0f} / {percentile(lat, 99):.0f} / {max(lat):.0f} ms",
        ),
        (
            "ship latency at ~200 writes/s (p50/p99)",
            f"{percentile(light_lat, 50):.0f} / {percentile(light_lat, 99):.0f} ms",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--days",
        type=int,
        default=30,
        help="memory times spread over this many days back (0: all now, live writes)",
    )
    args = parser.parse_args()
    port = free_port()
    emulator = subprocess.Popen(
        [sys.executable, "-m", "memtrace.testing.arc_server", "--port", str(port),
         "--token", TOKEN],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, 30)
        with tempfile.TemporaryDirectory(prefix="memtrace-arc-bench-") as tmp:
            rows = asyncio.run(run(args.memories, args.batch, url, Path(tmp), args.days))
        print("Arc ingest through ArcStore → emulator")
        print_table(rows)
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)


if __name__ == "__main__":
    main()
