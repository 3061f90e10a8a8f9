"""The memtrace benchmark suite: every figure of the performance issue, in one command.

    make bench          # full: 1,000,000 memories (about 10 minutes on 2 cores)
    make bench-quick    # --quick: 100,000 memories, fewer requests (under 2 minutes)

Steps: generate the org into a fresh data dir (bench/generate.py), start a real
``memtrace serve`` subprocess on it (synchronous=FULL, the default), measure over HTTP with
keep-alive clients (bench/loadgen.py), then print a table and write JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson

from bench.common import RARE_WORD, Server, batches, percentile
from bench.generate import generate
from bench.loadgen import Connection, closed_loop

# (figure, target, check(result) -> met?)
TARGETS: dict[str, tuple[str, Callable[[dict[str, Any]], bool]]] = {
    "batched_ingest": (">= 50,000 memories/s", lambda r: r["memories_per_s"] >= 50_000),
    "single_remember": (
        ">= 3,000 req/s, p99 <= 25 ms",
        lambda r: r["requests_per_s"] >= 3000 and r["p99_ms"] <= 25,
    ),
    "recall": ("p50 <= 2 ms, p99 <= 10 ms", lambda r: r["p50_ms"] <= 2 and r["p99_ms"] <= 10),
    "search_content": ("p50 <= 10 ms", lambda r: r["p50_ms"] <= 10),
    "session_context": ("p50 <= 10 ms", lambda r: r["p50_ms"] <= 10),
    "timeline": ("p50 <= 50 ms", lambda r: r["p50_ms"] <= 50),
    "recall_growth": ("<= 1.5", lambda r: r["ratio"] <= 1.5),
    "mcp_stdio": ("p50 <= 2 ms", lambda r: r["p50_ms"] <= 2),
    "server_rss": ("<= 200 MB", lambda r: r["peak_mb"] <= 200),
}


def _stats(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples, 50), 3),
        "p99_ms": round(percentile(samples, 99), 3),
        "mean_ms": round(sum(samples) / len(samples), 3),
        "runs": len(samples),
    }


async def _latency(
    url: str, method: str, path: str, body: bytes, key: str, repeat: int, warmup: int = 20
) -> dict[str, Any]:
    """One keep-alive client, one request at a time: the latency a single agent sees."""
    conn = await Connection.open(url)
    headers = {"x-api-key": key}
    samples: list[float] = []
    rows = 0
    try:
        for i in range(warmup + repeat):
            started = time.perf_counter()
            status, payload = await conn.request(method, path, body, headers)
            elapsed = (time.perf_counter() - started) * 1000
            if status != 200:
                raise RuntimeError(f"{method} {path} -> {status}: {payload[:300]!r}")
            if i >= warmup:
                samples.append(elapsed)
            if i == 0:
                rows = _row_count(orjson.loads(payload))
    finally:
        conn.close()
    return {**_stats(samples), "rows": rows}


def _row_count(body: Any) -> int:
    for field in ("memories", "results"):
        if isinstance(body, dict) and field in body:
            return len(body[field])
    if isinstance(body, dict) and "context" in body:  # a rendered context
        return int(body["memory_count"])
    if isinstance(body, dict) and "buckets" in body:  # a timeline
        return len(body["buckets"])
    return 0


def _recall_path() -> str:
    return "/api/v1/memories?" + urlencode({"agent_id": "agent_042", "since": "24h", "limit": 50})


async def ingest_figure(server: Server, memories: int, clients: int) -> dict[str, Any]:
    bodies = list(batches(memories, 1000, seed=11))
    headers = {"x-api-key": server.key}

    async def call(conn: Connection, i: int) -> None:
        status, payload = await conn.request("POST", "/api/v1/memories", bodies[i], headers)
        if status != 201:
            raise RuntimeError(f"batch ingest -> {status}: {payload[:300]!r}")

    cpu = server.cpu_seconds()
    result = await closed_loop(server.url, clients, len(bodies), call)
    cpu = server.cpu_seconds() - cpu
    return {
        "server_cpu_us_per_memory": round(cpu / memories * 1e6, 1),
        "memories_per_s": round(memories / result.seconds),
        "memories": memories,
        "batch": 1000,
        "clients": clients,
        "seconds": round(result.seconds, 2),
        "batch_p50_ms": round(percentile(result.latencies_ms, 50), 1),
    }


async def remember_figure(
    server: Server, requests: int, clients: int, keys: list[str] | None = None
) -> dict[str, Any]:
    """Single remembers in a closed loop; with ``keys``, request i goes to the org of
    ``keys[i % len(keys)]`` (writes of different orgs take different SQLite writers)."""
    all_headers = [{"x-api-key": key} for key in keys or [server.key]]
    tag = os.urandom(4).hex()
    offset = 0  # the warm-up and the measured run send different contents (no 409)

    async def call(conn: Connection, i: int) -> None:
        i += offset
        body = orjson.dumps(
            {
                "agent_id": f"agent_{i % 100:03d}",
                "content": f"single remember {tag} number {i}: checked the order status",
                "event_type": "step",
                "tags": ["bench"],
            }
        )
        headers = all_headers[i % len(all_headers)]
        status, payload = await conn.request("POST", "/api/v1/memories", body, headers)
        if status != 201:
            raise RuntimeError(f"remember -> {status}: {payload[:300]!r}")

    await closed_loop(server.url, clients, min(500, requests), call)  # warm up
    offset = requests
    cpu = server.cpu_seconds()
    result = await closed_loop(server.url, clients, requests, call)
    cpu = server.cpu_seconds() - cpu
    return {
        "server_cpu_us_per_request": round(cpu / requests * 1e6),
        "requests_per_s": round(result.rate),
        **_stats(result.latencies_ms),
        "clients": clients,
    }


async def query_figures(server: Server, session_id: str, repeat: int) -> dict[str, Any]:
    key, url = server.key, server.url
    search_rare = orjson.dumps({"content_contains": RARE_WORD})
    search_filters = orjson.dumps({"tags": ["urgent"], "memory_types": ["decision"], "since": "7d"})
    context = orjson.dumps({"max_tokens": 4000})
    return {
        "recall": await _latency(url, "GET", _recall_path(), b"", key, repeat),
        "search_content": await _latency(url, "POST", "/api/v1/search", search_rare, key, repeat),
        "search_filters": await _latency(
            url, "POST", "/api/v1/search", search_filters, key, repeat
        ),
        "session_context": await _latency(
            url, "POST", f"/api/v1/sessions/{session_id}/context", context, key, repeat
        ),
        "agent_stats": await _latency(
            url, "GET", "/api/v1/agents/agent_042/stats", b"", key, repeat
        ),
        "timeline": await _latency(url, "GET", _TIMELINE_PATH, b"", key, repeat),
    }


_TIMELINE_PATH = "/api/v1/timeline?" + urlencode(
    {"since": "30d", "bucket": "1h", "group_by": "event_type"}
)


def mcp_figure(data_dir: Path, repeat: int) -> dict[str, Any]:
    """MCP stdio round trip (remember, recall) in embedded mode, through bench/mcp_stdio.py
    (a real ``memtrace-mcp`` subprocess driven by the MCP SDK's stdio client)."""
    try:
        from bench import mcp_stdio
    except ImportError:
        return {"unavailable": "bench/mcp_stdio.py (the MCP server) is not on this branch"}
    data_dir.mkdir(parents=True, exist_ok=True)
    tools = asyncio.run(mcp_stdio.run(repeat, "FULL", data_dir))
    remember = next(r for name, r in tools.items() if name.startswith("remember"))
    recall = next(r for name, r in tools.items() if name.startswith("recall"))
    return {
        "p50_ms": max(remember["p50_ms"], recall["p50_ms"]),
        "p99_ms": max(remember["p99_ms"], recall["p99_ms"]),
        "tools": tools,
    }


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(args: argparse.Namespace) -> dict[str, Any]:
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": _commit(),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}",
        "quick": args.quick,
        "load_at_start": _load(),
    }
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="memtrace-bench-") as tmp:
        root = Path(tmp)
        print(f"generating {args.memories:,} memories ...", flush=True)
        big = generate(root / "big", args.memories)
        # The small org spans one day instead of 30, so the recall returns its full 50 rows
        # there too: the ratio then isolates the cost of store size, not of response size.
        small = generate(root / "small", args.small, days=1)
        meta["generate_s"] = round(big.seconds, 1)
        meta["generate_per_s"] = round(big.memories / big.seconds)
        meta["generate_cpu_us_per_memory"] = round(big.cpu_seconds / big.memories * 1e6, 1)
        print(
            f"  {big.memories:,} in {big.seconds:.1f} s "
            f"({big.cpu_seconds / big.memories * 1e6:.0f} us CPU per memory)",
            flush=True,
        )

        print("recall at the small org ...", flush=True)
        server = Server.start(small.data_dir, key=small.key)
        try:
            recall_small = asyncio.run(
                _latency(server.url, "GET", _recall_path(), b"", server.key, args.repeat)
            )
        finally:
            server.stop()

        print("queries at the big org ...", flush=True)
        server = Server.start(big.data_dir, key=big.key)
        try:
            queries = asyncio.run(query_figures(server, big.context_session, args.repeat))
            figures.update(queries)
            figures["recall_small"] = {**recall_small, "memories": small.memories}
            figures["recall"]["memories"] = big.memories
            figures["recall_growth"] = {
                "ratio": round(queries["recall"]["p50_ms"] / recall_small["p50_ms"], 2),
                "small": small.memories,
                "big": big.memories,
            }
            print("single remember ...", flush=True)
            figures["single_remember"] = asyncio.run(
                remember_figure(server, args.remember, clients=32)
            )
            figures["server_rss"] = {"peak_mb": round(server.peak_rss_mb(), 1)}
        finally:
            server.stop()

        print("batched ingest into an empty server ...", flush=True)
        server = Server.start(root / "ingest" / "data")
        try:
            figures["batched_ingest"] = asyncio.run(ingest_figure(server, args.ingest, clients=4))
            figures["ingest_server_rss"] = {"peak_mb": round(server.peak_rss_mb(), 1)}
        finally:
            server.stop()

        print("MCP stdio ...", flush=True)
        figures["mcp_stdio"] = mcp_figure(root / "mcp", args.repeat)
    meta["load_at_end"] = _load()
    return {"meta": meta, "figures": figures}


