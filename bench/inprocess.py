"""Server CPU per write, measured in one process: no sockets, no uvicorn, no load generator.

On a shared 2-core machine the HTTP figures of ``bench/run.py`` move with the neighbours'
load by +-20%, more than most single optimisations change them. This measures the same work
with the client out of the picture, so before/after pairs of one change can be compared:

- ``remember``: the REST app (``http_api.create_app``, every middleware, auth, validation,
  the service, the writer thread with ``synchronous=FULL``) called as an ASGI app by 32
  concurrent in-process callers; CPU of the whole process (all threads) per request, and of
  the store's writer thread alone. ``--compare`` also runs the baseline of bench/bare.py (a
  bare FastAPI endpoint validating the same body into the same pydantic model) the same way,
  alternating, and prints the ratio.
- ``ingest``: 1,000-memory batches through the service, with the CPU per memory of each phase
  (JSON parse, validation as the REST route does it, the service's per-item preparation and
  the store write including the writer thread, the response's JSON).

.venv/bin/python -m bench.inprocess remember --requests 8000 [--compare]
.venv/bin/python -m bench.inprocess ingest --memories 40000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import orjson

from bench.bare import create_bare_app
from bench.common import batches
from http_api.app import create_app
from memtrace.config import load_settings
from memtrace.domain.hotpath import parse_batch
from memtrace.domain.ids import DEFAULT_ORG_ID
from memtrace.domain.jsonbody import parse_json
from memtrace.runtime import Runtime

Message = MutableMapping[str, Any]
CLIENTS = 32


async def _runtime(data_dir: Path) -> tuple[Runtime, str]:
    # Throughput is measured, so the per-key rate limit is off (as in bench/common.py).
    overrides = {"storage.data_dir": data_dir, "limits.rate_per_s": 0, "limits.org_rate_per_s": 0}
    runtime = Runtime(load_settings(overrides=overrides))
    key = await runtime.start(bootstrap_key=True)
    if key is None:
        raise RuntimeError(f"{data_dir} already holds a deployment")
    return runtime, key


def _scope(path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }


async def _drive(
    app: Any, headers: list[tuple[bytes, bytes]], requests: int, first: int = 0
) -> dict[str, Any]:
    """32 concurrent callers of ``POST /api/v1/memories``; CPU of this process per request.
    Contents are numbered from ``first`` (distinct contents: no 409)."""

    async def call(i: int) -> None:
        body = orjson.dumps(
            {"agent_id": f"agent-{i % 50}", "content": f"in-process memory {i}", "tags": ["ops"]}
        )
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        status: list[int] = []

        async def receive() -> Message:
            if messages:
                return messages.pop()
            await asyncio.Event().wait()  # the app never reads past the body
            raise AssertionError("unreachable")

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(_scope("/api/v1/memories", headers, body), receive, send)
        if status != [201]:
            raise RuntimeError(f"remember {i} answered {status}")

    async def clients(first: int, count: int) -> None:
        async def client(start: int) -> None:
            for i in range(start, start + count):
                await call(i)

        await asyncio.gather(*(client(first + c * count) for c in range(CLIENTS)))

    await clients(first, max(1, 500 // CLIENTS))  # warm-up
    per_client = max(1, requests // CLIENTS)
    writer = _writer_clock()
    writer_cpu = time.clock_gettime(writer) if writer is not None else 0.0
    cpu, wall = time.process_time(), time.perf_counter()
    await clients(first + 1_000_000, per_client)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = per_client * CLIENTS
    out = {
        "cpu_us_per_request": round(cpu / done * 1e6, 1),
        "requests_per_s_in_process": round(done / wall),
        "requests": done,
    }
    if writer is not None:
        writer_cpu = time.clock_gettime(writer) - writer_cpu
        out["writer_thread_us_per_request"] = round(writer_cpu / done * 1e6, 1)
    return out


def _writer_clock() -> int | None:
    """The CPU clock of the org store's writer thread, if one runs."""
    for thread in threading.enumerate():
        if thread.name.startswith("sqlite-writer:memories") and thread.ident is not None:
            return time.pthread_getcpuclockid(thread.ident)
    return None


async def remember(requests: int) -> dict[str, Any]:
    """CPU per single remember of the REST app, 32 concurrent in-process callers."""
    runtime, key = await _runtime(Path(tempfile.mkdtemp()) / "data")
    app = create_app(runtime, manage_runtime=False)
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"x-api-key", key.encode()),
    ]
    try:
        return await _drive(app, headers, requests)
    finally:
        await runtime.close()


async def bare(requests: int) -> dict[str, Any]:
    """The same load on the baseline of bench/bare.py (validation into the same model only)."""
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
    return await _drive(create_bare_app(), headers, requests)


async def compare(requests: int, rounds: int = 2) -> dict[str, Any]:
    """memtrace and the bare baseline, alternating; the ratio of the medians."""
    ours, base = [], []
    for _ in range(rounds):
        ours.append((await remember(requests))["cpu_us_per_request"])
        base.append((await bare(requests))["cpu_us_per_request"])
    median = sorted(ours)[len(ours) // 2], sorted(base)[len(base) // 2]
    return {
        "memtrace_us_per_request": ours,
        "bare_us_per_request": base,
        "ratio_of_medians": round(median[0] / median[1], 2),
    }


async def ingest(memories: int) -> dict[str, Any]:
    """CPU per memory of each phase of a 1,000-memory batch write, through the service."""
    runtime, _ = await _runtime(Path(tempfile.mkdtemp()) / "data")
    service = await runtime.service(DEFAULT_ORG_ID)
    bodies = list(batches(memories, 1000, seed=11))
    phases = dict.fromkeys(("parse", "validate", "write", "response"), 0.0)

    def timed(phase: str, fn: Callable[[], Any]) -> Any:
        started = time.process_time()
        result = fn()
        phases[phase] += time.process_time() - started
        return result

    async def timed_async(phase: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        started = time.process_time()
        result = await fn()
        phases[phase] += time.process_time() - started
        return result

    try:
        total = time.process_time()
        for body in bodies:
            payload = timed("parse", lambda b=body: parse_json(b))
            batch = timed("validate", lambda p=payload: parse_batch(p))
            result = await timed_async("write", lambda b=batch: service.remember_batch(b))
            timed("response", lambda r=result: orjson.dumps(r.to_wire()))
        total = time.process_time() - total
    finally:
        await runtime.close()
    count = len(bodies) * 1000
    out = {f"{k}_us": round(v / count * 1e6, 1) for k, v in phases.items()}
    return {"cpu_us_per_memory": round(total / count * 1e6, 1), **out, "memories": count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("load", choices=["remember", "ingest"])
    parser.add_argument("--requests", type=int, default=8000)
    parser.add_argument("--memories", type=int, default=40_000)
    parser.add_argument("--compare", action="store_true", help="also run the bare baseline")
    args = parser.parse_args()
    if args.load == "remember" and args.compare:
        result = asyncio.run(compare(args.requests))
    elif args.load == "remember":
        result = asyncio.run(remember(args.requests))
    else:
        result = asyncio.run(ingest(args.memories))
    print({**result, "load_average": round(os.getloadavg()[0], 2)})


if __name__ == "__main__":
    main()
