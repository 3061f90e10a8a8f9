"""One org must never slow, starve or stop another (issue 14), in process and deterministic:
the read lanes' scheduling, the scan budget, scans without Python per row, contexts that read
no more than their budget, the per-org rate limit and the bounded agent cache.

The timing test with a real server and a noisy org is ``tests/test_fairness_server.py``.
"""

from __future__ import annotations

import sqlite3
import threading
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from http_api.app import create_app
from memtrace.config import load_settings
from memtrace.domain.context import render_context
from memtrace.domain.memory import MemoryRecord
from memtrace.domain.models import ContextRequest
from memtrace.domain.timestamps import now_us
from memtrace.metadata.catalog import Catalog
from memtrace.runtime import Runtime
from memtrace.storage.base import MemoryQuery, NewMemory
from memtrace.storage.contains import contains_clause
from memtrace.storage.embedded import EmbeddedStore
from memtrace.storage.readpool import SYSTEM_LANE, ReadPool
from tests.helpers import create_org_key, wait_until

MEM = "/api/v1/memories"

# -- the read lanes ---------------------------------------------------------------------------


@pytest.fixture
def pool() -> Iterator[ReadPool]:
    yield ReadPool(threads=4, per_lane=2)


class Gate:
    """Jobs that block until released, recording how many of each lane run at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running: dict[str, int] = {}
        self.peak: dict[str, int] = {}

    def job(self, lane: str) -> Any:
        def run() -> str:
            with self.lock:
                self.running[lane] = self.running.get(lane, 0) + 1
                self.peak[lane] = max(self.peak.get(lane, 0), self.running[lane])
            self.release.wait(30)
            with self.lock:
                self.running[lane] -= 1
            return lane

        return run


def test_a_busy_org_never_queues_in_front_of_another(pool: ReadPool) -> None:
    gate = Gate()
    noisy = [pool.submit("org_a", gate.job("org_a")) for _ in range(50)]
    wait_until(lambda: gate.running.get("org_a") == 2)
    # Org A has 50 reads waiting and two running; org B's read runs at once all the same.
    assert pool.submit("org_b", lambda: "b").result(timeout=10) == "b"
    assert gate.peak["org_a"] == 2  # never more than its share of the threads
    gate.release.set()
    assert [f.result(timeout=30) for f in noisy] == ["org_a"] * 50


def test_system_reads_never_wait_behind_tenants(pool: ReadPool) -> None:
    gate = Gate()
    jobs = [pool.submit(f"org_{i}", gate.job(f"org_{i}")) for i in range(10)]
    # Tenants take at most threads - 1 = 3 threads, whatever their number.
    wait_until(lambda: sum(gate.running.values()) == 3)
    assert pool.submit(SYSTEM_LANE, lambda: "reload").result(timeout=10) == "reload"
    gate.release.set()
    for job in jobs:
        job.result(timeout=30)


def test_lanes_take_turns_and_cancelled_reads_never_run(pool: ReadPool) -> None:
    first, second = Gate(), Gate()
    blockers = [pool.submit(f"busy_{i}", first.job(f"busy_{i}")) for i in range(3)]
    wait_until(lambda: sum(first.running.values()) == 3)  # every tenant thread is taken
    queued = [pool.submit("org_a", second.job("org_a")) for _ in range(6)]
    queued.append(pool.submit("org_b", second.job("org_b")))
    ran: list[str] = []
    cancelled = pool.submit("org_c", lambda: ran.append("c"))
    assert cancelled.cancel()
    first.release.set()
    # A queued six reads before B's one; the three free threads still serve both.
    wait_until(lambda: second.running.get("org_a") == 2 and second.running.get("org_b") == 1)
    second.release.set()
    for future in [*blockers, *queued]:
        future.result(timeout=30)
    assert ran == []


# -- the scan budget --------------------------------------------------------------------------


def _big(n: int, content: str, *, agent: str = "a") -> NewMemory:
    return NewMemory(
        time=now_us() - 3_600_000_000 + n,
        agent_id=agent,
        session_id=None,
        memory_type="episodic",
        event_type="error" if n % 7 == 0 else "general",
        content=content,
        metadata=None,
        tags=(),
        importance=None,
        dedup_key=f"k{n}",
        parent_id=None,
    )


@pytest.fixture
async def big_store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    store = EmbeddedStore(tmp_path / "big.db", "org_big", synchronous="NORMAL")
    await store.open()
    body = "Ä" * 8000  # every row holds the first character of the needle: checked in Python
    for start in range(0, 3000, 500):
        await store.write([_big(n, f"#{n} {body} ä{n}") for n in range(start, start + 500)], None)
    yield store
    await store.close()


async def test_a_scan_stops_at_its_budget_with_the_first_matches(
    big_store: EmbeddedStore,
) -> None:
    query = MemoryQuery(org_id="org_big", content_contains="ä1", limit=1000)
    full = await big_store.query(query)
    partial = await big_store.query_page(query, budget_s=0.001)
    assert not partial.complete
    assert partial.records == full[: len(partial.records)]  # a prefix of the whole answer
    small = MemoryQuery(org_id="org_big", agent_id="a", limit=5)
    assert (await big_store.query_page(small, budget_s=0.001)).complete


async def test_partial_search_says_so(tmp_path: Path) -> None:
    settings = load_settings(
        None, {"storage.data_dir": tmp_path / "data", "limits.scan_budget_ms": 1}
    )
    runtime = Runtime(settings)
    await runtime.start()
    try:
        org, key = await create_org_key(runtime)
        store = await runtime.stores.get(org)
        body = "Ä" * 8000
        for start in range(0, 2000, 500):
            items = [_big(n, f"{body} ä{n}") for n in range(start, start + 500)]
            await store.write(items, None)
        app = create_app(runtime, manage_runtime=False)
        headers = {"x-api-key": key}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost", headers=headers
        ) as client:
            # Only the oldest memory matches: the scan would read them all.
            found = (await client.post("/api/v1/search", json={"content_contains": "ä0"})).json()
            assert found["partial"] is True and "limits.scan_budget_ms" in found["partial_reason"]
            listed = (await client.get(MEM, params={"limit": 5})).json()
            assert "partial" not in listed and listed["count"] == 5  # an index read: complete
            metrics = (await client.get("/metrics")).text
            assert "memtrace_partial_reads_total 1.0" in metrics
    finally:
        await runtime.close()


# -- content_contains without Python per row --------------------------------------------------

TRICKY = [
    "plain ascii",
    "Kelvin \u212a here",  # lowers to "k" in Python only
    "D\u0130YARBAKIR",  # İ lowers to "i" + a combining dot in Python only
    "ÄÖÜ umlauts",
    "straße",
    "ǅ titlecase",
    "nul\x00after the nul",
    "ΣΊΣΥΦΟΣ",
    "",
]
NEEDLES = [
    "k",
    "kelvin k",
    "i",
    "diy",
    "i\u0307",
    "äö",
    "ÄÖÜ",
    "ǆ",
    "after",
    "\u03c3",
    "ss",
    "\x00a",
]


def _matches(conn: sqlite3.Connection, needle: str) -> set[int]:
    sql, params = contains_clause(needle.lower(), "t.content")
    return {row[0] for row in conn.execute(f"SELECT rowid FROM t WHERE {sql}", params)}


def test_contains_is_exactly_python_lower_in_python_lower() -> None:
    calls: list[str] = []

    def lower(value: str | None) -> str | None:
        calls.append("x")
        return value.lower() if value is not None else None

    with sqlite3.connect(":memory:") as conn:
        conn.create_function("mt_lower", 1, lower, deterministic=True)
        conn.execute("CREATE TABLE t (content TEXT)")
        conn.executemany("INSERT INTO t VALUES (?)", [(text,) for text in TRICKY])
        for needle in NEEDLES:
            expected = {i + 1 for i, text in enumerate(TRICKY) if needle.lower() in text.lower()}
            assert _matches(conn, needle) == expected, needle
        # Plain ASCII rows cost no Python call, found or not: the scan holds no GIL.
        conn.execute("DELETE FROM t")
        conn.executemany("INSERT INTO t VALUES (?)", [(f"row {i} of text",) for i in range(500)])
        calls.clear()
        assert len(_matches(conn, "zq")) == 0 and len(_matches(conn, "OF")) == 500
        assert len(_matches(conn, "äö")) == 0
        assert calls == []


# -- contexts read and format no more than their budget ---------------------------------------


class CountingStore:
    """A real store that tallies the content characters its reads return."""

    def __init__(self, store: EmbeddedStore) -> None:
        self.store = store
        self.backend = store.backend
        self.org_id = store.org_id
        self.chars = 0

    def _count(self, records: list[MemoryRecord]) -> list[MemoryRecord]:
        self.chars += sum(len(r.content) for r in records)
        return records

    async def query(self, q: MemoryQuery) -> list[MemoryRecord]:
        return self._count(await self.store.query(q))

    async def query_page(self, q: MemoryQuery, budget_s: float) -> Any:
        page = await self.store.query_page(q, budget_s)
        self._count(page.records)
        return page

    async def get(self, memory_id: str) -> MemoryRecord | None:
        record = await self.store.get(memory_id)
        return self._count([record])[0] if record else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.mark.parametrize(
    ("sizes", "max_tokens"),
    [
        ([40] * 30, 2000),  # everything fits: shown whole
        ([40] * 30 + [900], 2000),  # one long memory, still fits whole
        ([40] * 30 + [900], 300),  # does not fit: cut and left out
        ([600] * 50, 8000),  # every preview cut, previews fit, the whole does not
        ([600] * 10, 8000),  # every preview cut, the whole fits
        ([60_000] * 40, 100),  # huge memories, tiny budget
        ([60_000] * 40, 100_000),  # huge memories, the largest budget
    ],
)
async def test_context_from_previews_is_the_context_of_the_whole(
    tmp_path: Path, sizes: list[int], max_tokens: int
) -> None:
    settings = load_settings(None, {"storage.data_dir": tmp_path / "data"})
    runtime = Runtime(settings)
    await runtime.start()
    try:
        org, _ = await create_org_key(runtime)
        raw = EmbeddedStore(tmp_path / "ctx.db", org, synchronous="NORMAL")
        await raw.open()
        items = [_big(n, f"m{n} " + "x\ny " * (size // 4)) for n, size in enumerate(sizes)]
        await raw.write(items, None)
        await runtime.catalog.register_agent(org, "a", None, None, now_us())
        everything = await raw.query(MemoryQuery(org_id=org, agent_id="a", limit=1000))
        counting = CountingStore(raw)
        service = await runtime.service(org)
        service.store = counting  # type: ignore[assignment]
        got = await service.agent_context("a", ContextRequest(max_tokens=max_tokens))
        expected = render_context("## Agent Context (a)", everything, max_tokens)
        assert got.context == expected.text
        assert (got.memory_count, got.truncated, got.omitted_count) == (
            expected.memory_count,
            expected.truncated,
            expected.omitted_count,
        )
        # Read: previews, plus whole memories only up to the budget and one memory past it.
        budget = max_tokens * 4
        assert counting.chars <= 501 * len(sizes) + budget + max(sizes) + 8 * max(sizes)
        await raw.close()
    finally:
        await runtime.close()


# -- per-org rate limit -----------------------------------------------------------------------


async def test_the_org_limit_counts_every_key_of_the_org(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        {
            "storage.data_dir": tmp_path / "data",
            "limits.rate_per_s": 1000,
            "limits.org_rate_per_s": 0.001,  # no refill during the test
            "limits.org_rate_burst": 3,
        },
    )
    runtime = Runtime(settings)
    await runtime.start()
    try:
        org, key1 = await create_org_key(runtime)
        _, key2 = await create_org_key(runtime, org_id=org)
        _, other = await create_org_key(runtime)
        app = create_app(runtime, manage_runtime=False)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost"
        ) as client:

            async def status(key: str) -> int:
                return (await client.get(MEM, headers={"x-api-key": key})).status_code

            # A key's first request verifies it (its org is not known before).
            assert [await status(key1), await status(key2)] == [200, 200]
            assert [await status(k) for k in (key1, key2, key1)] == [200, 200, 200]
            refused = await client.get(MEM, headers={"x-api-key": key2})
            assert refused.status_code == 429 and "retry-after" in refused.headers
            assert "limits.org_rate_per_s" in refused.json()["hint"]
            assert await status(other) == 200  # another org has its own allowance
            assert (await client.get("/health")).status_code == 200
            assert (
                'memtrace_rate_limited_total{scope="org"} 1.0'
                in (await client.get("/metrics")).text
            )
    finally:
        await runtime.close()


# -- the agent cache is bounded ---------------------------------------------------------------


async def test_agent_cache_is_bounded_and_forgotten_agents_still_work(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "memtrace.db", synchronous="NORMAL", agent_cache_size=100)
    await catalog.open()
    try:
        now = now_us()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for start in range(0, 20_000, 500):
            agents = [f"agent_{n:06d}_with_a_rather_long_name" for n in range(start, start + 500)]
            await catalog.note_activity("org_x", agents, now)
        growth = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "lineno"))
        tracemalloc.stop()
        assert catalog.known_agents() == 100
        assert growth < 2_000_000  # 20,000 agents; unbounded this was ~5 MB
        # An agent that fell out of the cache is registered again (an upsert) and moves on.
        await catalog.note_activity("org_x", ["agent_000000_with_a_rather_long_name"], now + 5)
        row = await catalog.get_agent("org_x", "agent_000000_with_a_rather_long_name")
        assert row is not None and row.last_active_at == now + 5
        assert len(await catalog.list_agents("org_x", 1000, 0)) == 1000
    finally:
        await catalog.close()
