"""The data lifecycle through the real app: delete, forget, cursor paging, export, the audit log
and their bad input (docs/api.md, "Data lifecycle")."""

from __future__ import annotations

import httpx
import orjson
import pytest

from memtrace.domain.models import MemoryList, SearchResult
from memtrace.runtime import Runtime
from tests.helpers import create_org_key
from tests.test_api_memories import ago, remember

MEM = "/api/v1/memories"


@pytest.fixture
async def admin(runtime: Runtime, org_key: tuple[str, str]) -> dict[str, str]:
    """Headers of an admin key of the same org as ``api``."""
    _, key = await create_org_key(runtime, permissions="admin", org_id=org_key[0])
    return {"x-api-key": key}


async def test_delete_erases_from_every_read(api: httpx.AsyncClient, runtime: Runtime) -> None:
    session = (await api.post("/api/v1/sessions", json={"agent_id": "crawler"})).json()["id"]
    keep = await remember(api, content="keep me", session_id=session)
    doomed = await remember(
        api, content="customer SSN 123-45-6789", session_id=session, event_type="error"
    )
    assert (await api.delete(f"{MEM}/{doomed['id']}")).status_code == 204
    assert (await api.get(f"{MEM}/{doomed['id']}")).status_code == 404
    assert (await api.delete(f"{MEM}/{doomed['id']}")).status_code == 404
    listed = (await api.get(MEM)).json()
    assert [m["id"] for m in listed["memories"]] == [keep["id"]]
    found = (await api.post("/api/v1/search", json={"content_contains": "123-45"})).json()
    assert found["results"] == []
    stats = (await api.get("/api/v1/agents/crawler/stats")).json()
    assert (stats["memory_count"], stats["errors_24h"]) == (1, 0)
    context = (await api.post(f"/api/v1/sessions/{session}/context", json={})).json()
    assert "SSN" not in context["context"] and context["memory_count"] == 1
    # gone from the dedup window: the same memory may be stored again
    again = await api.post(
        MEM,
        json={
            "agent_id": "crawler",
            "content": "customer SSN 123-45-6789",
            "session_id": session,
            "event_type": "error",
        },
    )
    assert again.status_code == 201
    audit = await runtime.catalog.list_audit(keep["org_id"])  # type: ignore[arg-type]
    assert [(e.action, e.count, e.filter) for e in audit] == [("delete", 1, {"id": doomed["id"]})]
    assert audit[0].actor.startswith("key_")


async def test_delete_needs_write_and_stays_in_the_org(
    api: httpx.AsyncClient, runtime: Runtime, org_key: tuple[str, str]
) -> None:
    memory = await remember(api)
    _, reader = await create_org_key(runtime, permissions="read", org_id=org_key[0])
    refused = await api.delete(f"{MEM}/{memory['id']}", headers={"x-api-key": reader})
    assert refused.status_code == 403
    _, other = await create_org_key(runtime, "other")
    hidden = await api.delete(f"{MEM}/{memory['id']}", headers={"x-api-key": other})
    assert hidden.status_code == 404
    assert (await api.get(f"{MEM}/{memory['id']}")).status_code == 200
    unknown = await api.delete(f"{MEM}/mem_nope")
    assert unknown.status_code == 404 and "mem_nope" in unknown.json()["error"]


async def test_forget_by_filter(
    api: httpx.AsyncClient, admin: dict[str, str], runtime: Runtime
) -> None:
    for i in range(5):
        await remember(api, agent_id="alice_bot", content=f"alice said {i}", tags=["pii"])
    await remember(api, agent_id="alice_bot", content="no tag")
    other = await remember(api, agent_id="bob_bot", content="bob said", tags=["pii"])
    body = {"agent_id": "alice_bot", "tags": ["pii"]}
    assert (await api.post(f"{MEM}/forget", json=body)).status_code == 403  # read+write key
    dry = await api.post(f"{MEM}/forget", json={**body, "dry_run": True}, headers=admin)
    assert dry.status_code == 200 and dry.json() == {"matched": 5}
    assert len((await api.get(MEM, params={"limit": 100})).json()["memories"]) == 7
    done = await api.post(f"{MEM}/forget", json=body, headers=admin)
    assert done.json() == {"deleted": 5}
    left = [m["content"] for m in (await api.get(MEM)).json()["memories"]]
    assert left == ["bob said", "no tag"]
    # the subject itself: its memories, the agent and its sessions
    await api.post("/api/v1/sessions", json={"agent_id": "alice_bot"})
    subject = {"agent_id": "alice_bot", "delete_agent": True}
    gone = await api.post(f"{MEM}/forget", json=subject, headers=admin)
    assert gone.json() == {"deleted": 1, "agent_deleted": True}
    assert (await api.get("/api/v1/agents/alice_bot")).status_code == 404
    assert (await api.get("/api/v1/sessions", params={"agent_id": "alice_bot"})).json()[
        "sessions"
    ] == []
    assert (await api.get(f"{MEM}/{other['id']}")).status_code == 200
    actions = [(e.action, e.count) for e in await runtime.catalog.list_audit(other["org_id"])]  # type: ignore[arg-type]
    assert actions == [("delete_agent", 1), ("forget", 1), ("forget", 5)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "filter"),
        ({"dry_run": True}, "filter"),
        ({"tags": []}, "filter"),
        ({"delete_agent": True, "tags": ["x"]}, "delete_agent"),
        ({"delete_session": True, "agent_id": "a"}, "delete_session"),
        ({"agent_id": "a", "since": "yesterday"}, "since"),
        ({"agent_id": "a", "dry_run": "yes"}, "dry_run"),
    ],
)
async def test_forget_bad_input(
    api: httpx.AsyncClient, admin: dict[str, str], body: dict[str, object], field: str
) -> None:
    await remember(api)
    response = await api.post(f"{MEM}/forget", json=body, headers=admin)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(f"{field}:")
    assert len((await api.get(MEM)).json()["memories"]) == 1


