"""The feed's costs (docs/feed.md):

- ``latency``: write → event latency of ``GET /api/v1/stream`` with N subscribers (default
  100) on a real ``memtrace serve``: one writer posts memories one at a time at a steady rate;
  every subscriber (a raw asyncio socket parsing the SSE lines, so the client costs little CPU)
  timestamps each event. Latency = event received - just before the POST was sent (the write
  itself included). Also the server's CPU per delivered event.
- ``pg-writes``: what the change log costs PostgreSQL writes: single remembers of one org from
  C concurrent writers (and of C orgs, one writer each) with the ``memories_log_changes``
  trigger on, then off (the same build; ``ALTER TABLE … DISABLE TRIGGER``), alternating, on a
  throwaway server (fsync on unless ``--no-fsync``); throughput, latency and the server's CPU
  per memory.

.venv/bin/python -m bench.stream latency --subscribers 100 --writes 300 --rate 20
.venv/bin/python -m bench.stream pg-writes --writers 8 --writes 400
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time

import httpx

from bench.common import Server, percentile, print_table

_SEQ = re.compile(rb'"content":"bench-(\d+)"')


async def _subscriber(url: str, key: str, received: dict[int, float], ready: asyncio.Event) -> None:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET /api/v1/stream HTTP/1.1\r\nHost: {host}\r\nx-api-key: {key}\r\n"
        "accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"stream refused: {status!r}")
    ready.set()
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b"data:") or b'"content":"bench-' in line:
                found = _SEQ.search(line)
                if found:
                    received[int(found.group(1))] = time.perf_counter()
    finally:
        writer.close()


async def latency(args: argparse.Namespace) -> list[tuple[str, str]]:
    server = Server.start()
    try:
        readies = [asyncio.Event() for _ in range(args.subscribers)]
        received: list[dict[int, float]] = [{} for _ in range(args.subscribers)]
        tasks = [
            asyncio.create_task(_subscriber(server.url, server.key, received[i], readies[i]))
            for i in range(args.subscribers)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
        sent: dict[int, float] = {}
        cpu_before = server.cpu_seconds()
        async with httpx.AsyncClient(
            base_url=server.url, headers={"x-api-key": server.key}, timeout=30
        ) as http:
            period = 1 / args.rate
            started = time.perf_counter()
            for n in range(args.writes):
                due = started + n * period
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                sent[n] = time.perf_counter()
                response = await http.post(
                    "/api/v1/memories", json={"agent_id": "writer", "content": f"bench-{n}"}
                )
                response.raise_for_status()
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline:
            if all(len(r) == args.writes for r in received):
                break
            await asyncio.sleep(0.05)
        cpu = server.cpu_seconds() - cpu_before
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        server.stop()
    samples = [(got[n] - sent[n]) * 1000 for got in received for n in got]
    missing = args.subscribers * args.writes - len(samples)
    events = len(samples)
    return [
        ("subscribers, writes, rate", f"{args.subscribers}, {args.writes}, {args.rate}/s"),
        ("events delivered (missing)", f"{events} ({missing})"),
        ("write → event p50", f"{percentile(samples, 50):.1f} ms"),
        ("write → event p95", f"{percentile(samples, 95):.1f} ms"),
        ("write → event p99", f"{percentile(samples, 99):.1f} ms"),
        ("write → event max", f"{max(samples):.1f} ms"),
        ("server CPU per event", f"{cpu / max(events, 1) * 1e6:.0f} us"),
    ]


async def _pg_writes(
    url: str, orgs: list[str], writes: int, writers: int
) -> tuple[float, list[float]]:
    """``writers`` tasks writing ``writes`` single memories each, task i into ``orgs[i %
    len(orgs)]``: (memories per second, per-write latencies in ms)."""
    from memtrace.config import PostgresSettings
    from memtrace.domain.timestamps import now_us
    from memtrace.storage.base import NewMemory
    from memtrace.storage.postgres.db import PgDatabase
    from memtrace.storage.postgres.store import PostgresStore

    db = PgDatabase(PostgresSettings(url=url, pool_max=writers + 2))
    await db.open()
    stores = {org: PostgresStore(db, org) for org in orgs}
    for store in stores.values():
        await store.open()
    latencies: list[float] = []

    async def writer(i: int) -> None:
        store = stores[orgs[i % len(orgs)]]
        for n in range(writes):
            item = NewMemory(
                now_us(),
                f"agent{i}",
                None,
                "episodic",
                "general",
                f"w{i} {n}",
                None,
                (),
                None,
                f"k{i}-{n}-{time.perf_counter_ns()}",
                None,
            )
            t0 = time.perf_counter()
            await store.write([item], 86_400_000_000)
            latencies.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(writer(i) for i in range(writers)))
    elapsed = time.perf_counter() - started
    await db.close()
    return writers * writes / elapsed, latencies


async def pg_writes(args: argparse.Namespace) -> list[tuple[str, str]]:
    import asyncpg

    from bench.cluster import pg_cpu_seconds
    from memtrace.config import PostgresSettings
    from memtrace.storage.postgres.db import PgDatabase
    from memtrace.storage.postgres.store import migrate
    from memtrace.testing.postgres import start_postgres

    rows: list[tuple[str, str]] = []
    with start_postgres(fsync=args.fsync) as pg:
        url = pg.create_database("feedbench")
        db = PgDatabase(PostgresSettings(url=url))
        await db.open()
        await migrate(db)
        await db.close()
        for trigger in ("on", "off") * args.rounds:
            conn = await asyncpg.connect(url)  # (the app role owns the table)
            action = "ENABLE" if trigger == "on" else "DISABLE"
            await conn.execute(f"ALTER TABLE memories {action} TRIGGER memories_log_changes")
            await conn.close()
            for label, orgs in (
                ("one org", ["org_one"]),
                (f"{args.writers} orgs", [f"org_{i}" for i in range(args.writers)]),
            ):
                cpu = pg_cpu_seconds(pg)
                rate, latencies = await _pg_writes(url, orgs, args.writes, args.writers)
                cpu_us = (pg_cpu_seconds(pg) - cpu) / (args.writes * args.writers) * 1e6
                rows.append(
                    (
                        f"trigger {trigger}, {label}, {args.writers} writers",
                        f"{rate:,.0f} memories/s, p50 {percentile(latencies, 50):.2f} ms, "
                        f"p99 {percentile(latencies, 99):.2f} ms, "
                        f"PostgreSQL CPU {cpu_us:.0f} us/memory",
                    )
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--subscribers", type=int, default=100)
    lat.add_argument("--writes", type=int, default=300)
    lat.add_argument("--rate", type=float, default=20.0, help="writes per second")
    pgw = sub.add_parser("pg-writes")
    pgw.add_argument("--writers", type=int, default=8)
    pgw.add_argument("--writes", type=int, default=400, help="per writer")
    pgw.add_argument("--rounds", type=int, default=2, help="on/off alternations")
    pgw.add_argument("--no-fsync", dest="fsync", action="store_false")
    args = parser.parse_args()
    rows = asyncio.run(latency(args) if args.what == "latency" else pg_writes(args))
    print_table(rows)


if __name__ == "__main__":
    main()
