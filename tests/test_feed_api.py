"""The feed over REST (docs/feed.md): per-reader cursors that advance on confirm or with
auto_advance, other agents' memories in commit order, and exactly-once delivery while writers
race the reads — on the embedded store, and (slow) on PostgreSQL with two replicas."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from http_api.app import create_app
from memtrace.auth.crypto import generate_master_key
from memtrace.config import load_settings
from memtrace.domain.positions import encode_position
from memtrace.runtime import Runtime
from memtrace.testing.arc_server import EmulatorServer
from tests.helpers import create_org_key
from tests.storage.arc_support import eventually
from tests.storage.test_arc_runtime import bind

FEED = "/api/v1/feed"
MEM = "/api/v1/memories"


async def write(api: httpx.AsyncClient, agent: str, content: str, **more: object) -> str:
    response = await api.post(MEM, json={"agent_id": agent, "content": content, **more})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def read(api: httpx.AsyncClient, reader: str, **params: object) -> dict[str, object]:
    response = await api.get(FEED, params={"reader": reader, **params})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def contents(page: dict[str, object]) -> list[str]:
    return [m["content"] for m in page["memories"]]  # type: ignore[attr-defined,index]


async def test_feed_delivers_other_agents_memories_until_confirmed(api: httpx.AsyncClient) -> None:
    await write(api, "alice", "found the bug")
    await write(api, "bob", "my own note")
    await write(api, "carol", "backfilled", time="2020-01-01T00:00:00Z")  # old time, new commit
    page = await read(api, "bob")
    assert contents(page) == ["found the bug", "backfilled"]  # commit order; bob's own left out
    assert page["has_more"] is False and page["advanced"] is False
    assert contents(await read(api, "bob")) == contents(page)  # not confirmed: same again
    assert contents(await read(api, "bob", include_own="true")) == [
        "found the bug",
        "my own note",
        "backfilled",
    ]
    confirmed = await api.post(f"{FEED}/confirm", json={"reader": "bob", "cursor": page["cursor"]})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["cursor"] == page["cursor"]
    assert contents(await read(api, "bob")) == []
    await write(api, "alice", "fixed it")
    assert contents(await read(api, "bob")) == ["fixed it"]
    assert contents(await read(api, "dave")) == [  # another reader has its own cursor
        "found the bug",
        "my own note",
        "backfilled",
        "fixed it",
    ]


async def test_paging_filters_and_auto_advance(api: httpx.AsyncClient) -> None:
    for i in range(5):
        await write(api, "alice", f"note {i}", event_type="error" if i % 2 else "general")
    first = await read(api, "bob", limit=2, auto_advance="true")
    assert contents(first) == ["note 0", "note 1"] and first["has_more"] is True
    assert first["advanced"] is True
    second = await read(api, "bob", limit=2, auto_advance="true", event_type="error")
    # notes 2 and 4 do not match: the cursor passes them (one cursor for every filter)
    assert contents(second) == ["note 3"] and second["has_more"] is False
    assert contents(await read(api, "bob", auto_advance="true")) == []
    await write(api, "alice", "note 5")
    third = await read(api, "bob", auto_advance="true")
    assert contents(third) == ["note 5"] and third["cursor"] != second["cursor"]


async def test_cursor_state_and_skipping_to_now(api: httpx.AsyncClient) -> None:
    await write(api, "alice", "old news")
    state = (await api.get(f"{FEED}/cursor", params={"reader": "bob"})).json()
    assert state["reader"] == "bob" and state["cursor"] is None
    skipped = await api.post(f"{FEED}/confirm", json={"reader": "bob", "cursor": state["head"]})
    assert skipped.status_code == 200
    assert contents(await read(api, "bob")) == []
    # confirm never moves a cursor back
    back = await api.post(f"{FEED}/confirm", json={"reader": "bob", "cursor": encode_position(0)})
    assert back.status_code == 200 and back.json()["cursor"] == state["head"]
    await write(api, "alice", "news")
    assert contents(await read(api, "bob")) == ["news"]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (("GET", FEED, {}, None), "reader"),
        (("GET", FEED, {"reader": "bob", "limit": "0"}, None), "limit"),
        (("GET", FEED, {"reader": "bad reader"}, None), "reader"),
        (("POST", f"{FEED}/confirm", None, {"reader": "bob", "cursor": "nope"}), "cursor"),
        (("POST", f"{FEED}/confirm", None, {"reader": "bob"}), "cursor"),
        (
            ("POST", f"{FEED}/confirm", None, {"reader": "bob", "cursor": encode_position(10**9)}),
            "cursor",
        ),
        (("GET", f"{FEED}/cursor", {}, None), "reader"),
    ],
)
async def test_bad_input_is_400_naming_the_field(
    api: httpx.AsyncClient,
    request_: tuple[str, str, dict[str, str] | None, dict[str, object] | None],
    field: str,
) -> None:
    method, path, params, body = request_
    response = await api.request(method, path, params=params, json=body)
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]


async def race(
    writers: list[httpx.AsyncClient], readers: list[httpx.AsyncClient], per_writer: int = 30
) -> None:
    """Writers commit while readers of one reader id read with auto_advance: every memory is
    delivered to exactly one read, none skipped."""
    done = asyncio.Event()

    async def writer(n: int, api: httpx.AsyncClient) -> list[str]:
        ids = []
        for i in range(per_writer):
            ids.append(await write(api, f"writer{n}", f"w{n} #{i}"))
        return ids

    async def reader(api: httpx.AsyncClient) -> list[str]:
        got: list[str] = []
        while True:
            finished = done.is_set()
            response = await api.get(FEED, params={"reader": "watcher", "auto_advance": "true"})
            if response.status_code == 409:  # the other readers kept winning: read again
                continue
            assert response.status_code == 200, response.text
            page = response.json()
            got += [m["id"] for m in page["memories"]]
            if finished and not page["has_more"] and not page["memories"]:
                return got
            await asyncio.sleep(0)

    reading = [asyncio.create_task(reader(api)) for api in readers]
    written = await asyncio.gather(*(writer(n, api) for n, api in enumerate(writers)))
    done.set()
    delivered = [memory_id for got in await asyncio.gather(*reading) for memory_id in got]
    assert len(delivered) == len(set(delivered)), "a memory was delivered twice"
    assert set(delivered) == {i for ids in written for i in ids}, "a memory was skipped"


async def test_racing_writers_and_readers_get_each_memory_once(api: httpx.AsyncClient) -> None:
    await race([api, api, api, api], [api, api, api])


@pytest.mark.slow
async def test_racing_on_postgres_replicas(tmp_path: Path, pg_url: str) -> None:
    """Cluster mode: writers and readers spread over two replicas of one database."""
    replicas = []
    for i in range(2):
        settings = load_settings(
            None,
            {
                "storage.data_dir": tmp_path / f"replica{i}",
                "postgres.url": pg_url,
                "storage.default_backend": "postgres",
                "limits.rate_per_s": 0,
            },
        )
        runtime = Runtime(settings)
        await runtime.start()
        replicas.append(runtime)
    _, key = await create_org_key(replicas[0], "acme")
    await replicas[1].reload()
    clients = [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(r, manage_runtime=False)),
            base_url="http://localhost",
            headers={"x-api-key": key},
        )
        for r in replicas
    ]
    try:
        await race([clients[0], clients[1], clients[0], clients[1]], [clients[1], clients[0]])
    finally:
        for client in clients:
            await client.aclose()
        for runtime in replicas:
            await runtime.close()


async def test_racing_on_an_arc_bound_org(
    data_dir: Path, arc_server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An org on Arc: memories move from the outbox to Arc while the feed reads them (records
    come from either), and each is still delivered once."""
    monkeypatch.setenv("MEMTRACE_MASTER_KEY", generate_master_key())
    settings = load_settings(
        None,
        {"storage.data_dir": data_dir, "arc.flush_interval_ms": 10, "limits.rate_per_s": 0},
    )
    runtime = Runtime(settings)
    await runtime.start()
    try:
        org_id, key = await create_org_key(runtime, "acme")
        await bind(runtime, org_id, arc_server, "acme")
        app = create_app(runtime, manage_runtime=False)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://localhost",
            headers={"x-api-key": key},
        ) as api:
            await race([api, api, api], [api, api], per_writer=20)
            store = await runtime.stores.get(org_id)

            async def verified() -> bool:  # every row shipped, seen in Arc, left the outbox
                health = await store.health()
                return health.outbox_pending + health.outbox_unverified == 0

            await eventually(verified, timeout=60)
            # a new reader now gets every memory from Arc itself, in the same order
            page = await read(api, "late", limit=1000)
            assert page["count"] == 60 and page["has_more"] is False
    finally:
        await runtime.close()
