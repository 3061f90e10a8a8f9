"""A Go memtrace deployment taken over: built from Go's schema (tests/go_deployment.py), with its
Arc databases full of Go-written rows on the emulator, imported with ``memtrace migrate-from-go``.
Every old key works, every Go memory is listed, searchable, in context and gettable by id; the
requests the Go SDK and the TypeScript SDK send get no 4xx that Go did not give
(docs/migrating-from-go.md, docs/api.md "Clients written for the Go server")."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from click.testing import CliRunner

from http_api.app import create_app
from memtrace.auth.crypto import generate_master_key
from memtrace.cli import cli
from memtrace.config import load_settings
from memtrace.runtime import Runtime
from memtrace.testing.arc_emulator import TEST_TOKEN
from memtrace.testing.arc_server import EmulatorServer
from tests.go_deployment import (
    GoDeployment,
    build_go_db,
    go_arc_columns,
    go_memories,
    write_go_rows,
)
from tests.storage.arc_support import eventually


@dataclass
class World:
    go: GoDeployment
    memories: dict[str, list[dict[str, Any]]]  # org id -> what its Go clients wrote
    runtime: Runtime
    http: httpx.AsyncClient

    def key(self, name: str) -> dict[str, str]:
        return {"x-api-key": self.go.key(name).plaintext}


@pytest.fixture
async def world(
    tmp_path: Path, arc_server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[World]:
    monkeypatch.setenv("MEMTRACE_MASTER_KEY", generate_master_key())
    go = build_go_db(
        tmp_path / "go.db",
        os_environ_master(),
        arc_url=arc_server.url,
        arc_api_key=TEST_TOKEN,
    )
    now_ns = time.time_ns()
    memories = {}
    with httpx.Client(base_url=arc_server.url) as http:
        for instance in go.arc:
            wrote = go_memories(go, instance["org_id"])
            columns = go_arc_columns(instance["org_id"], wrote, now_ns)
            write_go_rows(http, instance["database"], "events", columns, TEST_TOKEN)
            memories[instance["org_id"]] = wrote
    data_dir = tmp_path / "data"
    result = CliRunner().invoke(
        cli, ["migrate-from-go", "--go-db", str(go.path), "--data-dir", str(data_dir)]
    )
    assert result.exit_code == 0, result.stderr
    runtime = Runtime(load_settings(None, {"storage.data_dir": data_dir}))
    await runtime.start()
    transport = httpx.ASGITransport(app=create_app(runtime, manage_runtime=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        yield World(go, memories, runtime, client)
    await runtime.close()


def os_environ_master() -> str:
    import os

    return os.environ["MEMTRACE_MASTER_KEY"]


async def test_every_old_key_and_every_go_memory(world: World) -> None:
    go, http = world.go, world.http
    for key in go.keys:
        response = await http.get("/api/v1/memories", headers=world.key(key.name))
        if not key.valid:
            assert response.status_code == 401, key.name
            continue
        perms = {p.strip() for p in key.permissions.split(",")}
        if "read" not in perms and "admin" not in perms:
            assert response.status_code == 403, key.name  # write-only keys: docs/migrating
            continue
        assert response.status_code == 200, (key.name, response.text)
        listed = response.json()["memories"]
        assert all(m["org_id"] == key.org_id for m in listed)
        wrote = world.memories.get(key.org_id, [])
        assert len(listed) == len(wrote), key.name  # every Go memory, none of another org
        assert {m["content"] for m in listed} == {m["content"] for m in wrote}

    for org_id, wrote in world.memories.items():
        admin = next(
            k for k in go.keys if k.org_id == org_id and k.valid and "read" in k.permissions
        )
        headers = world.key(admin.name)
        listed = (await http.get("/api/v1/memories?limit=1000", headers=headers)).json()
        for memory in listed["memories"]:  # gettable by its (derived) id
            got = await http.get(f"/api/v1/memories/{memory['id']}", headers=headers)
            assert got.status_code == 200 and got.json() == memory
        ids = [m["id"] for m in listed["memories"]]
        assert len(set(ids)) == len(ids)
        # paging covers the same memories, in the same order
        paged = []
        for offset in range(0, len(ids), 5):
            page = await http.get(f"/api/v1/memories?limit=5&offset={offset}", headers=headers)
            paged += [m["id"] for m in page.json()["memories"]]
        assert paged == ids
        for memory in wrote:  # searchable
            needle = memory["content"][:30]
            found = await http.post(
                "/api/v1/search", json={"content_contains": needle}, headers=headers
            )
            assert memory["content"] in {m["content"] for m in found.json()["results"]}
        crawl = next(m for m in listed["memories"] if m["content"].startswith("Crawled"))
        assert crawl["metadata"] == {"pages_found": 3, "url": "https://example.com"}
        assert crawl["tags"] == ["crawling", "products"] and crawl["importance"] == 0.7
        hello = next(m for m in listed["memories"] if m["content"] == "hello")
        assert "session_id" not in hello and "metadata" not in hello and "importance" not in hello
        # in context: the never-created session sess_abc answers from its memories
        context = await http.post("/api/v1/sessions/sess_abc/context", headers=headers)
        assert context.status_code == 200 and context.json()["memory_count"] == 2
        assert "never created" in context.json()["context"]
        session = next(s for s in go.sessions if s["org_id"] == org_id)
        context = await http.post(
            f"/api/v1/sessions/{session['id']}/context", json={"since": "1h"}, headers=headers
        )
        assert context.json()["memory_count"] == 5


async def test_second_migration_run_is_a_no_op(world: World, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["migrate-from-go", "--go-db", str(world.go.path), "--data-dir", str(tmp_path / "data")],
    )
    assert result.exit_code == 0 and "nothing to import" in result.stdout


async def test_dedup_against_go_rows(world: World) -> None:
    """A Go-era client resending what it sent before (same agent, event, session, content)
    is told it is a duplicate of the Go row, as the Go server would have."""
    acme = world.go.orgs["acme"]

    async def seeded() -> bool:
        async with world.runtime.stores.use(acme) as store:  # the open ArcStore
            return await store.outbox.get_state("seeded") is not None  # type: ignore[attr-defined]

    await eventually(seeded)
    headers = world.key("acme-prod")
    listed = (await world.http.get("/api/v1/memories", headers=headers)).json()["memories"]
    hello = next(m for m in listed if m["content"] == "hello")
    again = await world.http.post(
        "/api/v1/memories", json={"agent_id": hello["agent_id"], "content": "hello"},
        headers=headers,
    )  # fmt: skip
    assert again.status_code == 409 and again.json()["existing_id"] == hello["id"]
    keyed = next(m for m in listed if m["dedup_key"] == "crawl_example_2026-02-07")
    again = await world.http.post(
        "/api/v1/memories",
        json={"agent_id": "x1", "content": "other", "dedup_key": "crawl_example_2026-02-07"},
        headers=headers,
    )
    assert again.status_code == 409 and again.json()["existing_id"] == keyed["id"]


def go_sdk_requests(world: World) -> list[tuple[str, str, dict[str, Any] | None, int]]:
    """The Go SDK's requests (pkg/sdk/client.go, 0.2.0): no Content-Type on GET, ids in paths
    unescaped, ``null`` as the context body of nil options, empty memory/event types; with the
    status Go answered."""
    go = world.go
    acme = go.orgs["acme"]
    crawler = go.agent(acme, "web_crawler")
    session = next(s for s in go.sessions if s["org_id"] == acme)
    return [
        ("POST", "/api/v1/memories", {"agent_id": "web_crawler", "memory_type": "episodic",
                                       "event_type": "general", "content": "go sdk remember"}, 201),
        ("GET", "/api/v1/memories?agent_id=web_crawler&limit=100&order=desc&since=24h", None, 200),
        ("GET", "/api/v1/memories?agent_id=web_crawler&limit=100&order=desc", None, 200),
        ("POST", "/api/v1/memories", {"agent_id": "web_crawler", "memory_type": "decision",
                                       "event_type": "decision", "content": "use the cache",
                                       "metadata": {"reasoning": "faster"}}, 201),
        ("POST", "/api/v1/memories", {"agent_id": "web_crawler", "memory_type": "",
                                       "event_type": "", "content": "unset types"}, 201),
        ("POST", "/api/v1/memories", {"memories": [
            {"agent_id": "web_crawler", "memory_type": "episodic", "event_type": "general",
             "content": "batch one"},
            {"agent_id": "web_crawler", "memory_type": "", "event_type": "", "content": "batch two",
             "session_id": session["id"], "tags": ["a", "b"], "importance": 0.5}]}, 201),
        ("GET", "/api/v1/memories?", None, 200),
        ("GET", "/api/v1/memories?agent_id=web_crawler&event_type=page_crawled&limit=5&offset=1"
                "&order=asc&session_id=sess_abc&since=7d&tags=crawling&until=now", None, 200),
        ("POST", "/api/v1/search", {"agent_id": "web_crawler", "content_contains": "pagination",
                                     "memory_types": ["decision"], "limit": 10, "order": "desc"},
         200),
        ("POST", "/api/v1/search", {"since": "48h", "min_importance": 0.5}, 200),
        ("POST", "/api/v1/agents", {"name": "Research Bot", "description": "free-text name",
                                     "config": {"k": 1}}, 201),
        ("POST", "/api/v1/agents", {"name": "Research Bot"}, 409),
        ("POST", "/api/v1/agents", {"name": "web_crawler"}, 409),
        ("GET", f"/api/v1/agents/{crawler['id']}", None, 200),
        ("GET", "/api/v1/agents/web_crawler", None, 200),
        ("GET", f"/api/v1/agents/{crawler['id']}/stats", None, 200),
        ("GET", "/api/v1/agents/ghost_agent/stats", None, 200),
        ("GET", "/api/v1/agents/nobody_at_all", None, 404),
        ("POST", "/api/v1/sessions", {"agent_id": crawler["id"], "metadata": {"task": "t"}}, 201),
        ("GET", f"/api/v1/sessions/{session['id']}", None, 200),
        ("POST", f"/api/v1/sessions/{session['id']}/context", None, 200),  # body: null
        ("POST", "/api/v1/sessions/sess_abc/context", {}, 200),
        ("POST", f"/api/v1/sessions/{session['id']}/context",
         {"since": "24h", "include_types": ["episodic", "decision"], "max_tokens": 500}, 200),
        ("PUT", f"/api/v1/sessions/{session['id']}", {"status": "closed"}, 200),
        ("GET", "/api/v1/sessions/sess_missing000", None, 404),
    ]  # fmt: skip


async def test_go_sdk_requests(world: World) -> None:
    headers = world.key("acme-prod")
    for method, path, body, status in go_sdk_requests(world):
        extra = {"Content-Type": "application/json"} if method in ("POST", "PUT") else {}
        content = json.dumps(body).encode() if method in ("POST", "PUT") else None
        response = await world.http.request(
            method, path, content=content, headers={**headers, **extra}
        )
        assert response.status_code == status, (method, path, response.text)
        assert response.json() is not None  # every answer is JSON (the SDK decodes it)


async def test_typescript_sdk_requests(world: World) -> None:
    """The TypeScript SDK (sdks/typescript/src/client.ts): ids through encodeURIComponent,
    Content-Type only with a body, ``opts ?? {}`` as the context body."""
    go = world.go
    acme = go.orgs["acme"]
    support = go.agent(acme, "Support Agent")
    headers = world.key("acme-prod")
    requests: list[tuple[str, str, dict[str, Any] | None, int]] = [
        ("POST", "/api/v1/memories", {"agent_id": "agent_1", "memory_type": "episodic",
                                       "event_type": "general", "content": "ts remember"}, 201),
        ("GET", "/api/v1/memories?agent_id=agent_1&since=24h&limit=100&order=desc", None, 200),
        ("GET", "/api/v1/memories", None, 200),
        ("GET", "/api/v1/memories?agent_id=agent_1&order=asc&limit=10&offset=10", None, 200),
        ("POST", "/api/v1/search", {"content_contains": "ts remember"}, 200),
        ("POST", "/api/v1/agents", {"name": "ts agent"}, 201),
        ("GET", f"/api/v1/agents/{quote('Support Agent', safe='')}", None, 200),
        ("GET", f"/api/v1/agents/{support['id']}/stats", None, 200),
        ("POST", "/api/v1/sessions", {"agent_id": support["id"]}, 201),
        ("GET", f"/api/v1/sessions?agent_id={support['id']}", None, 200),
        ("GET", "/api/v1/sessions", None, 200),
        ("POST", "/api/v1/sessions/sess_abc/context", {}, 200),
    ]  # fmt: skip
    for method, path, body, status in requests:
        extra = {"Content-Type": "application/json"} if body is not None else {}
        response = await world.http.request(
            method, path, content=json.dumps(body) if body is not None else None,
            headers={**headers, **extra},
        )  # fmt: skip
        assert response.status_code == status, (method, path, response.text)
    agent = (await world.http.get(f"/api/v1/agents/{support['id']}", headers=headers)).json()
    assert agent["name"] == "Support Agent" and agent["id"] == support["id"]
    ts = (await world.http.get("/api/v1/agents/ts%20agent", headers=headers)).json()
    assert ts["name"] == "ts agent" and ts["id"].startswith("agent_") and len(ts["id"]) == 30


async def test_leniencies_go_clients_relied_on(world: World) -> None:
    go, http = world.go, world.http
    key = go.key("acme-prod").plaintext
    bare = await http.get("/api/v1/memories", headers={"Authorization": key})
    assert bare.status_code == 200  # no "Bearer": the whole header is the key, as in Go
    headers = {"x-api-key": key}
    asc = await http.get("/api/v1/memories?order=ASC&since=&limit=&offset=", headers=headers)
    assert asc.status_code == 200
    times = [m["time"] for m in asc.json()["memories"]]
    assert times == sorted(times) and len(times) == len(world.memories[go.orgs["acme"]])
    crawler = go.agent(go.orgs["acme"], "web_crawler")
    # /agents/{id}/memories: Go's 24h default; the 30 h old memory needs an explicit since
    recent = (await http.get(f"/api/v1/agents/{crawler['id']}/memories", headers=headers)).json()
    assert "older than the 24h window" not in {m["content"] for m in recent["memories"]}
    everything = await http.get(
        f"/api/v1/agents/{crawler['id']}/memories?since=7d", headers=headers
    )
    assert "older than the 24h window" in {m["content"] for m in everything.json()["memories"]}
    ghost = (await http.get("/api/v1/agents/nobody_here/stats", headers=headers)).json()
    assert ghost["memory_count"] == 0 and ghost["session_count"] == 0
    sessions = (await http.get("/api/v1/sessions", headers=headers)).json()
    assert sessions["count"] == 3 and sessions["has_more"] is False
    page = (await http.get("/api/v1/sessions?limit=1", headers=headers)).json()
    assert page["count"] == 1 and page["has_more"] is True
    agents = (await http.get("/api/v1/agents", headers=headers)).json()
    assert agents["count"] == 3 and agents["has_more"] is False
    for route in ("/health", "/ready"):
        body = (await http.get(route)).json()
        assert "uptime" in body and "uptime_s" in body and isinstance(body["arc"], dict)
    assert (await http.get("/ready")).json()["status"] == "ready"


async def test_strict_400s_say_what_go_accepted(world: World) -> None:
    headers = world.key("acme-prod")
    cases = [
        ("POST", "/api/v1/memories", {"agent_id": "a", "content": "x", "importance": 7}),
        ("POST", "/api/v1/search", {"memory_types": ["semantic"]}),
        ("GET", "/api/v1/memories?limit=5000", None),
        ("GET", "/api/v1/memories?order=newest", None),
        ("POST", "/api/v1/sessions/sess_abc/context", {"max_tokens": 0}),
    ]
    for method, path, body in cases:
        response = await world.http.request(method, path, json=body, headers=headers)
        assert response.status_code == 400, path
        assert "the Go memtrace" in response.json()["error"], response.text
