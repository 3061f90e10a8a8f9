"""Cluster mode benchmarks (bench/README.md, "Cluster mode"): memtrace on PostgreSQL.

In one run, on one throwaway PostgreSQL 15 server (fsync on, data on disk, started by
``memtrace.testing.postgres``):

1. **PostgreSQL store beside the embedded store**: the same generated org (``--memories``,
   default 1M) loaded into each (``bench/generate.py``: the Runtime's own bulk path), then a
   real ``memtrace serve`` on each measured over HTTP exactly as the suite does
   (``bench/run.py``): recall, search (rare word; tags + type + 7 d), session context, agent
   stats, batched ingest into the loaded org (dedup on) and single remembers;
2. **1 vs 2 replicas** on one PostgreSQL database: single remembers from 32 connections into
   one replica, then spread over two, with throughput and CPU per request of the replicas and
   of PostgreSQL, so the scaling on more cores can be projected;
3. **what PostgreSQL spends per memory**: server CPU (all its processes) per memory loaded,
   ingested and remembered, and bytes on disk per memory.

    python -m bench.cluster                   # full: 1M memories, ~20-30 minutes on 2 cores
    python -m bench.cluster --memories 100000 --requests 3000 --repeat 100    # quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench.common import Server, print_table
from bench.generate import generate
from bench.loadgen import Connection, closed_loop
from bench.run import ingest_figure, query_figures, remember_figure
from memtrace.testing.postgres import PgServer, start_postgres


def pg_cpu_seconds(pg: PgServer) -> float:
    """CPU (user + system) of the whole PostgreSQL server so far: the postmaster, its exited
    children (``cutime``/``cstime``) and its live ones (backends, checkpointer, WAL writer)."""
    pid = int((pg.datadir / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")

    def fields(p: int) -> list[str]:
        return Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()

    own = fields(pid)
    total = sum(int(own[i]) for i in (11, 12, 13, 14))
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            stat = fields(int(child))
        except OSError:
            continue
        total += int(stat[11]) + int(stat[12])
    return total / tick


async def _sql(url: str, query: str) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


def _size_bytes(url: str) -> int:
    return int(
        asyncio.run(
            _sql(
                url,
                "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('memories')",
            )
        )
    )


def store_comparison(pg: PgServer, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for backend in ("embedded", "postgres"):
        print(f"{backend}: generating {args.memories:,} memories ...", flush=True)
        data_dir = root / backend / "data"
        env: dict[str, str] = {}
        overrides: dict[str, Any] = {}
        url = ""
        if backend == "postgres":
            url = pg.create_database("store")
            env = {"MEMTRACE_POSTGRES_URL": url, "MEMTRACE_STORAGE_DEFAULT_BACKEND": "postgres"}
            overrides = {"postgres.url": url, "storage.default_backend": "postgres"}
        pg_before = pg_cpu_seconds(pg)
        org = generate(data_dir, args.memories, overrides=overrides)
        load: dict[str, Any] = {
            "memories": org.memories,
            "seconds": round(org.seconds, 1),
            "memories_per_s": round(org.memories / org.seconds),
            "client_cpu_us_per_memory": round(org.cpu_seconds / org.memories * 1e6, 1),
        }
        if backend == "postgres":
            load["postgres_cpu_us_per_memory"] = round(
                (pg_cpu_seconds(pg) - pg_before) / org.memories * 1e6, 1
            )
            load["bytes_per_memory"] = round(_size_bytes(url) / org.memories)
        else:
            files = (data_dir / "orgs").rglob("memories.db*")
            load["bytes_per_memory"] = round(sum(f.stat().st_size for f in files) / org.memories)
        server = Server.start(data_dir, env=env, key=org.key)
        try:
            print(f"{backend}: queries ...", flush=True)
            figures: dict[str, Any] = {"load": load}
            figures.update(asyncio.run(query_figures(server, org.context_session, args.repeat)))
            print(f"{backend}: batched ingest and single remembers ...", flush=True)
            before = pg_cpu_seconds(pg)
            figures["ingest"] = asyncio.run(ingest_figure(server, args.ingest, 4))
            if backend == "postgres":
                figures["ingest"]["postgres_cpu_us_per_memory"] = round(
                    (pg_cpu_seconds(pg) - before) / args.ingest * 1e6, 1
                )
            before = pg_cpu_seconds(pg)
            figures["remember"] = asyncio.run(remember_figure(server, args.requests, 32))
            if backend == "postgres":
                figures["remember"]["postgres_cpu_us_per_request"] = round(
                    (pg_cpu_seconds(pg) - before) / (args.requests + min(500, args.requests)) * 1e6
                )
        finally:
            server.stop()
        out[backend] = figures
    return out


async def _spread(servers: list[Server], requests: int, clients: int, tag: str) -> float:
    """Single remembers spread evenly over ``servers``; returns the wall time."""
    headers = {"x-api-key": servers[0].key}

    def call_for(offset: int) -> Any:
        async def call(conn: Connection, i: int) -> None:
            body = orjson.dumps(
                {
                    "agent_id": f"agent_{i % 100:03d}",
                    "content": f"replica bench {tag} {offset} number {i}",
                    "event_type": "step",
                }
            )
            status, payload = await conn.request("POST", "/api/v1/memories", body, headers)
            if status != 201:
                raise RuntimeError(f"remember -> {status}: {payload[:300]!r}")

        return call

    share = requests // len(servers)
    started = time.perf_counter()
    await asyncio.gather(
        *(
            closed_loop(s.url, clients // len(servers), share, call_for(n))
            for n, s in enumerate(servers)
        )
    )
    return time.perf_counter() - started


def replica_scaling(pg: PgServer, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    url = pg.create_database("replicas")
    env = {
        "MEMTRACE_POSTGRES_URL": url,
        "MEMTRACE_STORAGE_DEFAULT_BACKEND": "postgres",
        "MEMTRACE_POSTGRES_POOL_MAX": "16",
    }
    servers = [Server.start(root / "replica0" / "data", env=env)]
    out: dict[str, Any] = {}
    try:
        for count in (1, 2):
            if count == 2:
                second = Server.start(root / "replica1" / "data", env=env, key=servers[0].key)
                servers.append(second)
            print(f"{count} replica(s): single remembers ...", flush=True)
            asyncio.run(_spread(servers, min(1000, args.requests), 32, f"warm{count}"))
            cpu = [s.cpu_seconds() for s in servers]
            pg_before = pg_cpu_seconds(pg)
            seconds = asyncio.run(_spread(servers, args.requests, 32, f"run{count}"))
            replica_cpu = sum(s.cpu_seconds() - c for s, c in zip(servers, cpu, strict=True))
            pg_used = pg_cpu_seconds(pg) - pg_before
            out[f"{count}_replicas"] = {
                "requests_per_s": round(args.requests / seconds),
                "replica_cpu_us_per_request": round(replica_cpu / args.requests * 1e6),
                "postgres_cpu_us_per_request": round(pg_used / args.requests * 1e6),
                "requests": args.requests,
            }
    finally:
        for server in servers:
            server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--memories", type=int, default=1_000_000)
    parser.add_argument("--ingest", type=int, default=100_000, help="memories, batches of 1000")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=500)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--skip-stores", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="memtrace-cluster-bench-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # the postgres user runs the server from inside it
        pg = start_postgres(
            fsync=True,
            base_dir=root,
            shared_buffers="2GB",
            settings={"max_wal_size": "8GB", "max_connections": 200},
        )
        try:
            results: dict[str, Any] = {}
            if not args.skip_stores:
                results["stores"] = store_comparison(pg, root, args)
            results["replicas"] = replica_scaling(pg, root, args)
        finally:
            pg.stop()
    results["seconds"] = round(time.perf_counter() - started)
    rows = []
    for backend, figures in results.get("stores", {}).items():
        for name, value in figures.items():
            rows.append((f"{backend} {name}", json.dumps(value)))
    for name, value in results["replicas"].items():
        rows.append((name, json.dumps(value)))
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
