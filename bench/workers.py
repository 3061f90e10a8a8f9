"""``memtrace serve --workers N``: single remembers through 1 and 2 worker processes.

Each round starts a fresh server with ``--workers 1`` and one with ``--workers 2`` (alternating,
so both see the same neighbours' load), sends the same closed loop of single remembers as the
suite (bench/run.py, 32 connections), and reports the throughput, the server's CPU per request
(every worker process, from ``/proc``) and the load generator's own CPU per request: on 2
cores the load generator competes with the workers, so a 16-core projection uses the server
CPU per request, not the throughput ratio.

.venv/bin/python -m bench.workers --requests 6000 --rounds 2
.venv/bin/python -m bench.workers --requests 6000 --rounds 2 --orgs 8   # writes of 8 orgs

With one org every write goes through that org's one SQLite writer (across processes, its file
lock), so a second worker cannot add write throughput; ``--orgs`` spreads the writes over orgs.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.common import Server, print_table
from bench.run import remember_figure


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cli(server: Server, *args: str) -> str:
    exe = str(Path(sys.executable).parent / "memtrace")
    command = [exe, *args, "--data-dir", str(server.data_dir)]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def org_keys(server: Server, orgs: int) -> list[str]:
    """``orgs`` new orgs with a read+write key each, once the server accepts every key."""
    keys = []
    for n in range(orgs):
        org_id = _cli(server, "org", "create", f"bench-{n}")
        keys.append(
            _cli(server, "key", "create", "--org", org_id, "--name", "bench",
                 "--permissions", "read,write")
        )  # fmt: skip
    deadline = time.monotonic() + 30
    with httpx.Client(base_url=server.url, timeout=5) as http:
        while any(
            http.get("/api/v1/memories", headers={"x-api-key": k}).status_code != 200 for k in keys
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not accept the new keys within 30 s")
            time.sleep(0.2)
    return keys


def measure(workers: int, requests: int, clients: int, orgs: int = 1) -> dict[str, float]:
    server = Server.start(args=("--workers", str(workers)))
    try:
        keys = org_keys(server, orgs) if orgs > 1 else None
        cpu = _own_cpu()
        figure = asyncio.run(remember_figure(server, requests, clients, keys))
        # (the load generator's CPU covers the warm-up too: at most 500 requests more)
        figure["loadgen_cpu_us_per_request"] = round((_own_cpu() - cpu) / requests * 1e6)
        return figure
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--orgs", type=int, default=1, help="spread the writes over this many orgs")
    args = parser.parse_args()
    results: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    for _ in range(args.rounds):
        for workers in (1, 2):
            results[workers].append(measure(workers, args.requests, args.clients, args.orgs))
            print(workers, results[workers][-1], flush=True)
    title = f"single remember, {args.clients} clients, {args.orgs} org(s) (median of rounds)"
    rows = [(title, "1 worker | 2 workers")]
    for name in (
        "requests_per_s",
        "p50_ms",
        "p99_ms",
        "server_cpu_us_per_request",
        "loadgen_cpu_us_per_request",
    ):
        one, two = (statistics.median(r[name] for r in results[n]) for n in (1, 2))
        rows.append((name, f"{one:g} | {two:g}"))
    one, two = (statistics.median(r["requests_per_s"] for r in results[n]) for n in (1, 2))
    rows.append(("throughput 2 workers / 1 worker", f"{two / one:.2f}x"))
    print_table(rows)


if __name__ == "__main__":
    main()
