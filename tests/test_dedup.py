"""Exact dedup (docs/api.md, "Dedup"): 409 with existing_id, in-batch duplicates, the window."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx

from memtrace.domain.dedup import derive_dedup_key

MEM = "/api/v1/memories"


def test_derived_key_follows_spec() -> None:
    import hashlib

    content = "x" * 300
    expected = hashlib.sha256(f"a|e|s|{'x' * 200}".encode()).hexdigest()[:32]
    assert derive_dedup_key("a", "e", "s", content) == expected
    # only the first 200 bytes of content count; the session is part of the key
    assert derive_dedup_key("a", "e", "s", content) == derive_dedup_key("a", "e", "s", "x" * 201)
    assert derive_dedup_key("a", "e", None, "c") != derive_dedup_key("a", "e", "s", "c")


async def test_same_content_twice_is_409(api: httpx.AsyncClient) -> None:
    body = {"agent_id": "a", "content": "same thing", "event_type": "step"}
    first = await api.post(MEM, json=body)
    second = await api.post(MEM, json=body)
    assert second.status_code == 409
    assert second.json() == {"error": "duplicate memory", "existing_id": first.json()["id"]}
    other_event = await api.post(MEM, json={**body, "event_type": "other"})
    assert other_event.status_code == 201
    explicit = await api.post(MEM, json={"agent_id": "a", "content": "new", "dedup_key": "k1"})
    clash = await api.post(MEM, json={"agent_id": "b", "content": "other", "dedup_key": "k1"})
    assert clash.status_code == 409 and clash.json()["existing_id"] == explicit.json()["id"]


async def test_duplicates_inside_one_batch(api: httpx.AsyncClient) -> None:
    stored = await api.post(MEM, json={"agent_id": "a", "content": "already here"})
    items = [
        {"agent_id": "a", "content": "one"},
        {"agent_id": "a", "content": "one"},
        {"agent_id": "a", "content": "already here"},
        {"agent_id": "a", "content": "two"},
        {"agent_id": "a", "content": "two"},
    ]
    response = await api.post(MEM, json={"memories": items})
    assert response.status_code == 201
    body = response.json()
    assert body["count"] == 2
    ids = {m["content"]: m["id"] for m in body["memories"]}
    assert body["duplicates"] == [
        {"index": 1, "existing_id": ids["one"]},
        {"index": 2, "existing_id": stored.json()["id"]},
        {"index": 4, "existing_id": ids["two"]},
    ]


async def test_outside_the_window_is_accepted_again(api: httpx.AsyncClient) -> None:
    old = (datetime.now(UTC) - timedelta(hours=25)).isoformat()
    recent = (datetime.now(UTC) - timedelta(hours=23)).isoformat()
    body = {"agent_id": "a", "content": "daily report"}
    assert (await api.post(MEM, json={**body, "time": old})).status_code == 201
    assert (await api.post(MEM, json=body)).status_code == 201  # 25 h later: new memory
    assert (await api.post(MEM, json={**body, "time": recent})).status_code == 409


async def test_concurrent_duplicates_store_exactly_one(api: httpx.AsyncClient) -> None:
    body = {"agent_id": "a", "content": "raced"}
    responses = await asyncio.gather(*(api.post(MEM, json=body) for _ in range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 19
    winner = next(r.json()["id"] for r in responses if r.status_code == 201)
    assert {r.json()["existing_id"] for r in responses if r.status_code == 409} == {winner}