def _cell(name: str, r: dict[str, Any]) -> str:
    if "unavailable" in r:
        return f"n/a ({r['unavailable']})"
    if "memories_per_s" in r:
        return (
            f"{r['memories_per_s']:,} memories/s "
            f"(server CPU {r['server_cpu_us_per_memory']} us/memory)"
        )
    if "requests_per_s" in r:
        return (
            f"{r['requests_per_s']:,} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms "
            f"(server CPU {r['server_cpu_us_per_request']} us/request)"
        )
    if "tools" in r:
        return ", ".join(
            f"{name.split(' ')[0]} p50 {t['p50_ms']:.2f} ms, p99 {t['p99_ms']:.2f} ms"
            for name, t in r["tools"].items()
        )
    if "ratio" in r:
        return f"{r['ratio']:.2f}x ({r['small']:,} -> {r['big']:,} memories)"
    if "peak_mb" in r:
        return f"{r['peak_mb']:.0f} MiB"
    rows = f", {r['rows']} rows" if r.get("rows") else ""
    return f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms{rows}"


LABELS = {
    "batched_ingest": "batched ingest (1000/request, 4 clients)",
    "single_remember": "single remember (32 clients)",
    "recall": "recall (agent, since=24h, limit 50), big org",
    "recall_small": "recall, small org",
    "recall_growth": "recall big / recall small (p50)",
    "search_content": "search content_contains (rare word)",
    "search_filters": "search tag + type + since=7d",
    "session_context": "session context (500 memories)",
    "agent_stats": "agent stats",
    "timeline": "timeline 30d, 1h buckets, by event_type",
    "mcp_stdio": "MCP stdio round trip (remember, recall)",
    "server_rss": "server peak RSS (big org, after the above)",
    "ingest_server_rss": "server peak RSS (ingest run)",
}


