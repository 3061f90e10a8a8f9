"""Server CPU per write, measured in one process: no sockets, no uvicorn, no load generator.

On a shared 2-core machine the HTTP figures of ``bench/run.py`` move with the neighbours'
load by +-20%, more than most single optimisations change them. This measures the same work
with the client out of the picture, so before/after pairs of one change can be compared:

- ``remember``: the REST app (``http_api.create_app``, every middleware, auth, validation,
  the service, the writer thread with ``synchronous=FULL``) called as an ASGI app by 32
  concurrent in-process callers; CPU of the whole process (all threads) per request.
- ``ingest``: 1,000-memory batches through the service, with the CPU per memory of each phase
  (JSON parse, validation, the service's per-item preparation, the store write including the
  writer thread, the response's JSON).

.venv/bin/python -m bench.inprocess remember --requests 8000
.venv/bin/python -m bench.inprocess ingest --memories 40000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import orjson

from bench.common import batches
from http_api.app import create_app
from memtrace.config import load_settings
from memtrace.domain.ids import DEFAULT_ORG_ID
from memtrace.domain.models import MemoryBatchCreate, parse_model
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


async def remember(requests: int) -> dict[str, Any]:
    """CPU per single remember of the REST app, 32 concurrent in-process callers."""
    runtime, key = await _runtime(Path(tempfile.mkdtemp()) / "data")
    app = create_app(runtime, manage_runtime=False)
    headers = [
        (b"host", b"127.0.0.1:9100"),
        (b"content-type", b"application/json"),
        (b"x-api-key", key.encode()),
    ]

    async def call(i: int) -> None:
        body = orjson.dumps(
            {"agent_id": f"agent-{i % 50}", "content": f"in-process memory {i}", "tags": ["ops"]}
        )
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/api/v1/memories",
            "raw_path": b"/api/v1/memories",
            "query_string": b"",
            "root_path": "",
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
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

        await app(scope, receive, send)
        if status != [201]:
            raise RuntimeError(f"remember {i} answered {status}")

    async def clients(first: int, count: int) -> None:
        async def client(start: int) -> None:
            for i in range(start, start + count):
                await call(i)

        await asyncio.gather(*(client(first + c * count) for c in range(CLIENTS)))

    try:
        await clients(0, max(1, 500 // CLIENTS))  # warm-up
        per_client = max(1, requests // CLIENTS)
        cpu, wall = time.process_time(), time.perf_counter()
        await clients(1_000_000, per_client)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await runtime.close()
    done = per_client * CLIENTS
    return {
        "cpu_us_per_request": round(cpu / done * 1e6, 1),
        "requests_per_s_in_process": round(done / wall),
        "requests": done,
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
            payload = timed("parse", lambda b=body: orjson.loads(b))
            batch = timed("validate", lambda p=payload: parse_model(MemoryBatchCreate, p))
            result = await timed_async("write", lambda b=batch: service.remember_batch(b.memories))
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
    args = parser.parse_args()
    if args.load == "remember":
        result = asyncio.run(remember(args.requests))
    else:
        result = asyncio.run(ingest(args.memories))
    print({**result, "load_average": round(os.getloadavg()[0], 2)})


if __name__ == "__main__":
    main()
