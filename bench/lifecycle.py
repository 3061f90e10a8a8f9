"""The data lifecycle, measured in one process on the embedded store (``synchronous=FULL``):

- ``transfer``: export rate (``Lifecycle.export`` to an NDJSON file, and ``GET /export``
  through the REST app in process), import rate (``memtrace import``'s path: validate the
  file, then store in batches of 1000) and a cursor walk of every memory (pages of 1000),
  each as a ratio to the batched ingest rate of the same run. The export's Python allocation
  peak shows its memory does not grow with the org.
- ``forget``: forget of N memories by filter (batches of ``retention.batch_size``) and the
  full-text compaction and WAL truncation that finish the erasure, against writing them.
- ``sweep``: latency of single writes (one after another, as an agent writes) while the
  retention sweeper deletes N expired memories, against the same writes with nothing to
  sweep.

.venv/bin/python -m bench.lifecycle transfer --memories 100000
.venv/bin/python -m bench.lifecycle forget --memories 100000
.venv/bin/python -m bench.lifecycle sweep --memories 100000 --writes 3000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.common import batches, percentile, print_table
from http_api.app import create_app
from memtrace.config import load_settings
from memtrace.domain.ids import DEFAULT_ORG_ID
from memtrace.domain.lifecycle import RetentionPolicy
from memtrace.domain.models import (
    ExportParams,
    ForgetRequest,
    MemoryBatchCreate,
    MemoryCreate,
    parse_model,
)
from memtrace.domain.timestamps import from_us, now_us
from memtrace.lifecycle.ndjson import read_batches, to_line, validate_file
from memtrace.lifecycle.service import Lifecycle
from memtrace.runtime import Runtime
from memtrace.storage.base import MemoryQuery
from memtrace.storage.embedded import EmbeddedStore

DAY_US = 86_400_000_000


async def _runtime(data_dir: Path) -> tuple[Runtime, str]:
    overrides = {"storage.data_dir": data_dir, "limits.rate_per_s": 0}
    runtime = Runtime(load_settings(overrides=overrides))
    key = await runtime.start(bootstrap_key=True, sweep=False)
    if key is None:
        raise RuntimeError(f"{data_dir} already holds a deployment")
    return runtime, key


async def _ingest(runtime: Runtime, total: int, *, days: int = 30, **extra: Any) -> float:
    """Store ``total`` memories in batches of 1000; the seconds it took."""
    service = await runtime.service(DEFAULT_ORG_ID)
    started = time.perf_counter()
    for body in batches(total, 1000, days=days):
        items = parse_model(MemoryBatchCreate, orjson.loads(body)).memories
        if extra:
            items = [item.model_copy(update=extra) for item in items]
        await service.remember_batch(items)
    return time.perf_counter() - started


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f} memories/s ({seconds:.1f} s)"


async def transfer(total: int) -> list[tuple[str, str]]:
    root = Path(tempfile.mkdtemp())
    runtime, key = await _runtime(root / "a")
    rows: list[tuple[str, str]] = []
    try:
        ingest = await _ingest(runtime, total)
        rows.append(("ingest, batches of 1000 (baseline)", _rate(total, ingest)))
        lifecycle = await runtime.lifecycle(DEFAULT_ORG_ID, "bench")
        path = root / "export.ndjson"
        export = await _export(lifecycle, path)
        rows.append(("export to a file", f"{_rate(total, export)}, x{ingest / export:.2f}"))
        tracemalloc.start()  # a second pass: tracing slows it down, so it is not timed
        await _export(lifecycle, path)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rows.append(("export, Python allocation peak", f"{peak / 1024 / 1024:.1f} MiB"))

        app = create_app(runtime, manage_runtime=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://localhost", headers={"x-api-key": key}
        ) as client:
            started = time.perf_counter()
            lines = 0
            async with client.stream("GET", "/api/v1/export", timeout=600) as response:
                async for chunk in response.aiter_bytes():
                    lines += chunk.count(b"\n")
            http = time.perf_counter() - started
        assert lines == total, lines
        rows.append(("GET /export (REST app, in process)", f"{_rate(total, http)}"))

        store = await runtime.stores.get(DEFAULT_ORG_ID)
        started = time.perf_counter()
        q = MemoryQuery(org_id=DEFAULT_ORG_ID, order="asc", limit=1000)
        walked = 0
        while rows_ := await store.query(q):
            walked += len(rows_)
            q = replace(q, after=(rows_[-1].time, rows_[-1].id))
        walk = time.perf_counter() - started
        assert walked == total
        rows.append(("cursor walk, pages of 1000", f"{_rate(total, walk)}, x{ingest / walk:.2f}"))
    finally:
        await runtime.close()

    target, _ = await _runtime(root / "b")
    try:
        lifecycle = await target.lifecycle(DEFAULT_ORG_ID, "bench")
        limit = target.settings.limits.max_content_bytes
        started = time.perf_counter()
        assert validate_file(path, limit) == total
        checked = time.perf_counter() - started
        for batch in read_batches(path, 1000, limit):
            await lifecycle.import_batch(batch)
        imported = time.perf_counter() - started
        rows.append(("import: checking the file", _rate(total, checked)))
        rows.append(("import, end to end", f"{_rate(total, imported)}, x{ingest / imported:.2f}"))
        again = time.perf_counter()
        for batch in read_batches(path, 1000, limit):
            assert await lifecycle.import_batch(batch) == 0
        rows.append(("import again (all there)", _rate(total, time.perf_counter() - again)))
    finally:
        await target.close()
    return rows


async def _export(lifecycle: Lifecycle, path: Path) -> float:
    started = time.perf_counter()
    with path.open("wb") as out:
        async for record in lifecycle.export(ExportParams()):
            out.write(to_line(record))
    return time.perf_counter() - started


async def forget(total: int) -> list[tuple[str, str]]:
    runtime, _ = await _runtime(Path(tempfile.mkdtemp()) / "data")
    rows: list[tuple[str, str]] = []
    try:
        ingest = await _ingest(runtime, total, tags=["gdpr"])
        rows.append(("write, batches of 1000 (baseline)", _rate(total, ingest)))
        store = await runtime.stores.get(DEFAULT_ORG_ID)
        assert isinstance(store, EmbeddedStore)
        size = store.path.stat().st_size
        lifecycle = await runtime.lifecycle(DEFAULT_ORG_ID, "bench")
        started = time.perf_counter()
        result = await lifecycle.forget(ForgetRequest(tags=["gdpr"]))
        deleted = time.perf_counter() - started
        await store.purger.idle()
        erased = time.perf_counter() - started
        assert result.deleted == total
        rows.append((f"forget {total:,} (the 204's work)", f"{_rate(total, deleted)}"))
        rows.append(("… plus FTS compaction and WAL truncation", f"{_rate(total, erased)}"))
        rows.append(("ratio to writing them", f"x{ingest / erased:.2f}"))
        rows.append(
            (
                "database file, before → after",
                f"{size / 1e6:.0f} MB → {store.path.stat().st_size / 1e6:.0f} MB",
            )
        )
    finally:
        await runtime.close()
    return rows


async def _write_latencies(runtime: Runtime, writes: int) -> list[float]:
    service = await runtime.service(DEFAULT_ORG_ID)
    latencies = []
    for i in range(writes):
        item = MemoryCreate(agent_id="live", content=f"live write {i} {now_us()}")
        started = time.perf_counter()
        await service.remember(item)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def sweep(total: int, writes: int) -> list[tuple[str, str]]:
    runtime, _ = await _runtime(Path(tempfile.mkdtemp()) / "data")
    rows: list[tuple[str, str]] = []
    try:
        old = now_us() - 40 * DAY_US
        service = await runtime.service(DEFAULT_ORG_ID)
        for body in batches(total, 1000, days=5):
            items = parse_model(MemoryBatchCreate, orjson.loads(body)).memories
            prepared = [
                item.model_copy(update={"time": from_us(old - n * 1_000_000)})
                for n, item in enumerate(items)
            ]
            await service.remember_batch(prepared)
        idle = await _write_latencies(runtime, writes)
        lifecycle = await runtime.lifecycle(DEFAULT_ORG_ID, "retention")
        started = time.perf_counter()
        task = asyncio.create_task(lifecycle.apply_retention(RetentionPolicy(30), now_us()))
        busy = await _write_latencies(runtime, writes)
        swept_while = task.done()
        deleted = await task
        swept = time.perf_counter() - started
        assert deleted == total, deleted
        for name, values in (("writes, nothing to sweep", idle), ("writes while sweeping", busy)):
            rows.append(
                (
                    f"{name}: p50 / p99 / max",
                    f"{percentile(values, 50):.2f} / {percentile(values, 99):.2f} / "
                    f"{max(values):.2f} ms",
                )
            )
        rows.append(
            (
                "ratio while sweeping, p50 / p99",
                f"x{percentile(busy, 50) / percentile(idle, 50):.2f} / "
                f"x{percentile(busy, 99) / percentile(idle, 99):.2f}",
            )
        )
        rows.append((f"sweep of {total:,} expired", f"{_rate(total, swept)}"))
        rows.append(("sweep still running after the writes", str(not swept_while)))
    finally:
        await runtime.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["transfer", "forget", "sweep"])
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=3000)
    args = parser.parse_args()
    if args.what == "transfer":
        rows = asyncio.run(transfer(args.memories))
    elif args.what == "forget":
        rows = asyncio.run(forget(args.memories))
    else:
        rows = asyncio.run(sweep(args.memories, args.writes))
    print(f"{args.what}, {args.memories:,} memories, embedded store, synchronous=FULL")
    print_table(rows)


if __name__ == "__main__":
    main()
