"""The seven tools run through ClientOps (HTTP) against the real app, like through ServiceOps."""

from __future__ import annotations

import httpx
import pytest

from memtrace.client import AsyncMemtrace
from memtrace.client.ops import ClientOps
from memtrace.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from memtrace.domain.models import MemoryCreate
from memtrace.runtime import Runtime
from memtrace.tools import call_tool
from tests.client.conftest import BASE
from tests.helpers import create_org_key


async def test_every_tool_through_client_ops(aclient: AsyncMemtrace) -> None:
    ops = ClientOps(aclient)
    result = await call_tool("memtrace_agent_register", {"name": "crawler"}, ops)
    assert result.data["id"] == "crawler"
    again = await call_tool("memtrace_agent_register", {"name": "crawler"}, ops)
    assert "already registered" in again.text

    session = await call_tool("memtrace_session_create", {"agent_id": "crawler"}, ops)
    sid = session.data["id"]
    assert sid.startswith("sess_")

    stored = await call_tool(
        "memtrace_remember",
        {"content": "crawled example.com", "session_id": sid, "tags": ["web"]},
        ops,
        default_agent_id="crawler",
    )
    assert stored.data["duplicate"] is False
    memory_id = stored.data["id"]
    assert (await aclient.get_memory(memory_id)).content == "crawled example.com"

    dup = await call_tool(
        "memtrace_remember",
        {
            "agent_id": "crawler",
            "content": "crawled example.com",
            "session_id": sid,
            "tags": ["web"],
        },
        ops,
    )
    assert dup.data == {"id": memory_id, "duplicate": True}

    decided = await call_tool(
        "memtrace_decide",
        {
            "agent_id": "crawler",
            "decision": "skip robots-blocked pages",
            "reasoning": "policy",
            "session_id": sid,
        },
        ops,
    )
    assert decided.data["memory"]["metadata"] == {"reasoning": "policy"}

    recalled = await call_tool("memtrace_recall", {"agent_id": "crawler"}, ops)
    assert recalled.data["count"] == 2
    assert "crawled example.com" in recalled.text

    found = await call_tool("memtrace_search", {"content_contains": "ROBOTS"}, ops)
    assert [m["content"] for m in found.data["results"]] == ["skip robots-blocked pages"]

    context = await call_tool("memtrace_session_context", {"session_id": sid}, ops)
    assert "skip robots-blocked pages" in context.text
    assert context.data["session_id"] == sid

    judged = await call_tool(
        "memtrace_outcome",
        {"decision_id": decided.data["id"], "outcome": "partial", "content": "2 pages missed"},
        ops,
    )
    assert judged.data["memory"]["parent_id"] == decided.data["id"]
    again = await call_tool(
        "memtrace_outcome",
        {"decision_id": decided.data["id"], "outcome": "partial", "content": "2 pages missed"},
        ops,
    )
    assert again.data == {"id": judged.data["id"], "duplicate": True}
    context = await call_tool("memtrace_session_context", {"session_id": sid}, ops)
    assert "skip robots-blocked pages — reasoning: policy — outcome: partial" in context.text

    timeline = await call_tool(
        "memtrace_timeline", {"since": "1h", "bucket": "15m", "group_by": "event_type"}, ops
    )
    assert timeline.data["total"] == 3 and timeline.data["bucket_seconds"] == 900
    assert "| bucket start (UTC) | count |" in timeline.text


async def test_duplicate_remember_raises_conflict_with_existing_id(
    aclient: AsyncMemtrace,
) -> None:
    ops = ClientOps(aclient)
    item = MemoryCreate(agent_id="a1", content="same thing", dedup_key="k1")
    first = await ops.remember(item)
    with pytest.raises(Conflict) as info:
        await ops.remember(item)
    assert info.value.existing_id == first["id"]
    assert info.value.status_code == 409


async def test_errors_come_back_as_the_same_classes(
    aclient: AsyncMemtrace, runtime: Runtime, asgi: httpx.ASGITransport
) -> None:
    ops = ClientOps(aclient)
    with pytest.raises(NotFound):
        await aclient.get_memory("mem_01ZZZZZZZZZZZZZZZZZZZZZZZZ")
    with pytest.raises(InvalidInput):
        await call_tool("memtrace_recall", {"agent_id": "a1", "since": "yesterday"}, ops)
    _, read_only = await create_org_key(runtime, "ro", "read")
    async with AsyncMemtrace(BASE, read_only, transport=asgi) as ro:
        with pytest.raises(Forbidden):
            await call_tool("memtrace_remember", {"agent_id": "a1", "content": "x"}, ClientOps(ro))
