"""``memtrace serve --workers N``: single remembers through 1 and 2 worker processes.

Each round starts a fresh server with ``--workers 1`` and one with ``--workers 2`` (alternating,
so both see the same neighbours' load), sends the same closed loop of single remembers as the
suite (bench/run.py, 32 connections), and reports the throughput, the server's CPU per request
(every worker process, from ``/proc``) and the load generator's own CPU per request: on 2
cores the load generator competes with the workers, so a 16-core projection uses the server
CPU per request, not the throughput ratio.

.venv/bin/python -m bench.workers --requests 6000 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics

from bench.common import Server, print_table
from bench.run import remember_figure


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(workers: int, requests: int, clients: int) -> dict[str, float]:
    server = Server.start(args=("--workers", str(workers)))
    try:
        cpu = _own_cpu()
        figure = asyncio.run(remember_figure(server, requests, clients))
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
    args = parser.parse_args()
    results: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    for _ in range(args.rounds):
        for workers in (1, 2):
            results[workers].append(measure(workers, args.requests, args.clients))
            print(workers, results[workers][-1], flush=True)
    rows = [("single remember, 32 clients (median of rounds)", "1 worker | 2 workers")]
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
