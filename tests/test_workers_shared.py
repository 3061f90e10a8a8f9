"""What the worker processes of ``memtrace serve --workers N`` share, in process: the rate-limit
table (per key and per org, as the write route applies them), the id generator's view of other
processes' ids, one shipper per Arc outbox, and the agent cache after another process deleted
an agent. (tests/test_workers.py runs real workers.)"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import httpx

from http_api.app import create_app
from memtrace.auth.ratelimit import SharedRateLimiter
from memtrace.config import load_settings
from memtrace.domain.ids import MonotonicUlid, _decode_ulid
from memtrace.domain.timestamps import now_us
from memtrace.metadata.catalog import Catalog
from memtrace.runtime import Runtime, WorkerShare
from memtrace.storage.arc.store import ArcStore
from memtrace.storage.arc.target import ArcTarget
from memtrace.testing.arc_emulator import TEST_TOKEN
from memtrace.testing.arc_server import EmulatorServer
from tests.helpers import create_org_key
from tests.storage.arc_support import FAST_ARC, eventually, memory

MEM = "/api/v1/memories"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiters_on_one_table_share_each_bucket(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "ratelimit"
    one, two = (SharedRateLimiter(path, 1.0, 3, clock=clock) for _ in range(2))
    waits = [limiter.acquire("key:a") for limiter in (one, two, one, two)]
    assert waits[:3] == [0.0, 0.0, 0.0] and waits[3] > 0  # one bucket of 3, whoever asks
    assert one.acquire("key:b") == 0.0  # another caller has a bucket of its own
    clock.now += 1.0  # a token back
    assert two.acquire("key:a") == 0.0 and one.acquire("key:a") > 0
    other = SharedRateLimiter(path, 1.0, 3, namespace="org", clock=clock)
    assert other.acquire("key:a") == 0.0  # another limiter in the same file: its own buckets
    for limiter in (one, two, other):
        limiter.close()


def test_a_full_table_drops_the_least_recently_used_bucket(tmp_path: Path) -> None:
    clock = Clock()
    limiter = SharedRateLimiter(tmp_path / "rl", 0.001, 1, slots=8, clock=clock)
    for n in range(8):
        clock.now += 1
        assert limiter.acquire(f"caller {n}") == 0.0
        assert limiter.acquire(f"caller {n}") > 0  # each bucket is empty now
    clock.now += 1
    assert limiter.acquire("caller 8") == 0.0  # took the slot of caller 0, the oldest
    assert limiter.acquire("caller 0") == 0.0  # came back full: it only ever favours a caller
    assert limiter.acquire("caller 7") > 0  # recent buckets are kept
    assert not SharedRateLimiter(tmp_path / "off", 0.0, 1).enabled
    limiter.close()


async def test_workers_share_the_org_limit_on_the_write_route(tmp_path: Path) -> None:
    """Two workers' runtimes on one share: an org's keys, each served by another worker, draw
    on one org allowance (and a key on one key allowance) on ``POST /api/v1/memories``."""
    settings = load_settings(
        None,
        {
            "storage.data_dir": tmp_path / "data",
            "limits.rate_per_s": 0.001,  # no refill during the test
            "limits.rate_burst": 5,
            "limits.org_rate_per_s": 0.001,
            "limits.org_rate_burst": 4,
        },
    )
    (tmp_path / "share").mkdir()
    share = WorkerShare(tmp_path / "share")
    workers = [Runtime(settings, share=share) for _ in range(2)]
    async with AsyncExitStack() as stack:
        clients = []
        for runtime in workers:
            await runtime.start()
            stack.push_async_callback(runtime.close)
            transport = httpx.ASGITransport(app=create_app(runtime, manage_runtime=False))
            client = httpx.AsyncClient(transport=transport, base_url="http://localhost")
            clients.append(await stack.enter_async_context(client))
        org, key1 = await create_org_key(workers[0])
        _, key2 = await create_org_key(workers[0], org_id=org)
        _, other = await create_org_key(workers[0])
        await workers[1].reload()

        async def post(worker: int, key: str, n: int) -> httpx.Response:
            body = {"agent_id": "a", "content": f"memory {n}"}
            return await clients[worker].post(MEM, json=body, headers={"x-api-key": key})

        # A key's first request to a worker verifies it there (its org is not known before).
        assert [(await post(0, key1, 0)).status_code, (await post(1, key2, 1)).status_code] == [
            201,
            201,
        ]
        answers = [await post(n % 2, (key1, key2)[n % 2], n) for n in range(2, 10)]
        # one allowance of 4 for the org, whichever worker each key's requests reached
        assert [a.status_code for a in answers] == [201] * 4 + [429] * 4
        assert "limits.org_rate_per_s" in answers[-1].json()["hint"]
        # one allowance of 5 for a key, across workers (its org is another one)
        assert [(await post(n % 2, other, n)).status_code for n in range(7)] == [201] * 5 + [
            429
        ] * 2


def test_ids_continue_after_an_id_another_process_wrote() -> None:
    ours, theirs = MonotonicUlid(), MonotonicUlid()
    mine = ours.new()
    ahead = [theirs.new() for _ in range(3)][-1]  # another process's latest
    assert _decode_ulid(ahead[4:]) is not None
    ours.observe(ahead)
    nxt = ours.new()
    assert nxt > max(ahead, mine)  # (the two may have drawn either order within 1 ms)
    ours.observe("mem_not-an-id")  # ignored
    ours.observe(mine)  # older: ignored
    assert ours.new() > nxt


async def test_one_process_ships_an_outbox_that_several_open(
    arc_server: EmulatorServer, tmp_path: Path
) -> None:
    """Every worker opens the org's store, and so its shipper; each row reaches Arc once."""
    outbox = tmp_path / "arc_outbox.db"
    stores = [
        ArcStore(
            "org_a",
            ArcTarget(arc_server.url, "db1", "events", TEST_TOKEN),
            outbox,
            FAST_ARC,
            synchronous="NORMAL",
            dedup_window_us=None,
        )
        for _ in range(2)
    ]
    for store in stores:
        await store.open()
    try:
        written = []
        for n in range(20):
            store = stores[n % 2]
            (outcome,) = await store.write([memory(f"row {n}", time_us=now_us())], None)
            assert outcome.record is not None
            written.append(outcome.record.id)

        async def settled() -> bool:
            return (await stores[0].outbox.counts()).total == 0

        await eventually(settled)
        arc_server.emulator.flush()
        rows = arc_server.emulator.sql("db1", "SELECT id FROM events")
        assert sorted(r[0] for r in rows) == sorted(written)  # each once
        assert [store.shipper.ship_lock.held for store in stores].count(True) == 1
    finally:
        for store in stores:
            await store.close()


async def test_an_agent_deleted_by_another_process_is_registered_again(tmp_path: Path) -> None:
    """Each process remembers which agents exist so that writes skip registering them; after
    another process deleted one, the next write must register it again before its 201."""
    path = tmp_path / "memtrace.db"
    ours, theirs = Catalog(path, synchronous="NORMAL"), Catalog(path, synchronous="NORMAL")
    for catalog in (ours, theirs):
        await catalog.open()
    try:
        await ours.bootstrap(default_org=True, admin_key=None, now=1)
        await ours.note_activity("org_default", ["crawler"], 10)
        assert await theirs.get_agent("org_default", "crawler") is not None
        await theirs.delete_agent("org_default", "crawler")
        await ours.admin_snapshot()  # the reload every process runs when the DB changed
        await ours.note_activity("org_default", ["crawler"], 20)
        assert await theirs.get_agent("org_default", "crawler") is not None
    finally:
        for catalog in (ours, theirs):
            await catalog.close()