def table(result: dict[str, Any]) -> str:
    meta, figures = result["meta"], result["figures"]
    lines = [
        f"memtrace bench  {meta['date']}  commit {meta['commit']}  {meta['machine']}",
        f"load average at start {meta['load_at_start']}, at end {meta['load_at_end']}"
        f"{'  (QUICK mode)' if meta['quick'] else ''}",
        "",
        "| figure | measured | target | met |",
        "|---|---|---|---|",
    ]
    for name, label in LABELS.items():
        if name not in figures:
            continue
        r = figures[name]
        target, check = TARGETS.get(name, ("", None))  # type: ignore[arg-type]
        met = "" if check is None or "unavailable" in r else ("yes" if check(r) else "no")
        lines.append(f"| {label} | {_cell(name, r)} | {target} | {met} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller org, fewer requests")
    parser.add_argument("--memories", type=int, help="memories in the big org")
    parser.add_argument("--small", type=int, default=10_000, help="memories in the small org")
    parser.add_argument("--ingest", type=int, help="memories sent by the ingest figure")
    parser.add_argument("--remember", type=int, help="single-remember requests")
    parser.add_argument("--repeat", type=int, help="runs per latency figure")
    parser.add_argument("--json", type=Path, help="where to write the JSON results")
    args = parser.parse_args()
    quick = args.quick
    args.memories = args.memories or (100_000 if quick else 1_000_000)
    args.ingest = args.ingest or (50_000 if quick else 300_000)
    args.remember = args.remember or (3_000 if quick else 30_000)
    args.repeat = args.repeat or (100 if quick else 1000)
    args.json = args.json or Path("bench/results/" + ("quick" if quick else "full") + ".json")
    result = run(args)
    print()
    print(table(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"\nJSON written to {args.json}")


if __name__ == "__main__":
    main()
