"""Memory routes through the real app: writes, batches, listing, get by id, search."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from memtrace.domain.models import Memory, MemoryBatchResult, MemoryList, SearchResult

MEM = "/api/v1/memories"


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


async def remember(api: httpx.AsyncClient, **fields: object) -> dict[str, object]:
    body = {"agent_id": "crawler", "content": "did something", **fields}
    response = await api.post(MEM, json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_single_write_returns_full_memory(api: httpx.AsyncClient) -> None:
    body = {
        "agent_id": "crawler",
        "session_id": "sess_1",
        "content": "Crawled https://example.com — found 3 product pages",
        "memory_type": "episodic",
        "event_type": "page_crawled",
        "tags": ["crawling", "products", "crawling"],
        "importance": 0.7,
        "metadata": {"pages": 3, "nested": {"ok": None}},
        "parent_id": "mem_whatever",
        "unknown_field": "ignored",
    }
    response = await api.post(MEM, json=body)
    assert response.status_code == 201
    memory = response.json()
    Memory.model_validate(memory)
    assert memory["id"].startswith("mem_") and len(memory["id"]) == 30
    assert memory["time"].endswith("Z") and len(memory["time"]) == 27  # µs precision
    assert memory["tags"] == ["crawling", "products"]  # duplicates removed, order kept
    assert memory["metadata"] == {"pages": 3, "nested": {"ok": None}}
    assert memory["org_id"].startswith("org_") and "unknown_field" not in memory
    assert len(memory["dedup_key"]) == 32


async def test_absent_optional_fields_are_omitted(api: httpx.AsyncClient) -> None:
    memory = await remember(api, session_id="", tags=[], metadata={})
    for field in ("session_id", "tags", "metadata", "importance", "parent_id"):
        assert field not in memory
    assert memory["memory_type"] == "episodic" and memory["event_type"] == "general"


async def test_get_by_id_and_404(api: httpx.AsyncClient) -> None:
    memory = await remember(api)
    got = await api.get(f"{MEM}/{memory['id']}")
    assert got.status_code == 200 and got.json() == memory
    missing = await api.get(f"{MEM}/mem_01ZZZZZZZZZZZZZZZZZZZZZZZZ")
    assert missing.status_code == 404 and "error" in missing.json()


async def test_batch_write(api: httpx.AsyncClient) -> None:
    items = [{"agent_id": f"a{i % 3}", "content": f"item {i}"} for i in range(10)]
    response = await api.post(MEM, json={"memories": items})
    assert response.status_code == 201
    body = MemoryBatchResult.model_validate(response.json())
    assert body.count == 10 and len(body.memories) == 10 and body.duplicates == []
    assert [m.content for m in body.memories] == [f"item {i}" for i in range(10)]
    agents = (await api.get("/api/v1/agents")).json()
    assert {a["id"] for a in agents["agents"]} >= {"a0", "a1", "a2"}


async def test_batch_with_one_bad_item_writes_nothing(api: httpx.AsyncClient) -> None:
    items = [{"agent_id": "a", "content": f"ok {i}"} for i in range(5)]
    items.insert(3, {"agent_id": "a", "content": ""})
    response = await api.post(MEM, json={"memories": items})
    assert response.status_code == 400
    assert response.json()["error"].startswith("memories[3].content:")
    listed = await api.get(MEM)
    assert listed.json()["count"] == 0


async def test_batch_size_limits(api: httpx.AsyncClient) -> None:
    empty = await api.post(MEM, json={"memories": []})
    assert empty.status_code == 400 and empty.json()["error"].startswith("memories:")
    too_many = [{"agent_id": "a", "content": f"{i}"} for i in range(1001)]
    response = await api.post(MEM, json={"memories": too_many})
    assert response.status_code == 400 and "1000" in response.json()["error"]


async def test_list_filters_order_and_pagination(api: httpx.AsyncClient) -> None:
    for i in range(7):
        await remember(
            api,
            content=f"m{i}",
            agent_id="a" if i % 2 else "b",
            event_type="error" if i == 3 else "step",
            memory_type="entity" if i == 5 else "episodic",
            session_id="sess_x" if i < 4 else None,
            tags=["t1", "t2"] if i in (1, 2) else ["t1"],
            time=ago(minutes=10 - i),
        )

    async def contents(**params: object) -> list[str]:
        response = await api.get(MEM, params=params)
        assert response.status_code == 200, response.text
        MemoryList.model_validate(response.json())
        return [m["content"] for m in response.json()["memories"]]

    assert await contents() == ["m6", "m5", "m4", "m3", "m2", "m1", "m0"]
    assert await contents(order="asc") == ["m0", "m1", "m2", "m3", "m4", "m5", "m6"]
    assert await contents(agent_id="a") == ["m5", "m3", "m1"]
    assert await contents(session_id="sess_x") == ["m3", "m2", "m1", "m0"]
    assert await contents(event_type="error") == ["m3"]
    assert await contents(memory_type="entity") == ["m5"]
    assert await contents(tags="t2,t1") == ["m2", "m1"]
    assert await contents(tags="t1", agent_id="b") == ["m6", "m4", "m2", "m0"]
    page1 = (await api.get(MEM, params={"limit": 3})).json()
    page3 = (await api.get(MEM, params={"limit": 3, "offset": 6})).json()
    assert page1["count"] == 3 and page1["has_more"] is True
    assert page3["count"] == 1 and page3["has_more"] is False
    exact = (await api.get(MEM, params={"limit": 7})).json()
    assert exact["has_more"] is False  # has_more is exact (look-ahead), not count == limit


async def test_tags_match_exactly_not_by_substring(api: httpx.AsyncClient) -> None:
    await remember(api, content="a", tags=["production"])
    await remember(api, content="b", tags=["prod"])
    listed = (await api.get(MEM, params={"tags": "prod"})).json()
    assert [m["content"] for m in listed["memories"]] == ["b"]


async def test_search(api: httpx.AsyncClient) -> None:
    await remember(
        api,
        content="Refund issued to ACME Corp",
        event_type="refund",
        importance=0.9,
        tags=["billing"],
    )
    await remember(api, content="acme asked about pricing", agent_id="sales", importance=0.2)
    await remember(api, content="unrelated", memory_type="decision")

    async def search(**body: object) -> list[str]:
        response = await api.post("/api/v1/search", json=body)
        assert response.status_code == 200, response.text
        result = SearchResult.model_validate(response.json())
        assert isinstance(response.json()["query_time_ms"], int)
        return [m.content for m in result.results]

    assert await search(content_contains="ACME") == [
        "acme asked about pricing",
        "Refund issued to ACME Corp",
    ]
    assert await search(content_contains="acme", min_importance=0.5) == [
        "Refund issued to ACME Corp"
    ]
    assert await search(content_contains="me") == [
        "acme asked about pricing",
        "Refund issued to ACME Corp",
    ]
    assert await search(agent_id="sales") == ["acme asked about pricing"]
    assert await search(memory_types=["decision"]) == ["unrelated"]
    assert await search(event_types=["refund", "nothing"], tags=["billing"]) == [
        "Refund issued to ACME Corp"
    ]
    assert await search(content_contains="acme", order="asc", limit=1) == [
        "Refund issued to ACME Corp"
    ]
    assert await search(content_contains="%") == []
    empty = await api.post("/api/v1/search")
    assert empty.status_code == 200 and empty.json()["count"] == 3


@pytest.mark.parametrize(
    "needle",
    ["crème", "ÉCOLE", "naïve café", "日本語", "x", "é", "K"],
)
async def test_search_unicode_and_short_needles(api: httpx.AsyncClient, needle: str) -> None:
    texts = ["La crème brûlée", "une École normale", "a naïve café", "日本語のテキスト", "x y", "é"]
    for text in texts:
        await remember(api, content=text)
    response = await api.post("/api/v1/search", json={"content_contains": needle})
    found = sorted(m["content"] for m in response.json()["results"])
    assert found == sorted(t for t in texts if needle.lower() in t.lower())
