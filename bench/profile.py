"""Profile the server under one load with py-spy (``make profile-tools`` installs it).

    .venv/bin/python -m bench.profile ingest   --out /tmp/ingest.txt
    .venv/bin/python -m bench.profile remember --out /tmp/remember.txt

Starts a real ``memtrace serve`` on an empty data dir, attaches ``py-spy record`` (all threads,
GIL-aware off, so SQLite time shows too) for the duration of the load, and writes the
collapsed stacks; ``--top`` prints the functions with the most own samples.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Server
from bench.run import ingest_figure, remember_figure


def top(collapsed: Path, n: int) -> list[tuple[str, float]]:
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        leaf = stack.rsplit(";", 1)[-1]
        own[leaf] += int(count)
        total += int(count)
    return [(name, 100 * c / total) for name, c in own.most_common(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("load", choices=["ingest", "remember"])
    parser.add_argument("--out", type=Path, default=Path("/tmp/memtrace-profile.txt"))
    parser.add_argument("--amount", type=int, default=100_000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    server = Server.start(args=("--workers", "1"))  # py-spy follows one process
    assert server.proc is not None
    spy = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(server.proc.pid),
            "--format",
            "raw",
            "--threads",
            "--rate",
            "200",
            "--output",
            str(args.out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1)
    try:
        if args.load == "ingest":
            print(asyncio.run(ingest_figure(server, args.amount, clients=4)))
        else:
            print(asyncio.run(remember_figure(server, args.amount, clients=32)))
    finally:
        spy.send_signal(2)
        spy.wait(timeout=60)
        server.stop()
    for name, share in top(args.out, args.top):
        print(f"{share:5.1f}%  {name}")


if __name__ == "__main__":
    main()