async def test_forget_never_reaches_another_org(
    api: httpx.AsyncClient, runtime: Runtime, admin: dict[str, str]
) -> None:
    _, other_key = await create_org_key(runtime, "victim")
    victim = {"x-api-key": other_key}
    their = await api.post(MEM, json={"agent_id": "crawler", "content": "x"}, headers=victim)
    response = await api.post(f"{MEM}/forget", json={"agent_id": "crawler"}, headers=admin)
    assert response.json() == {"deleted": 0}
    assert (await api.get(f"{MEM}/{their.json()['id']}", headers=victim)).status_code == 200


async def test_cursor_paging_of_lists_and_search(api: httpx.AsyncClient) -> None:
    batch = [
        {"agent_id": "etl", "content": f"row {i}", "time": ago(minutes=30 - i)} for i in range(25)
    ]
    assert (await api.post(MEM, json={"memories": batch})).status_code == 201
    for route, body_key in (("list", "memories"), ("search", "results")):
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            if route == "list":
                params = {"agent_id": "etl", "limit": 10, "order": "asc", "since": "1h"}
                if cursor:
                    params["cursor"] = cursor
                page = (await api.get(MEM, params=params)).json()
                MemoryList.model_validate(page)
            else:
                body = {
                    "agent_id": "etl",
                    "limit": 10,
                    "order": "asc",
                    "cursor": cursor,
                    "since": "1h",
                }
                page = (await api.post("/api/v1/search", json=body)).json()
                SearchResult.model_validate(page)
            pages += 1
            seen += [m["content"] for m in page[body_key]]
            assert ("next_cursor" in page) == page["has_more"]
            if not page["has_more"]:
                break
            cursor = page["next_cursor"]
            # a memory written meanwhile, before the cursor's position, is not seen
            await remember(api, agent_id="etl", content=f"late {route} {pages}", time=ago(hours=2))
        assert seen == [f"row {i}" for i in range(25)] and pages == 3


async def test_cursor_bad_input(api: httpx.AsyncClient) -> None:
    for i in range(3):
        await remember(api, content=f"m{i}")
    page = (await api.get(MEM, params={"limit": 1})).json()
    cursor = page["next_cursor"]
    cases = [
        ({"cursor": "garbage"}, "cursor: malformed"),
        ({"cursor": "c1.!!!"}, "cursor: malformed"),
        ({"cursor": "x" * 300}, "cursor:"),
        ({"cursor": cursor, "offset": 1}, "offset: cannot be combined"),
        ({"cursor": cursor, "order": "asc"}, "cursor: was issued for a different query"),
        ({"cursor": cursor, "agent_id": "someone"}, "cursor: was issued for a different query"),
    ]
    for params, message in cases:
        response = await api.get(MEM, params={"limit": 1, **params})
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"].startswith(message), response.text
    assert (await api.get(MEM, params={"limit": 1, "cursor": cursor})).status_code == 200
    search = await api.post("/api/v1/search", json={"cursor": cursor})
    assert search.status_code == 400  # a list cursor is not a search cursor


async def test_export_streams_ndjson(api: httpx.AsyncClient, runtime: Runtime) -> None:
    first = await remember(api, content="oldest", time=ago(hours=2), tags=["a"])
    await remember(api, agent_id="other", content="other agent")
    last = await remember(api, content="newest", metadata={"k": [1, 2]})
    response = await api.get("/api/v1/export", params={"agent_id": "crawler"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [orjson.loads(line) for line in response.content.splitlines()]
    assert lines == [first, last]
    empty = await api.get("/api/v1/export", params={"agent_id": "nobody"})
    assert empty.status_code == 200 and empty.content == b""
    bad = await api.get("/api/v1/export", params={"since": "soon"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("since:")
    contains = await api.get("/api/v1/export", params={"content_contains": "agent"})
    assert [orjson.loads(x)["content"] for x in contains.content.splitlines()] == ["other agent"]
