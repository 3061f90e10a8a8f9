"""Fairness between orgs: org B's latency while org A runs the worst loads (issue 14).

    .venv/bin/python -m bench.fairness                 # ~2 minutes: 2,000 x 64 KiB in org A
    .venv/bin/python -m bench.fairness --quick         # ~40 s, smaller (tests use this shape)
    .venv/bin/python -m bench.fairness --source DIR    # the same against another checkout

One real ``memtrace serve`` (default limits), two orgs. Org A holds large memories (64 KiB of
random letters each) and, while "loaded", runs: scan searches (a 2-character needle and a
non-ASCII one, which no index narrows), agent contexts over all its memories (``max_tokens``
100 and 100,000), and more ``GET /sse`` streams than its key may hold. Org B, from a separate
process, one request at a time: a recall (``GET /memories?agent_id=…&limit=20``), a remember,
and a ``GET /health`` probe. Phases alternate quiet / loaded (twice each) and B's percentiles
are compared between them, measured in the same run. Prints a table; ``--json`` writes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from bench.common import percentile, print_table

MEM = "/api/v1/memories"
A_AGENT = "a-big"
B_AGENT = "b-agent"
NEEDLES = ("zq", "ÄÖü")  # short and non-ASCII: no trigram index, a scan of every memory
OPS = ("recall", "remember", "probe")


@dataclass
class Shape:
    a_memories: int
    a_content: int  # bytes of each memory of org A
    phase_s: float
    scanners: int
    contexts: int
    streams: int


FULL = Shape(a_memories=2000, a_content=64 * 1024 - 64, phase_s=20, scanners=8, contexts=4,
             streams=150)  # fmt: skip
QUICK = Shape(a_memories=600, a_content=64 * 1024 - 64, phase_s=8, scanners=6, contexts=3,
              streams=120)  # fmt: skip


@dataclass
class Deployment:
    url: str
    key_a: str
    key_b: str
    proc: subprocess.Popen[bytes]
    log: Path
    tmp: Any = field(repr=False)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
        self.tmp.cleanup()


def _env(source: Path | None, extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMTRACE_")}
    env["MEMTRACE_AUTH_BCRYPT_ROUNDS"] = "4"
    # One process: the limits measured here (read lanes, stream caps, open stores) are each
    # worker's own (docs/configuration.md, "Workers").
    env["MEMTRACE_SERVER_WORKERS"] = "1"
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return {**env, **(extra or {})}


def _cli(args: list[str], data_dir: Path, env: dict[str, str]) -> str:
    exe = str(Path(sys.executable).parent / "memtrace")
    out = subprocess.run(
        [exe, *args, "--data-dir", str(data_dir)], env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"memtrace {' '.join(args)}: {out.stderr}")
    return out.stdout.strip()


def start(source: Path | None = None, env: dict[str, str] | None = None) -> Deployment:
    """A server with default limits and two orgs, ``a`` and ``b``, with a key each."""
    tmp = tempfile.TemporaryDirectory(prefix="memtrace-fairness-")
    data_dir = Path(tmp.name) / "data"
    full_env = _env(source, env)
    keys = []
    _cli(["org", "create", "a"], data_dir, full_env)
    _cli(["org", "create", "b"], data_dir, full_env)
    for org in ("a", "b"):
        keys.append(_cli(["key", "create", "--org", org, "--name", "k"], data_dir, full_env))
    sock_port = _free_port()
    log = Path(tmp.name) / "serve.log"
    exe = str(Path(sys.executable).parent / "memtrace")
    proc = subprocess.Popen(
        [exe, "serve", "--data-dir", str(data_dir), "--port", str(sock_port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=full_env,
    )
    url = f"http://127.0.0.1:{sock_port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return Deployment(url, keys[0], keys[1], proc, log, tmp)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not start:\n{log.read_text()}")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seed(dep: Deployment, shape: Shape) -> None:
    """Org A: large memories of one agent (all within the last hour, so its 24h context sees
    every one); org B: a few hundred small ones."""
    rng = random.Random(14)
    letters = string.ascii_letters + "     "
    with httpx.Client(base_url=dep.url, timeout=300) as client:
        per_batch = max(1, (8 * 1024 * 1024) // shape.a_content)
        for start_at in range(0, shape.a_memories, per_batch):
            count = min(per_batch, shape.a_memories - start_at)
            items = [
                {
                    "agent_id": A_AGENT,
                    "content": f"#{start_at + i} "
                    + "".join(rng.choices(letters, k=shape.a_content)),
                    "event_type": "error" if (start_at + i) % 10 == 0 else "general",
                }
                for i in range(count)
            ]
            response = client.post(MEM, json={"memories": items}, headers={"x-api-key": dep.key_a})
            response.raise_for_status()
        items = [{"agent_id": B_AGENT, "content": f"b memory {i}"} for i in range(300)]
        client.post(
            MEM, json={"memories": items}, headers={"x-api-key": dep.key_b}
        ).raise_for_status()


# -- org A's load ----------------------------------------------------------------------------


@dataclass
class LoadCount:
    done: dict[str, int] = field(default_factory=dict)

    def add(self, what: str) -> None:
        self.done[what] = self.done.get(what, 0) + 1


async def _scanner(client: httpx.AsyncClient, n: int, count: LoadCount) -> None:
    while True:
        needle = NEEDLES[n % len(NEEDLES)]
        n += 1
        try:
            response = await client.post(
                "/api/v1/search", json={"content_contains": needle, "limit": 10}
            )
        except httpx.TransportError:
            count.add("search error")
            continue
        partial = response.status_code == 200 and response.json().get("partial")
        count.add(f"search {response.status_code}{' partial' if partial else ''}")


async def _contexter(client: httpx.AsyncClient, n: int, count: LoadCount) -> None:
    while True:
        budget = (100, 100_000)[n % 2]
        n += 1
        try:
            response = await client.post(
                f"/api/v1/agents/{A_AGENT}/context", json={"max_tokens": budget}
            )
        except httpx.TransportError:
            count.add("context error")
            continue
        count.add(f"context {budget} {response.status_code}")


async def _stream(client: httpx.AsyncClient, count: LoadCount) -> None:
    try:
        async with client.stream("GET", "/sse") as response:
            count.add(f"stream {response.status_code}")
            if response.status_code == 200:
                async for _ in response.aiter_bytes():
                    pass
    except httpx.TransportError:
        count.add("stream error")


async def noisy(url: str, key: str, shape: Shape, count: LoadCount) -> list[asyncio.Task[None]]:
    """Start org A's load; cancel the returned tasks to stop it."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = httpx.Timeout(300, connect=30)
    client = httpx.AsyncClient(
        base_url=url, headers={"x-api-key": key}, limits=limits, timeout=timeout
    )
    tasks = [asyncio.create_task(_scanner(client, i, count)) for i in range(shape.scanners)]
    tasks += [asyncio.create_task(_contexter(client, i, count)) for i in range(shape.contexts)]
    tasks += [asyncio.create_task(_stream(client, count)) for _ in range(shape.streams)]

    async def closer() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await client.aclose()

    tasks.append(asyncio.create_task(closer()))
    return tasks


