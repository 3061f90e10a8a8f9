"""Batched ingest over HTTP: REST batches of 1000 from several keep-alive clients.

.venv/bin/python -m bench.ingest --memories 200000 --clients 4
"""

from __future__ import annotations

import argparse
import queue
import threading
import time

import httpx

from bench.common import Server, batches, print_table


def ingest(url: str, key: str, bodies: list[bytes], clients: int) -> float:
    """Send the pre-encoded batches with ``clients`` threads; returns seconds taken."""
    work: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    for body in bodies:
        work.put(body)
    errors: list[str] = []

    def client() -> None:
        headers = {"x-api-key": key, "content-type": "application/json"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
            while True:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    return
                response = http.post("/api/v1/memories", content=body)
                if response.status_code != 201:
                    errors.append(f"{response.status_code} {response.text[:200]}")
                    return

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"ingest failed: {errors[0]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memories", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    bodies = list(batches(args.memories, args.batch))
    server = Server.start()
    try:
        elapsed = ingest(server.url, server.key, bodies, args.clients)
        print(
            f"batched ingest: {args.memories} memories, batches of {args.batch}, "
            f"{args.clients} clients"
        )
        print_table(
            [
                ("memories/s", f"{args.memories / elapsed:,.0f}"),
                ("seconds", f"{elapsed:.2f}"),
                ("server peak RSS", f"{server.peak_rss_mb():.0f} MiB"),
            ]
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
