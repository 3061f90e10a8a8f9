"""The live stream ``GET /api/v1/stream`` (docs/feed.md) on a real uvicorn server in process,
through the SDK's stream iterators: filters, commit order, resume with ``Last-Event-ID`` (no
gap, no duplicate), heartbeats, the idle lifetime, the per-key cap, exactly-once delivery to
many subscribers while writers race; and (slow) against ``memtrace serve`` with the sync SDK."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from http_api.app import create_app
from memtrace.client import AsyncMemtrace, Memtrace
from memtrace.client._endpoints import StreamEvent, memory_request
from memtrace.client.streaming import AsyncMemoryStream
from memtrace.config import load_settings
from memtrace.domain.errors import InvalidInput, RateLimited
from memtrace.domain.positions import encode_position
from memtrace.runtime import Runtime
from tests.helpers import Tenant, create_org_key, free_port, wait_until

MEM = "/api/v1/memories"


class Served:
    def __init__(self, runtime: Runtime, url: str, key: str) -> None:
        self.runtime, self.url, self.key = runtime, url, key

    def client(self) -> AsyncMemtrace:
        return AsyncMemtrace(self.url, self.key, max_retries=0)


async def serve(tmp_path: Path, key: str | None = None, **overrides: Any) -> AsyncIterator[Served]:
    settings = load_settings(
        None,
        {
            "storage.data_dir": tmp_path / "data",
            "limits.rate_per_s": 0,
            "limits.org_rate_per_s": 0,
            "limits.stream_heartbeat_s": 0.2,
            **overrides,
        },
    )
    runtime = Runtime(settings)
    port = free_port()
    app = create_app(runtime)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(600):
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    assert server.started, "uvicorn did not start"
    if key is None:
        _, key = await create_org_key(runtime, "acme")
    else:  # (an org made by another replica of the same database)
        await runtime.reload()
    yield Served(runtime, f"http://127.0.0.1:{port}", key)
    server.should_exit = True
    await task


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async for s in serve(tmp_path):
        yield s


async def take(stream: AsyncMemoryStream, n: int, timeout: float = 30) -> list[StreamEvent]:
    """The next ``n`` events of an open stream (the stream stays usable)."""
    out: list[StreamEvent] = []
    events = stream.__aiter__()

    async def run() -> None:
        async for event in events:
            out.append(event)
            if len(out) == n:
                return

    try:
        await asyncio.wait_for(run(), timeout)
    finally:
        await events.aclose()  # type: ignore[attr-defined]  # (the connection closes now)
    return out


async def opened(served: Served, before: int) -> None:
    """Wait until the server counts one more open stream than ``before``."""
    for _ in range(400):
        if served.runtime.streams.open_now > before:
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the stream did not open")


async def test_stream_delivers_matching_memories_in_commit_order(served: Served) -> None:
    async with served.client() as client:
        stream = client.stream(agent_id="alice", tags=["deploy"])
        collecting = asyncio.create_task(take(stream, 3))
        await opened(served, 0)
        wanted = []
        for i in range(6):
            memory = await client.remember(
                "alice" if i % 2 == 0 else "bob", f"step {i}", tags=["deploy"]
            )
            if i % 2 == 0:
                wanted.append(memory.id)
        events = await collecting
        assert [e.memory.id for e in events] == wanted
        assert events[0].memory.content == "step 0" and events[0].memory.agent_id == "alice"
        assert len({e.id for e in events}) == 3


async def test_resume_after_last_event_id_has_no_gap_and_no_duplicate(served: Served) -> None:
    async with served.client() as client:
        first = client.stream()
        collecting = asyncio.create_task(take(first, 3))
        await opened(served, 0)
        ids = [(await client.remember("alice", f"before {i}")).id for i in range(3)]
        assert [e.memory.id for e in await collecting] == ids
        resume_at = first.last_event_id
        # written while no stream is open
        later = [(await client.remember("alice", f"while away {i}")).id for i in range(3)]
        again = client.stream(last_event_id=resume_at)
        collecting = asyncio.create_task(take(again, 4))
        await asyncio.sleep(0)
        later.append((await client.remember("alice", "after reconnect")).id)
        assert [e.memory.id for e in await collecting] == later
        # the position survives as a query parameter too (browsers' first connect)
        via_after = client.stream(after=resume_at)
        assert [e.memory.id for e in await take(via_after, 4)] == later


async def test_sdk_feed_confirm_and_cursor(served: Served) -> None:
    async with served.client() as client:
        ids = [(await client.remember("alice", f"note {i}")).id for i in range(3)]
        await client.remember("bob", "own")
        page = await client.feed("bob", limit=2)
        assert [m.id for m in page.memories] == ids[:2] and page.has_more
        assert (await client.feed_cursor("bob")).cursor is None
        state = await client.confirm_feed("bob", page.cursor)
        assert state.cursor == page.cursor
        rest = await client.feed("bob", auto_advance=True)
        assert [m.id for m in rest.memories] == ids[2:] and rest.advanced
        assert (await client.feed("bob")).memories == []
        assert (await client.feed_cursor("bob")).cursor == rest.cursor
        with pytest.raises(InvalidInput, match="cursor"):
            await client.confirm_feed("bob", "p1.nonsense")


async def test_heartbeats_and_bad_positions(served: Served) -> None:
    headers = {"x-api-key": served.key}
    async with httpx.AsyncClient(base_url=served.url, headers=headers, timeout=10) as http:
        async with http.stream("GET", "/api/v1/stream") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.aiter_lines()
            seen = [await lines.__anext__() for _ in range(8)]
            assert seen[1].startswith("id: p1.") and seen[2] == "event: open"
            assert ": ping" in seen
        for header, value in (
            ("last-event-id", "garbage"),
            ("last-event-id", encode_position(10**9)),
        ):
            response = await http.get("/api/v1/stream", headers={header: value})
            assert response.status_code == 400
            assert "Last-Event-ID" in response.json()["error"]
        response = await http.get("/api/v1/stream", params={"after": "p1.x"})
        assert response.status_code == 400 and "after" in response.json()["error"]
    async with served.client() as client:
        with pytest.raises(InvalidInput):
            await take(client.stream(last_event_id="garbage"), 1)


async def test_racing_writers_reach_every_subscriber_exactly_once(served: Served) -> None:
    """Five subscribers, one of which is cut off and resumes half-way; four writers race."""
    writers, per_writer = 4, 25
    total = writers * (per_writer + per_writer // 5)  # every 5th write is a batch of 2
    async with served.client() as client:
        streams = [client.stream() for _ in range(5)]
        collecting = [asyncio.create_task(take(s, total)) for s in streams[:4]]
        cut = asyncio.create_task(take(streams[4], total // 2))
        await opened(served, 4)

        async def writer(n: int) -> list[str]:
            ids = []
            for i in range(per_writer):
                if i % 5 == 4:
                    batch = await client.add_memories_batch(
                        [
                            memory_request(f"w{n}", f"w{n} batch {i}"),
                            memory_request(f"w{n}", f"w{n} batch {i} b"),
                        ]
                    )
                    ids += [m.id for m in batch.memories]
                else:
                    ids.append((await client.remember(f"w{n}", f"w{n} #{i}")).id)
            return ids

        written = await asyncio.gather(*(writer(n) for n in range(writers)))
        all_ids = {i for ids in written for i in ids}
        orders = []
        for task in collecting:
            got = [e.memory.id for e in await task]
            assert len(got) == len(set(got)) == total
            assert set(got) == all_ids
            orders.append(got)
        assert all(order == orders[0] for order in orders)  # one commit order for everyone
        head = [e.memory.id for e in await cut]
        resumed = client.stream(last_event_id=streams[4].last_event_id)
        rest = [e.memory.id for e in await take(resumed, total - len(head))]
        assert head + rest == orders[0]


async def test_the_stream_cap_per_key_answers_429(tmp_path: Path) -> None:
    async for served in serve(tmp_path, **{"limits.streams_per_key": 2}):
        async with served.client() as client:
            tasks = [asyncio.create_task(take(client.stream(), 1, timeout=60)) for _ in range(2)]
            await opened(served, 1)
            with pytest.raises(RateLimited) as refused:
                await take(client.stream(), 1)
            assert "limits.streams_per_key" in str(refused.value)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for _ in range(400):  # the slots come back once the clients have left
                if served.runtime.streams.open_now == 0:
                    break
                await asyncio.sleep(0.025)
            assert served.runtime.streams.open_now == 0
            collecting = asyncio.create_task(take(client.stream(), 1))
            await opened(served, 0)
            memory = await client.remember("alice", "after the cap")
            assert (await collecting)[0].memory.id == memory.id


async def test_an_idle_stream_ends_and_the_sdk_resumes(tmp_path: Path) -> None:
    async for served in serve(tmp_path, **{"limits.stream_idle_s": 0.5}):
        async with served.client() as client:
            stream = client.stream()
            collecting = asyncio.create_task(take(stream, 2))
            await opened(served, 0)
            first = await client.remember("alice", "one")
            for _ in range(400):  # the server ends the idle stream; the SDK reconnects
                if stream.connections >= 2:
                    break
                await asyncio.sleep(0.025)
            assert stream.connections >= 2
            second = await client.remember("alice", "two")
            assert [e.memory.id for e in await collecting] == [first.id, second.id]


@pytest.mark.slow
async def test_other_replicas_writes_arrive(tmp_path: Path, pg_url: str) -> None:
    """Cluster mode: a stream on one replica gets, once each and in commit order, what writers
    on another replica commit (within limits.stream_poll_s) as well as its own replica's."""
    cluster = {
        "postgres.url": pg_url,
        "storage.default_backend": "postgres",
        "limits.stream_poll_s": 0.2,
    }
    async for first in serve(tmp_path / "a", **cluster):
        async for second in serve(tmp_path / "b", key=first.key, **cluster):
            async with first.client() as here, second.client() as there:
                stream = here.stream()
                collecting = asyncio.create_task(take(stream, 40))
                await opened(first, 0)

                async def write(client: AsyncMemtrace, name: str) -> list[str]:
                    return [(await client.remember(name, f"{name} {i}")).id for i in range(20)]

                ids = await asyncio.gather(write(there, "far"), write(here, "near"))
                got = [e.memory.id for e in await collecting]
                assert len(got) == len(set(got)) == 40
                assert set(got) == set(ids[0]) | set(ids[1])
                for written in ids:  # each writer's memories in the order it wrote them
                    assert [i for i in got if i in set(written)] == written


