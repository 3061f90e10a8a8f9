"""Bounded file descriptors and threads: at most ``storage.max_open_stores`` stores stay open,
a store is never closed under a running operation, and a process serving more orgs than its
open-file limit allows at once keeps answering every one of them (issue 14).

The same against a real server with a lowered ``RLIMIT_NOFILE`` is in
``tests/test_fairness_server.py``.
"""

from __future__ import annotations

import asyncio
import os
import resource
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from http_api.app import create_app
from memtrace.config import load_settings
from memtrace.domain.errors import StorageUnavailable
from memtrace.runtime import Runtime
from memtrace.storage.base import MemoryQuery
from memtrace.storage.sqlite import SQLiteDatabase
from tests.helpers import create_org_key

MEM = "/api/v1/memories"


def writer_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("sqlite-writer:memories"))


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    settings = load_settings(
        None, {"storage.data_dir": tmp_path / "data", "storage.max_open_stores": 3}
    )
    runtime = Runtime(settings)
    await runtime.start()
    app = create_app(runtime, manage_runtime=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost"
    ) as client:
        yield runtime, client
    await runtime.close()


async def test_idle_stores_are_closed_beyond_the_maximum(
    small: tuple[Runtime, httpx.AsyncClient],
) -> None:
    runtime, client = small
    threads_before = writer_threads()
    keys = [(await create_org_key(runtime))[1] for _ in range(10)]
    for round_no in range(2):
        for n, key in enumerate(keys):
            headers = {"x-api-key": key}
            body = {"agent_id": "a", "content": f"org {n} round {round_no}"}
            assert (await client.post(MEM, json=body, headers=headers)).status_code == 201
            listed = (await client.get(MEM, headers=headers)).json()["memories"]
            # Closed and reopened in between: nothing is lost, nothing leaks between orgs.
            assert [m["content"] for m in listed][: round_no + 1] == [
                f"org {n} round {r}" for r in range(round_no, -1, -1)
            ]
            assert runtime.stores.open_count() <= 3
    assert runtime.stores.evictions >= 17
    assert writer_threads() - threads_before <= 3  # one writer thread per open store
    assert "memtrace_open_stores 3.0" in (await client.get("/metrics")).text


async def test_a_store_in_use_is_never_closed(small: tuple[Runtime, httpx.AsyncClient]) -> None:
    runtime, client = small
    orgs = [await create_org_key(runtime) for _ in range(6)]
    busy_org, busy_key = orgs[0]
    async with runtime.stores.use(busy_org) as busy:
        for _, key in orgs[1:]:  # five other orgs come and go meanwhile
            body = {"agent_id": "a", "content": "x"}
            assert (
                await client.post(MEM, json=body, headers={"x-api-key": key})
            ).status_code == 201
        assert busy_org in runtime.stores.open_orgs()
        assert await busy.count(MemoryQuery(org_id=busy_org)) == 0  # still open, answering
    body = {"agent_id": "a", "content": "after"}
    assert (await client.post(MEM, json=body, headers={"x-api-key": busy_key})).status_code == 201
    assert runtime.stores.open_count() <= 3


@pytest.fixture
def restore_nofile() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_descriptors() -> int:
    # Listing /proc/self/fd takes a descriptor itself: lift the soft limit while counting, or
    # the count fails when the test has just used every descriptor up.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        return len(os.listdir("/proc/self/fd"))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
async def test_more_orgs_than_descriptors_allow_open_at_once(
    tmp_path: Path, restore_nofile: None
) -> None:
    # storage.max_open_stores is far too high for the limit below: running out of descriptors
    # is what closes idle stores here.
    settings = load_settings(
        None, {"storage.data_dir": tmp_path / "data", "storage.max_open_stores": 10_000}
    )
    runtime = Runtime(settings)
    await runtime.start()
    app = create_app(runtime, manage_runtime=False)
    try:
        orgs = [await create_org_key(runtime) for _ in range(40)]
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost"
        ) as client:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            # Room for a handful of stores (each holds 3-5 descriptors), not for 40.
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_descriptors() + 30, hard))
            for n, (_, key) in enumerate(orgs):
                headers = {"x-api-key": key}
                body = {"agent_id": "a", "content": f"memory of org {n}"}
                created = await client.post(MEM, json=body, headers=headers)
                assert created.status_code == 201, created.text
                listed = await client.get(MEM, headers=headers)
                assert listed.status_code == 200, listed.text
                assert [m["content"] for m in listed.json()["memories"]] == [body["content"]]
            assert runtime.stores.open_count() < 40 and runtime.stores.evictions > 0
            # Every open store busy and no descriptor left: a clear 503, never a 500.
            _, new_key = await create_org_key(runtime)
            async with AsyncExitStack() as leases:
                for org in runtime.stores.open_orgs():
                    await leases.enter_async_context(runtime.stores.use(org))
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_descriptors(), hard))
                refused = await client.post(
                    MEM, json={"agent_id": "a", "content": "x"}, headers={"x-api-key": new_key}
                )
                assert refused.status_code == 503
                assert "file descriptor limit" in refused.json()["error"]
            # Every store busy for a moment only (a short read, a health check): the request
            # waits for one to become idle, which is closed to make room.
            _, late_key = await create_org_key(runtime)
            async with AsyncExitStack() as leases:
                for org in runtime.stores.open_orgs():
                    await leases.enter_async_context(runtime.stores.use(org))
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_descriptors(), hard))
                waiting = asyncio.create_task(
                    client.post(
                        MEM, json={"agent_id": "a", "content": "y"}, headers={"x-api-key": late_key}
                    )
                )
                await asyncio.sleep(0.3)  # the leases end while the request waits
            created = await waiting
            assert created.status_code == 201, created.text
    finally:
        await runtime.close()


async def test_a_store_that_cannot_open_is_a_clear_503(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the store's directory should be")
    db = SQLiteDatabase(blocked / "memories.db")
    with pytest.raises(StorageUnavailable) as caught:
        await db.open()
    assert caught.value.status_code == 503
    assert caught.value.message.startswith("storage cannot be opened")
