"""Retention of an Arc-bound org: Arc's own retention policy drops the files entirely past the
cutoff (where it fits), the row-by-row pass takes the rest, and the policy is left inactive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from memtrace.domain.lifecycle import RetentionPolicy
from memtrace.domain.timestamps import now_us
from memtrace.metadata import lifecycle as lc
from memtrace.runtime import Runtime
from memtrace.storage.arc.store import ArcStore
from memtrace.testing.arc_server import EmulatorServer
from tests.helpers import open_store_of
from tests.storage.arc_support import bound_org, drained

DAY_S = 86_400


def at(seconds_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()


async def test_arc_retention_uses_arcs_policy_then_rows(
    served_runtime: tuple[Runtime, httpx.AsyncClient], arc_files_server: EmulatorServer
) -> None:
    runtime, client = served_runtime
    org_id, rw, _ = await bound_org(runtime, arc_files_server)
    old = [
        {"agent_id": "bot", "content": f"old {i}", "time": at(40 * DAY_S + i * 60)}
        for i in range(50)
    ]
    # around the cutoff, in files that also hold younger rows: rows only for the second pass
    edge = [
        {"agent_id": "bot", "content": f"edge {i}", "time": at(30 * DAY_S + 600 - i * 1200)}
        for i in range(2)
    ]
    kept = [{"agent_id": "bot", "content": f"new {i}", "time": at(i * 60)} for i in range(5)]
    decisions = [
        {
            "agent_id": "bot",
            "content": "old call",
            "memory_type": "decision",
            "time": at(40 * DAY_S),
        }
    ]
    response = await client.post(
        "/api/v1/memories", json={"memories": old + edge + kept + decisions}, headers=rw
    )
    assert response.status_code == 201, response.text
    store = await open_store_of(runtime, org_id)
    assert isinstance(store, ArcStore)
    await drained(store)

    def policy(conn: Any) -> None:
        lc.put_retention(conn, org_id, RetentionPolicy(30), now_us())

    await runtime.catalog.db.write(policy)
    deleted = await runtime.sweeper.run_once()
    assert deleted[org_id] == 52  # 50 old, 1 edge row past the cutoff, the old decision
    admin = arc_files_server.emulator.admin
    (arc_policy,) = admin.policies.values()
    assert arc_policy["name"] == f"memtrace_{org_id}" and arc_policy["retention_days"] == 30
    assert arc_policy["is_active"] is False  # only memtrace runs it, with current days
    assert admin.executions[0]["deleted_count"] >= 51  # whole files: old rows and the decision
    left = await client.get("/api/v1/memories", params={"limit": 100, "order": "asc"}, headers=rw)
    assert [m["content"] for m in left.json()["memories"]] == [
        "edge 1",
        "new 4",
        "new 3",
        "new 2",
        "new 1",
        "new 0",
    ]
    entries = await runtime.catalog.list_audit(org_id)
    assert [(e.action, e.count, e.actor) for e in entries] == [("retention", 52, "retention")]
    assert "whole files in Arc" in (entries[0].detail or "")


async def test_arc_policy_is_not_used_when_the_measurement_is_shared(
    served_runtime: tuple[Runtime, httpx.AsyncClient], arc_files_server: EmulatorServer
) -> None:
    runtime, client = served_runtime
    mine, rw, _ = await bound_org(runtime, arc_files_server)
    theirs, their_rw, _ = await bound_org(runtime, arc_files_server)  # same database
    body = {"agent_id": "bot", "content": "old", "time": at(40 * DAY_S)}
    for headers in (rw, their_rw):
        assert (
            await client.post("/api/v1/memories", json=body, headers=headers)
        ).status_code == 201
    for org_id in (mine, theirs):
        store = await open_store_of(runtime, org_id)
        assert isinstance(store, ArcStore)
        await drained(store)

    def policy(conn: Any) -> None:
        lc.put_retention(conn, mine, RetentionPolicy(30), now_us())

    await runtime.catalog.db.write(policy)
    assert (await runtime.sweeper.run_once()) == {mine: 1}
    assert arc_files_server.emulator.admin.policies == {}  # whole files would hold theirs too
    listed = await client.get("/api/v1/memories", headers=their_rw)
    assert [m["content"] for m in listed.json()["memories"]] == ["old"]
