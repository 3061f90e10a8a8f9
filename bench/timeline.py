"""Timeline latency at the 1M-memory org of bench/generate.py (30 days, 100 agents), over HTTP.

Generates the org into a fresh data dir, starts a real ``memtrace serve`` on it and asks
``GET /api/v1/timeline`` one request at a time on a keep-alive connection (the latency one
dashboard or agent sees). Cases: the target (30 days, hourly buckets, grouped by event type)
and its variants answered from the embedded store's hourly counts, then the same window
counted from the rows (a filter the hourly counts do not keep, matching every memory: what
every timeline cost before the counts existed), and a filter that narrows the rows.

.venv/bin/python -m bench.timeline                      # 1,000,000 memories (~5 minutes)
.venv/bin/python -m bench.timeline --memories 100000 --repeat 50
.venv/bin/python -m bench.timeline --data-dir DIR --key KEY   # an org generated before
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson

from bench.common import Server, percentile, print_table
from bench.generate import generate
from bench.loadgen import Connection

ALL_TYPES = "episodic,decision,entity,session"
# (label, query parameters); labels with "from rows" are counted from the rows (fewer runs)
CASES: list[tuple[str, dict[str, str]]] = [
    ("30d, 1h buckets, by event_type (target)", {"group_by": "event_type"}),
    ("30d, 1h buckets, no grouping", {}),
    ("30d, 1h buckets, by memory_type", {"group_by": "memory_type"}),
    ("30d, 1h buckets, by agent_id (100 agents)", {"group_by": "agent_id"}),
    ("30d, 1h buckets, by tag", {"group_by": "tag"}),
    ("30d, 1d buckets, event_type=error", {"bucket": "1d", "event_type": "error"}),
    ("30d, 6h buckets, agent_042 by agent_id", {"bucket": "6h", "agent_id": "agent_042"}),
    (
        "30d, 1h, by event_type, counted from rows (all 4 memory types)",
        {"group_by": "event_type", "memory_type": ALL_TYPES},
    ),
    (
        "7d, 15m buckets, by event_type, from rows",
        {"since": "7d", "bucket": "15m", "group_by": "event_type", "memory_type": ALL_TYPES},
    ),
    ("30d, 1h, agent_042 + errors, from rows", {"agent_id": "agent_042", "event_type": "error"}),
]


async def _latency(url: str, key: str, path: str, repeat: int, warmup: int) -> dict[str, Any]:
    conn = await Connection.open(url)
    samples: list[float] = []
    total = 0
    try:
        for i in range(warmup + repeat):
            started = time.perf_counter()
            status, payload = await conn.request("GET", path, b"", {"x-api-key": key})
            elapsed = (time.perf_counter() - started) * 1000
            if status != 200:
                raise RuntimeError(f"GET {path} -> {status}: {payload[:300]!r}")
            if i >= warmup:
                samples.append(elapsed)
            if i == 0:
                total = int(orjson.loads(payload)["total"])
    finally:
        conn.close()
    return {
        "p50_ms": round(percentile(samples, 50), 2),
        "p99_ms": round(percentile(samples, 99), 2),
        "total": total,
        "runs": repeat,
    }


def run(
    memories: int, repeat: int, rows_repeat: int, warmup: int, data_dir: Path | None, key: str
) -> dict[str, Any]:
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}",
        "load_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="memtrace-bench-") as tmp:
        if data_dir is None:
            print(f"generating {memories:,} memories ...", flush=True)
            org = generate(Path(tmp) / "big", memories)
            meta["generate_s"] = round(org.seconds, 1)
            meta["generate_cpu_us_per_memory"] = round(org.cpu_seconds / org.memories * 1e6, 1)
            print(f"  {org.memories:,} in {org.seconds:.1f} s", flush=True)
            data_dir, key = org.data_dir, org.key
        server = Server.start(data_dir, key=key)
        try:
            for label, params in CASES:
                query = {"since": "30d", "bucket": "1h", **params}
                path = "/api/v1/timeline?" + urlencode(query)
                runs = rows_repeat if "from rows" in label else repeat
                figures[label] = asyncio.run(
                    _latency(server.url, server.key, path, runs, min(warmup, runs))
                )
                print(f"  {label}: {figures[label]}", flush=True)
        finally:
            server.stop()
    meta["load_at_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return {"meta": meta, "figures": figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memories", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--rows-repeat", type=int, default=10, help="runs of the row cases")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--data-dir", type=Path, help="an org generated before (with --key)")
    parser.add_argument("--key", default="", help="a read key of that org")
    parser.add_argument("--json", type=Path, default=Path("bench/results/timeline.json"))
    args = parser.parse_args()
    result = run(args.memories, args.repeat, args.rows_repeat, args.warmup, args.data_dir, args.key)
    print()
    meta = result["meta"]
    print(
        f"{meta['date']}  {meta['machine']}  load {meta['load_at_start']} -> {meta['load_at_end']}"
    )
    print_table(
        [
            (label, f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms ({r['total']:,} memories)")
            for label, r in result["figures"].items()
        ]
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"\nJSON written to {args.json}")


if __name__ == "__main__":
    main()
