"""Cluster mode in process: several runtimes (replicas) on one real PostgreSQL database, each
with its own REST app, as N ``memtrace serve`` processes behind a load balancer would be.

The multi-process tests (kill -9, the CLI, Arc takeover) are in test_replicas_process.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from http_api.app import create_app
from memtrace.config import load_settings
from memtrace.runtime import Runtime
from memtrace.storage.postgres.store import PostgresStore
from tests.helpers import create_org_key, open_store_of
from tests.storage.arc_support import eventually

MEM = "/api/v1/memories"


async def start_replicas(
    root: Path, pg_url: str, n: int = 3, **overrides: object
) -> list[tuple[Runtime, httpx.AsyncClient]]:
    """``n`` replicas on the same PostgreSQL (each with its own data dir, which stays unused)."""
    out: list[tuple[Runtime, httpx.AsyncClient]] = []
    for i in range(n):
        settings = load_settings(
            None,
            {
                "storage.data_dir": root / f"replica{i}",
                "postgres.url": pg_url,
                "storage.default_backend": "postgres",
                **overrides,
            },
        )
        runtime = Runtime(settings)
        await runtime.start()
        app = create_app(runtime, manage_runtime=False)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost"
        )
        out.append((runtime, client))
    return out


async def stop_replicas(replicas: list[tuple[Runtime, httpx.AsyncClient]]) -> None:
    for runtime, client in replicas:
        await client.aclose()
        await runtime.close()


@pytest.fixture
async def replicas(
    tmp_path: Path, pg_url: str
) -> AsyncIterator[list[tuple[Runtime, httpx.AsyncClient]]]:
    out = await start_replicas(tmp_path, pg_url)
    yield out
    await stop_replicas(out)


async def test_any_replica_reads_what_another_acknowledged(
    replicas: list[tuple[Runtime, httpx.AsyncClient]],
) -> None:
    org_id, key = await create_org_key(replicas[0][0], "acme")
    headers = {"x-api-key": key}
    for runtime, _ in replicas[1:]:
        await runtime.reload()
    ids = []
    for n in range(9):  # round robin: write on one replica, read at once on the next
        _, writer = replicas[n % 3]
        _, reader = replicas[(n + 1) % 3]
        response = await writer.post(
            MEM, json={"agent_id": "crawler", "content": f"step {n}"}, headers=headers
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
        got = await reader.get(f"{MEM}/{ids[-1]}", headers=headers)
        assert got.status_code == 200 and got.json()["content"] == f"step {n}"
        listed = (await reader.get(MEM, params={"limit": 100}, headers=headers)).json()
        assert [m["id"] for m in listed["memories"]] == list(reversed(ids))
    found = (
        await replicas[2][1].post(
            "/api/v1/search", json={"content_contains": "STEP 4"}, headers=headers
        )
    ).json()
    assert "results" in found, found
    assert [m["content"] for m in found["results"]] == ["step 4"]
    agent = (await replicas[1][1].get("/api/v1/agents/crawler/stats", headers=headers)).json()
    assert agent["memory_count"] == 9
    store = await open_store_of(replicas[0][0], org_id)
    assert isinstance(store, PostgresStore)


async def test_same_memory_to_three_replicas_at_once_is_stored_once(
    replicas: list[tuple[Runtime, httpx.AsyncClient]],
) -> None:
    _, key = await create_org_key(replicas[0][0], "acme")
    headers = {"x-api-key": key}
    for runtime, _ in replicas[1:]:
        await runtime.reload()
    for round_ in range(20):
        body = {"agent_id": "crawler", "content": f"the same observation {round_}"}
        responses = await asyncio.gather(
            *(client.post(MEM, json=body, headers=headers) for _, client in replicas)
        )
        codes = sorted(r.status_code for r in responses)
        assert codes == [201, 409, 409], [r.text for r in responses]
        stored = next(r.json()["id"] for r in responses if r.status_code == 201)
        for response in responses:
            if response.status_code == 409:
                assert response.json()["existing_id"] == stored
    listed = (await replicas[1][1].get(MEM, params={"limit": 100}, headers=headers)).json()
    assert listed["count"] == 20


async def test_revocation_through_one_replica_reaches_all_within_two_seconds(
    replicas: list[tuple[Runtime, httpx.AsyncClient]],
) -> None:
    org_id, key = await create_org_key(replicas[0][0], "acme")
    headers = {"x-api-key": key}

    async def accepted_everywhere() -> bool:
        codes = [(await c.get(MEM, headers=headers)).status_code for _, c in replicas]
        return codes == [200, 200, 200]

    await eventually(accepted_everywhere, timeout=2.0)
    key_id = (await replicas[1][0].catalog.list_keys(org_id))[0].id
    await replicas[1][0].catalog.revoke_key(key_id, 0)
    revoked_at = time.monotonic()

    async def refused_everywhere() -> bool:
        codes = [(await c.get(MEM, headers=headers)).status_code for _, c in replicas]
        return codes == [401, 401, 401]

    await eventually(refused_everywhere, timeout=2.0)
    assert time.monotonic() - revoked_at < 2.0


async def test_rate_limits_are_divided_among_live_replicas(tmp_path: Path, pg_url: str) -> None:
    """A key's limit is the cluster's: three replicas each allow a third of the burst."""
    replicas = await start_replicas(
        tmp_path, pg_url, **{"limits.rate_per_s": 0.01, "limits.rate_burst": 30}
    )
    try:
        _, key = await create_org_key(replicas[0][0], "acme")
        for runtime, _ in replicas:
            await runtime.reload()

        async def divided() -> bool:
            return all(r.limiter.share == pytest.approx(1 / 3) for r, _ in replicas)

        await eventually(divided, timeout=15.0)
        codes = [
            (await replicas[n % 3][1].get(MEM, headers={"x-api-key": key})).status_code
            for n in range(60)
        ]
        assert codes.count(200) == 30 and codes.count(429) == 30
    finally:
        await stop_replicas(replicas)


@pytest.mark.slow
async def test_ready_follows_the_postgresql_connection(tmp_path: Path) -> None:
    """/ready is 503 while PostgreSQL is down and 200 again once it is back."""
    from memtrace.testing.postgres import start_postgres

    with start_postgres() as pg:
        (replica,) = await start_replicas(
            tmp_path, pg.url, n=1, **{"postgres.acquire_timeout_s": 1.0}
        )
        try:
            client = replica[1]
            assert (await client.get("/ready")).status_code == 200
            await asyncio.to_thread(pg.kill)

            async def status(code: int) -> bool:
                return (await client.get("/ready")).status_code == code

            await eventually(lambda: status(503), timeout=10.0)
            await asyncio.to_thread(pg.restart)
            await eventually(lambda: status(200), timeout=20.0)
        finally:
            await stop_replicas([replica])