# -- org B's measurements (a separate process: A's load must not delay the measuring) --------


def measure(url: str, key: str, seconds: float) -> dict[str, list[float]]:
    """One request at a time for ``seconds``: recall, remember, probe, in turn."""
    latencies: dict[str, list[float]] = {op: [] for op in OPS}
    deadline = time.monotonic() + seconds
    n = 0
    with httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=120) as client:
        while time.monotonic() < deadline:
            op = OPS[n % len(OPS)]
            n += 1
            started = time.perf_counter()
            if op == "recall":
                response = client.get(MEM, params={"agent_id": B_AGENT, "limit": 20})
            elif op == "remember":
                body = {"agent_id": B_AGENT, "content": f"b {time.time_ns()} {n}"}
                response = client.post(MEM, json=body)
            else:
                response = client.get("/health")
            elapsed = time.perf_counter() - started
            if response.status_code not in (200, 201):
                raise RuntimeError(f"org B {op}: {response.status_code} {response.text[:200]}")
            latencies[op].append(elapsed * 1000)
    return latencies


def _measure_in_subprocess(url: str, key: str, seconds: float) -> dict[str, list[float]]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [sys.executable, "-m", "bench.fairness", "--measure", url, key, str(seconds), out.name],
            check=True,
            cwd=Path(__file__).resolve().parent.parent,  # the repository root: `bench` imports
        )
        data: dict[str, list[float]] = json.loads(Path(out.name).read_text())
        return data


