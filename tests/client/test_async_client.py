"""Every method of AsyncMemtrace against the real app (ASGITransport), and its error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from http_api.app import create_app
from memtrace import (
    AddMemoryRequest,
    AsyncMemtrace,
    AuthenticationError,
    ConflictError,
    ContextOptions,
    CreateSessionRequest,
    Forbidden,
    InvalidInput,
    ListOptions,
    MemtraceError,
    NoArcInstanceError,
    NotFoundError,
    RegisterAgentRequest,
    SearchQuery,
)
from memtrace.config import load_settings
from memtrace.domain.errors import AgentExists, DuplicateMemory
from memtrace.runtime import Runtime
from tests.client.conftest import BASE
from tests.helpers import Tenant, create_org_key


@pytest.fixture(params=["asgi", pytest.param("uvicorn", marks=pytest.mark.slow)])
async def anyclient(
    request: pytest.FixtureRequest, aclient: AsyncMemtrace
) -> AsyncIterator[AsyncMemtrace]:
    """The async client on the real app in process, and on a real ``memtrace serve``."""
    if request.param == "asgi":
        yield aclient
        return
    tenant: Tenant = request.getfixturevalue("tenant")
    async with AsyncMemtrace(tenant.url, tenant.key, backoff=0.01) as client:
        yield client


def _req(content: str, **fields: object) -> AddMemoryRequest:
    return AddMemoryRequest.model_validate(
        {
            "agent_id": "writer",
            "memory_type": "episodic",
            "event_type": "general",
            "content": content,
            **fields,
        }
    )


async def test_memory_methods(anyclient: AsyncMemtrace) -> None:
    aclient = anyclient
    m = await aclient.remember(
        "writer",
        "drafted the intro",
        event_type="draft_written",
        tags=["draft"],
        importance=0.7,
        metadata={"doc": 1},
    )
    assert m.id.startswith("mem_")
    assert (m.event_type, m.tags, m.importance, m.metadata) == (
        "draft_written",
        ["draft"],
        0.7,
        {"doc": 1},
    )
    assert await aclient.get_memory(m.id) == m

    session = await aclient.create_session(CreateSessionRequest(agent_id="writer"))
    d = await aclient.decide(
        "writer",
        "use a listicle",
        "readers skim",
        session_id=session.id,
        tags=["style"],
        importance=0.9,
        metadata={"ticket": "T-1"},
    )
    assert (d.memory_type, d.event_type, d.session_id) == ("decision", "decision", session.id)
    assert d.metadata == {"ticket": "T-1", "reasoning": "readers skim"}

    entity = await aclient.add_memory(
        _req("Ada edits the blog", memory_type="entity", event_type="person", session_id=session.id)
    )
    assert entity.memory_type == "entity"
    batch = await aclient.add_memories([_req(f"step {i}") for i in range(3)])
    assert [b.content for b in batch] == ["step 0", "step 1", "step 2"]
    again = await aclient.add_memories_batch([_req("step 0"), _req("step 9")])
    assert again.count == 1
    assert [(x.index, x.existing_id) for x in again.duplicates] == [(0, batch[0].id)]

    recalled = await aclient.recall("writer", "1h", tags=["draft"])
    assert [r.id for r in recalled.memories] == [m.id]
    assert (await aclient.recall("writer", session_id=session.id)).count == 2

    page = await aclient.list_memories(ListOptions(agent_id="writer", limit=2))
    assert (page.count, page.has_more) == (2, True)
    everything = [x async for x in aclient.iter_memories(ListOptions(agent_id="writer", limit=2))]
    assert len(everything) == 7 == len({x.id for x in everything})
    assert [x.time for x in everything] == sorted((x.time for x in everything), reverse=True)

    found = await aclient.search_memories(SearchQuery(content_contains="STEP", limit=2))
    assert found.count == 2
    steps = [
        x.content
        async for x in aclient.iter_search(
            SearchQuery(content_contains="step", limit=2, order="asc")
        )
    ]
    assert steps == ["step 0", "step 1", "step 2", "step 9"]


async def test_agent_and_session_methods(anyclient: AsyncMemtrace) -> None:
    aclient = anyclient
    agent = await aclient.register_agent(
        RegisterAgentRequest(name="reviewer", description="reviews drafts")
    )
    assert (agent.id, agent.description) == ("reviewer", "reviews drafts")
    session = await aclient.create_session(
        CreateSessionRequest(agent_id="writer", metadata={"goal": "post"})
    )
    await aclient.remember("writer", "wrote a draft", session_id=session.id)
    await aclient.decide("writer", "publish friday", "traffic peaks", session_id=session.id)

    assert {a.id for a in (await aclient.list_agents()).agents} == {"writer", "reviewer"}
    assert (await aclient.get_agent("reviewer")).name == "reviewer"
    stats = await aclient.get_agent_stats("writer")
    assert (stats.memory_count, stats.session_count) == (2, 1)
    decisions = await aclient.get_agent_memories(
        "writer", ListOptions(agent_id="ignored", memory_type="decision")
    )
    assert [x.content for x in decisions.memories] == ["publish friday"]
    agent_ctx = await aclient.get_agent_context("writer")
    assert "publish friday" in agent_ctx.context

    assert (await aclient.get_session(session.id)).metadata == {"goal": "post"}
    ctx = await aclient.get_session_context(session.id, ContextOptions(max_tokens=500))
    assert ctx.session_id == session.id
    assert "traffic peaks" in ctx.context
    assert ctx.memory_count == 2
    mems = await aclient.get_session_memories(session.id, ListOptions(session_id="x", limit=1))
    assert (mems.count, mems.has_more) == (1, True)
    assert [s.id for s in (await aclient.list_sessions("writer")).sessions] == [session.id]
    updated = await aclient.update_session(session.id, metadata={"goal": "done"})
    assert updated.metadata == {"goal": "done"}
    closed = await aclient.close_session(session.id)
    assert (closed.status, closed.closed_at is not None) == ("closed", True)
    assert (await aclient.list_sessions(status="active")).count == 0

    assert await aclient.delete_agent("reviewer") is None
    with pytest.raises(NotFoundError):
        await aclient.get_agent("reviewer")


async def test_error_statuses_map_to_the_documented_exceptions(
    aclient: AsyncMemtrace, asgi: httpx.ASGITransport, runtime: Runtime
) -> None:
    with pytest.raises(NotFoundError) as missing:
        await aclient.get_memory("mem_01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert missing.value.status_code == 404
    await aclient.register_agent(RegisterAgentRequest(name="dup"))
    with pytest.raises(ConflictError) as taken:
        await aclient.register_agent(RegisterAgentRequest(name="dup"))
    # Found with the SDK: an existing agent raised DuplicateMemory (it had an existing_id).
    assert isinstance(taken.value, AgentExists) and not isinstance(taken.value, DuplicateMemory)
    assert taken.value.existing_id == "dup"
    await aclient.remember("writer", "once")
    with pytest.raises(DuplicateMemory) as dup:
        await aclient.remember("writer", "once")
    assert dup.value.existing_id and dup.value.existing_id.startswith("mem_")
    with pytest.raises(InvalidInput) as bad:
        await aclient.recall("writer", since="yesterday")
    assert bad.value.status_code == 400
    assert bad.value.message.startswith("since")

    async with AsyncMemtrace(BASE, "mtk_" + "x" * 43, transport=asgi) as wrong:
        with pytest.raises(AuthenticationError) as auth:
            await wrong.list_agents()
    assert auth.value.status_code == 401
    _, read_only = await create_org_key(runtime, "ro", "read")
    async with AsyncMemtrace(BASE, read_only, transport=asgi) as ro:
        assert (await ro.list_agents()).count == 0
        with pytest.raises(Forbidden) as forbidden:
            await ro.remember("writer", "not allowed")
    assert isinstance(forbidden.value, MemtraceError)
    assert forbidden.value.status_code == 403


async def test_no_store_maps_to_no_arc_instance_error_with_hint(tmp_path: Path) -> None:
    settings = load_settings(
        None, {"storage.data_dir": tmp_path / "d", "storage.default_backend": "none"}
    )
    runtime = Runtime(settings)
    await runtime.start()
    try:
        _, key = await create_org_key(runtime, "bare")
        transport = httpx.ASGITransport(app=create_app(runtime, manage_runtime=False))
        async with AsyncMemtrace(BASE, key, transport=transport) as client:
            with pytest.raises(NoArcInstanceError) as info:
                await client.remember("writer", "nowhere to go")
    finally:
        await runtime.close()
    assert info.value.status_code == 503
    # memtrace-sdk 0.2.0 recognises this error by the words "arc instance" in a 503.
    assert "arc instance" in info.value.message.lower()
    assert info.value.hint and "memtrace org add-arc" in info.value.hint
