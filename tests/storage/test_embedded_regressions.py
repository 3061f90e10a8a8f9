"""Bugs found by the Arc/embedded property test, pinned on the embedded store."""

from __future__ import annotations

from pathlib import Path

import httpx

from memtrace.storage.base import MemoryQuery
from memtrace.storage.embedded import EmbeddedStore
from tests.storage.arc_support import memory


async def test_nul_in_content_contains_is_a_plain_substring(tmp_path: Path) -> None:
    # A NUL inside a 3+ character needle used to reach the FTS5 query text, which SQLite cut
    # at the NUL ("unterminated string") and turned into a 503.
    store = EmbeddedStore(tmp_path / "m.db", "org_x", synchronous="NORMAL")
    await store.open()
    try:
        await store.write(
            [memory("left\x00right", time_us=1), memory("leftright", time_us=2)], None
        )
        q = MemoryQuery(org_id="org_x", content_contains="T\x00R")
        assert [r.content for r in await store.query(q)] == ["left\x00right"]
        assert await store.count(q) == 1
    finally:
        await store.close()


async def test_nul_search_through_the_api(api: httpx.AsyncClient) -> None:
    created = await api.post("/api/v1/memories", json={"agent_id": "a", "content": "x\x00yz"})
    assert created.status_code == 201, created.text
    found = await api.post("/api/v1/search", json={"content_contains": "X\x00Y"})
    assert found.status_code == 200, found.text
    assert [m["id"] for m in found.json()["results"]] == [created.json()["id"]]