@pytest.mark.slow
def test_sync_sdk_against_a_real_server(tenant: Tenant) -> None:
    """``memtrace serve`` as a process: writers in threads race a sync SDK stream that is
    resumed half-way; every memory arrives once, in one order."""
    total = 60
    got: list[str] = []
    with Memtrace(tenant.url, tenant.key) as client:
        stream = client.stream()
        started = threading.Event()

        def follow(n: int) -> None:
            started.set()
            for event in stream:
                got.append(event.memory.id)
                if len(got) == n:
                    return

        reader = threading.Thread(target=follow, args=(total // 2,))
        reader.start()
        wait_until(lambda: started.is_set() and stream.connections == 1)

        def write(n: int, out: list[str]) -> None:
            with Memtrace(tenant.url, tenant.key) as writer:
                for i in range(total // 3):
                    out.append(writer.remember(f"w{n}", f"w{n} #{i}").id)

        outs: list[list[str]] = [[], [], []]
        threads = [threading.Thread(target=write, args=(n, outs[n])) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        reader.join(60)
        resumed = client.stream(last_event_id=stream.last_event_id)
        for event in resumed:
            got.append(event.memory.id)
            if len(got) == total:
                break
    assert len(got) == len(set(got)) == total
    assert set(got) == {i for out in outs for i in out}
    with Memtrace(tenant.url, tenant.key) as client:  # the sync feed, same memories
        page = client.feed("reader", limit=1000, auto_advance=True)
        assert {m.id for m in page.memories} == set(got) and not page.has_more
        assert client.feed("reader").memories == []
        assert client.feed_cursor("reader").cursor == page.cursor
