"""MCP tool-call round trip over a real stdio subprocess (``memtrace-mcp``, embedded mode).

Times what an MCP client waits for: request written to the pipe → server validates, calls the
in-process service (SQLite commit for remember) → result read back. p50/p99 per tool.

.venv/bin/python -m bench.mcp_stdio --calls 1000
.venv/bin/python -m bench.mcp_stdio --calls 1000 --synchronous NORMAL
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.client.stdio import StdioServerParameters

from bench.common import percentile, print_table


async def timed(call: Callable[[], Awaitable[Any]], calls: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        await call()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        result = await call()
        samples.append((time.perf_counter() - started) * 1000)
        if result.is_error:
            raise SystemExit(f"tool call failed: {result.content}")
    return {
        "p50_ms": round(percentile(samples, 50), 3),
        "p99_ms": round(percentile(samples, 99), 3),
        "mean_ms": round(statistics.fmean(samples), 3),
    }


async def run(calls: int, synchronous: str, data_dir: Path) -> dict[str, dict[str, float]]:
    env = {
        **os.environ,
        "MEMTRACE_DATA_DIR": str(data_dir),
        "MEMTRACE_STORAGE_SYNCHRONOUS": synchronous,
        "MEMTRACE_AGENT_ID": "bench",
        "MEMTRACE_LOG_LEVEL": "WARNING",
    }
    command = str(Path(sys.executable).parent / "memtrace-mcp")
    counter = 0

    async with Client(StdioServerParameters(command=command, env=env)) as client:

        async def remember() -> Any:
            nonlocal counter
            counter += 1
            return await client.call_tool(
                "memtrace_remember",
                {"content": f"step {counter}: crawled a page", "event_type": "page_crawled"},
            )

        async def recall() -> Any:
            return await client.call_tool("memtrace_recall", {"since": "1h", "limit": 20})

        return {
            "remember": await timed(remember, calls, warmup=20),
            "recall (20 of the last hour)": await timed(recall, calls, warmup=20),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per tool")
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="memtrace-bench-mcp-") as tmp:
        results = asyncio.run(run(args.calls, args.synchronous, Path(tmp)))
    print(
        f"MCP stdio round trip, embedded mode, synchronous={args.synchronous}, {args.calls} calls"
    )
    print_table(
        [
            (name, f"p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  mean {r['mean_ms']} ms")
            for name, r in results.items()
        ]
    )


if __name__ == "__main__":
    main()