async def run(
    shape: Shape, source: Path | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    dep = start(source, env)
    try:
        seed(dep, shape)
        quiet: dict[str, list[float]] = {op: [] for op in OPS}
        loaded: dict[str, list[float]] = {op: [] for op in OPS}
        count = LoadCount()
        for phase in ("quiet", "loaded", "quiet", "loaded"):
            tasks = await noisy(dep.url, dep.key_a, shape, count) if phase == "loaded" else []
            if tasks:
                await asyncio.sleep(1.0)  # A's load is running before B measures
            got = await asyncio.to_thread(_measure_in_subprocess, dep.url, dep.key_b, shape.phase_s)
            for op in OPS:
                (loaded if phase == "loaded" else quiet)[op] += got[op]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return summarize(quiet, loaded, count)
    finally:
        dep.stop()


def summarize(
    quiet: dict[str, list[float]], loaded: dict[str, list[float]], count: LoadCount
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for op in OPS:
        q99, l99 = percentile(quiet[op], 99), percentile(loaded[op], 99)
        figures[op] = {
            "quiet_p50_ms": round(percentile(quiet[op], 50), 2),
            "quiet_p99_ms": round(q99, 2),
            "loaded_p50_ms": round(percentile(loaded[op], 50), 2),
            "loaded_p99_ms": round(l99, 2),
            "loaded_max_ms": round(max(loaded[op]), 2),
            "p99_ratio": round(l99 / q99, 2),
            "requests": [len(quiet[op]), len(loaded[op])],
        }
    figures["org_a"] = dict(sorted(count.done.items()))
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--source", type=Path, help="run the server from this checkout")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--only", choices=("scans", "contexts", "streams"), help="one of org A's loads alone"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a server setting, e.g. limits.reads_per_org=1",
    )
    parser.add_argument("--measure", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        url, key, seconds, out = args.measure
        Path(out).write_text(json.dumps(measure(url, key, float(seconds))))
        return
    shape = QUICK if args.quick else FULL
    if args.only:
        shape = replace(
            shape,
            scanners=shape.scanners if args.only == "scans" else 0,
            contexts=shape.contexts if args.only == "contexts" else 0,
            streams=shape.streams if args.only == "streams" else 0,
        )
    load = os.getloadavg()
    env = {}
    for item in args.set:
        name, _, value = item.partition("=")
        env["MEMTRACE_" + name.replace(".", "_", 1).upper()] = value
    figures = asyncio.run(run(shape, args.source, env))
    print(f"memtrace fairness  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  "
          f"load average {load[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end")  # fmt: skip
    rows = []
    for op in OPS:
        f = figures[op]
        rows.append(
            (
                f"org B {op}",
                f"quiet p50 {f['quiet_p50_ms']} ms p99 {f['quiet_p99_ms']} ms | loaded p50 "
                f"{f['loaded_p50_ms']} ms p99 {f['loaded_p99_ms']} ms max "
                f"{f['loaded_max_ms']} ms | p99 x{f['p99_ratio']} | n={f['requests']}",
            )
        )
    rows.append(("org A requests", ", ".join(f"{k}: {v}" for k, v in figures["org_a"].items())))
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
