"""Quick end-to-end checks through the in-process app."""

from __future__ import annotations

import httpx


async def test_remember_then_recall(api: httpx.AsyncClient) -> None:
    created = await api.post("/api/v1/memories", json={"agent_id": "a1", "content": "hello"})
    assert created.status_code == 201, created.text
    listed = await api.get("/api/v1/memories", params={"agent_id": "a1", "since": "1h"})
    assert listed.status_code == 200
    body = listed.json()
    assert body["count"] == 1 and body["has_more"] is False
    assert body["memories"][0]["id"] == created.json()["id"]
