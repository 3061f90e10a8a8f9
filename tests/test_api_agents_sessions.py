"""Agents and sessions routes: happy paths and error paths through the real app."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from memtrace.domain.models import Agent, AgentList, AgentStats, Session, SessionList
from tests.storage.arc_support import eventually


async def test_agent_lifecycle(api: httpx.AsyncClient) -> None:
    created = await api.post(
        "/api/v1/agents",
        json={"name": "support_bot", "description": "Answers tickets", "config": {"model": "x"}},
    )
    assert created.status_code == 201
    agent = Agent.model_validate(created.json())
    assert agent.id == agent.name == "support_bot" and agent.last_active_at is None
    assert "last_active_at" not in created.json()
    again = await api.post("/api/v1/agents", json={"name": "support_bot"})
    assert again.status_code == 409 and "error" in again.json()
    got = await api.get("/api/v1/agents/support_bot")
    assert got.status_code == 200 and got.json()["config"] == {"model": "x"}
    assert (await api.get("/api/v1/agents/ghost")).status_code == 404

    await api.post("/api/v1/memories", json={"agent_id": "support_bot", "content": "hi"})
    active = (await api.get("/api/v1/agents/support_bot")).json()
    assert active["last_active_at"] >= active["created_at"]  # last_active_at follows writes


async def test_agents_are_registered_by_writes_and_sessions(api: httpx.AsyncClient) -> None:
    await api.post("/api/v1/memories", json={"agent_id": "auto_a", "content": "x"})
    await api.post("/api/v1/sessions", json={"agent_id": "auto_b"})
    listed = AgentList.model_validate((await api.get("/api/v1/agents")).json())
    assert [a.id for a in listed.agents] == ["auto_a", "auto_b"] and listed.count == 2
    page = (await api.get("/api/v1/agents", params={"limit": 1, "offset": 1})).json()
    assert [a["id"] for a in page["agents"]] == ["auto_b"]
    assert (await api.get("/api/v1/agents", params={"limit": 0})).status_code == 400


async def test_agent_stats(api: httpx.AsyncClient) -> None:
    now = datetime.now(UTC)
    for i, (mtype, event, hours) in enumerate(
        [
            ("episodic", "step", 1),
            ("episodic", "error", 2),
            ("decision", "decision", 3),
            ("episodic", "error", 30),
            ("entity", "customer", 50),
        ]
    ):
        await api.post(
            "/api/v1/memories",
            json={
                "agent_id": "worker",
                "content": f"m{i}",
                "memory_type": mtype,
                "event_type": event,
                "time": (now - timedelta(hours=hours)).isoformat(),
            },
        )
    s1 = (await api.post("/api/v1/sessions", json={"agent_id": "worker"})).json()["id"]
    await api.post("/api/v1/sessions", json={"agent_id": "worker"})
    await api.put(f"/api/v1/sessions/{s1}", json={"status": "closed"})
    stats = AgentStats.model_validate((await api.get("/api/v1/agents/worker/stats")).json())
    assert stats.memory_count == 5 and stats.memories_24h == 3 and stats.errors_24h == 1
    assert stats.session_count == 2 and stats.active_sessions == 1
    assert stats.memory_types == {"decision": 1, "entity": 1, "episodic": 3}
    assert stats.last_active_at is not None
    ghost = await api.get("/api/v1/agents/ghost/stats")  # zeros, as the Go memtrace answered
    assert ghost.status_code == 200 and ghost.json()["memory_count"] == 0


async def test_agent_memories_route(api: httpx.AsyncClient) -> None:
    await api.post("/api/v1/memories", json={"agent_id": "a", "content": "mine", "tags": ["x"]})
    await api.post("/api/v1/memories", json={"agent_id": "a", "content": "mine too"})
    await api.post("/api/v1/memories", json={"agent_id": "b", "content": "theirs"})
    body = (await api.get("/api/v1/agents/a/memories")).json()
    assert [m["content"] for m in body["memories"]] == ["mine too", "mine"]
    tagged = (await api.get("/api/v1/agents/a/memories", params={"tags": "x"})).json()
    assert [m["content"] for m in tagged["memories"]] == ["mine"]
    # the path wins over a conflicting query parameter
    both = (await api.get("/api/v1/agents/a/memories", params={"agent_id": "b"})).json()
    assert {m["agent_id"] for m in both["memories"]} == {"a"}
    # as with the Go memtrace: an agent without memories (registered or not) has an empty list
    ghost = await api.get("/api/v1/agents/ghost/memories")
    assert ghost.status_code == 200 and ghost.json()["memories"] == []
    assert (await api.get("/api/v1/agents/no%20such%20name/memories")).status_code == 404


async def test_delete_agent_removes_sessions_keeps_memories(api: httpx.AsyncClient) -> None:
    await api.post("/api/v1/memories", json={"agent_id": "gone", "content": "kept"})
    sid = (await api.post("/api/v1/sessions", json={"agent_id": "gone"})).json()["id"]
    deleted = await api.delete("/api/v1/agents/gone")
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await api.get("/api/v1/agents/gone")).status_code == 404
    assert (await api.get(f"/api/v1/sessions/{sid}")).status_code == 404
    kept = (await api.get("/api/v1/memories", params={"agent_id": "gone"})).json()
    assert kept["count"] == 1
    assert (await api.delete("/api/v1/agents/gone")).status_code == 404
    # writing again registers it again
    await api.post("/api/v1/memories", json={"agent_id": "gone", "content": "back"})
    assert (await api.get("/api/v1/agents/gone")).status_code == 200


async def test_session_lifecycle(api: httpx.AsyncClient) -> None:
    created = await api.post("/api/v1/sessions", json={"agent_id": "a", "metadata": {"goal": "x"}})
    assert created.status_code == 201
    session = Session.model_validate(created.json())
    assert session.id.startswith("sess_") and len(session.id) == 29
    assert session.status == "active" and session.closed_at is None
    sid = session.id
    assert (await api.get(f"/api/v1/sessions/{sid}")).json() == created.json()

    closed = (await api.put(f"/api/v1/sessions/{sid}", json={"status": "closed"})).json()
    assert closed["status"] == "closed" and closed["closed_at"] >= closed["created_at"]
    assert closed["metadata"] == {"goal": "x"}
    replaced = (await api.put(f"/api/v1/sessions/{sid}", json={"metadata": {"n": 1}})).json()
    assert replaced["metadata"] == {"n": 1} and replaced["status"] == "closed"
    reopened = (await api.put(f"/api/v1/sessions/{sid}", json={"status": "active"})).json()
    assert reopened["status"] == "active" and "closed_at" not in reopened
    bad = await api.put(f"/api/v1/sessions/{sid}", json={"status": "paused"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("status:")
    missing = await api.put("/api/v1/sessions/sess_nope", json={"status": "closed"})
    assert missing.status_code == 404
    assert (await api.get("/api/v1/sessions/sess_nope")).status_code == 404


async def test_list_sessions_filters(api: httpx.AsyncClient) -> None:
    ids = []
    for agent in ("a", "a", "b"):
        ids.append((await api.post("/api/v1/sessions", json={"agent_id": agent})).json()["id"])
    await api.put(f"/api/v1/sessions/{ids[0]}", json={"status": "closed"})
    everything = SessionList.model_validate((await api.get("/api/v1/sessions")).json())
    assert [s.id for s in everything.sessions] == ids[::-1]  # newest first
    only_a = (await api.get("/api/v1/sessions", params={"agent_id": "a"})).json()
    assert {s["id"] for s in only_a["sessions"]} == {ids[0], ids[1]}
    active_a = await api.get("/api/v1/sessions", params={"agent_id": "a", "status": "active"})
    assert [s["id"] for s in active_a.json()["sessions"]] == [ids[1]]
    assert (await api.get("/api/v1/sessions", params={"status": "odd"})).status_code == 400
    page = (await api.get("/api/v1/sessions", params={"limit": 2})).json()
    assert page["count"] == 2


async def test_session_memories_route(api: httpx.AsyncClient) -> None:
    sid = (await api.post("/api/v1/sessions", json={"agent_id": "a"})).json()["id"]
    await api.post("/api/v1/memories", json={"agent_id": "a", "session_id": sid, "content": "in"})
    await api.post("/api/v1/memories", json={"agent_id": "b", "session_id": sid, "content": "in2"})
    await api.post("/api/v1/memories", json={"agent_id": "a", "content": "out"})
    body = (await api.get(f"/api/v1/sessions/{sid}/memories")).json()
    assert sorted(m["content"] for m in body["memories"]) == ["in", "in2"]
    only_b = (await api.get(f"/api/v1/sessions/{sid}/memories", params={"agent_id": "b"})).json()
    assert [m["content"] for m in only_b["memories"]] == ["in2"]
    # a session never created answers from the memories carrying its id (Go's rule)
    nope = await api.get("/api/v1/sessions/sess_nope/memories")
    assert nope.status_code == 200 and nope.json()["memories"] == []
    assert (await api.get("/api/v1/sessions/not%20an%20id/memories")).status_code == 404


async def test_memory_for_unknown_session_is_accepted(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/v1/memories", json={"agent_id": "a", "session_id": "external_42", "content": "x"}
    )
    assert response.status_code == 201 and response.json()["session_id"] == "external_42"


async def test_health_ready_metrics(api: httpx.AsyncClient) -> None:
    await api.post("/api/v1/memories", json={"agent_id": "a", "content": "x"})
    await api.post("/api/v1/memories", json={"agent_id": "a", "content": "x"})

    async def store_checked() -> bool:  # the report is kept by a background task
        return bool((await api.get("/health", headers={"x-api-key": ""})).json()["stores"])

    await eventually(store_checked)
    health = (await api.get("/health", headers={"x-api-key": ""})).json()
    assert health["status"] == "ok" and health["service"] == "memtrace"
    assert isinstance(health["uptime_s"], float) and health["version"]
    assert health["metadata"] == {"healthy": True} and health["disk"] == {"writable": True}
    store = next(iter(health["stores"].values()))
    assert store.pop("checked_ago_s") >= 0
    assert store == {"backend": "embedded", "healthy": True, "outbox_pending": 0}
    ready = await api.get("/ready")
    assert ready.status_code == 200
    metrics = (await api.get("/metrics")).text
    assert 'memtrace_memories_written_total{backend="embedded"} 1.0' in metrics
    assert "memtrace_dedup_hits_total 1.0" in metrics
    assert 'route="/api/v1/memories",status="201"' in metrics
    assert "memtrace_http_request_duration_seconds_bucket" in metrics
