"""Every method of the sync Memtrace client against the real app, and its error mapping."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from memtrace import (
    AuthenticationError,
    ConflictError,
    ContextOptions,
    CreateSessionRequest,
    Forbidden,
    InvalidInput,
    ListOptions,
    Memtrace,
    MemtraceError,
    NotFoundError,
    RegisterAgentRequest,
    SearchQuery,
)
from memtrace.domain.errors import DuplicateMemory
from tests.client.conftest import SyncApp
from tests.client.test_async_client import _req
from tests.helpers import Tenant


@pytest.fixture(params=["asgi", pytest.param("uvicorn", marks=pytest.mark.slow)])
def sclient(request: pytest.FixtureRequest) -> Iterator[Memtrace]:
    """The sync client on the real app in process, and on a real ``memtrace serve``."""
    if request.param == "asgi":
        client = request.getfixturevalue("sync_app").client()
    else:
        tenant: Tenant = request.getfixturevalue("tenant")
        client = Memtrace(tenant.url, tenant.key, backoff=0.01)
    with client:
        yield client


def test_memory_methods(sclient: Memtrace) -> None:
    m = sclient.remember(
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
    assert sclient.get_memory(m.id) == m

    session = sclient.create_session(CreateSessionRequest(agent_id="writer"))
    d = sclient.decide(
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

    entity = sclient.add_memory(
        _req("Ada edits the blog", memory_type="entity", event_type="person", session_id=session.id)
    )
    assert entity.memory_type == "entity"
    batch = sclient.add_memories([_req(f"step {i}") for i in range(3)])
    assert [b.content for b in batch] == ["step 0", "step 1", "step 2"]
    again = sclient.add_memories_batch([_req("step 0"), _req("step 9")])
    assert again.count == 1
    assert [(x.index, x.existing_id) for x in again.duplicates] == [(0, batch[0].id)]

    recalled = sclient.recall("writer", "1h", tags=["draft"])
    assert [r.id for r in recalled.memories] == [m.id]
    assert (sclient.recall("writer", session_id=session.id)).count == 2

    page = sclient.list_memories(ListOptions(agent_id="writer", limit=2))
    assert (page.count, page.has_more) == (2, True)
    everything = [x for x in sclient.iter_memories(ListOptions(agent_id="writer", limit=2))]
    assert len(everything) == 7 == len({x.id for x in everything})
    assert [x.time for x in everything] == sorted((x.time for x in everything), reverse=True)

    found = sclient.search_memories(SearchQuery(content_contains="STEP", limit=2))
    assert found.count == 2
    steps = [
        x.content
        for x in sclient.iter_search(SearchQuery(content_contains="step", limit=2, order="asc"))
    ]
    assert steps == ["step 0", "step 1", "step 2", "step 9"]


def test_agent_and_session_methods(sclient: Memtrace) -> None:
    agent = sclient.register_agent(
        RegisterAgentRequest(name="reviewer", description="reviews drafts")
    )
    assert (agent.id, agent.description) == ("reviewer", "reviews drafts")
    session = sclient.create_session(
        CreateSessionRequest(agent_id="writer", metadata={"goal": "post"})
    )
    sclient.remember("writer", "wrote a draft", session_id=session.id)
    sclient.decide("writer", "publish friday", "traffic peaks", session_id=session.id)

    assert {a.id for a in (sclient.list_agents()).agents} == {"writer", "reviewer"}
    assert (sclient.get_agent("reviewer")).name == "reviewer"
    stats = sclient.get_agent_stats("writer")
    assert (stats.memory_count, stats.session_count) == (2, 1)
    decisions = sclient.get_agent_memories(
        "writer", ListOptions(agent_id="ignored", memory_type="decision")
    )
    assert [x.content for x in decisions.memories] == ["publish friday"]
    agent_ctx = sclient.get_agent_context("writer")
    assert "publish friday" in agent_ctx.context

    assert (sclient.get_session(session.id)).metadata == {"goal": "post"}
    ctx = sclient.get_session_context(session.id, ContextOptions(max_tokens=500))
    assert ctx.session_id == session.id
    assert "traffic peaks" in ctx.context
    assert ctx.memory_count == 2
    mems = sclient.get_session_memories(session.id, ListOptions(session_id="x", limit=1))
    assert (mems.count, mems.has_more) == (1, True)
    assert [s.id for s in (sclient.list_sessions("writer")).sessions] == [session.id]
    updated = sclient.update_session(session.id, metadata={"goal": "done"})
    assert updated.metadata == {"goal": "done"}
    closed = sclient.close_session(session.id)
    assert (closed.status, closed.closed_at is not None) == ("closed", True)
    assert (sclient.list_sessions(status="active")).count == 0

    assert sclient.delete_agent("reviewer") is None
    with pytest.raises(NotFoundError):
        sclient.get_agent("reviewer")


def test_error_statuses_map_to_the_documented_exceptions(sync_app: SyncApp) -> None:
    sclient = sync_app.client()
    with pytest.raises(NotFoundError) as missing:
        sclient.get_memory("mem_01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert missing.value.status_code == 404
    sclient.register_agent(RegisterAgentRequest(name="dup"))
    with pytest.raises(ConflictError):
        sclient.register_agent(RegisterAgentRequest(name="dup"))
    sclient.remember("writer", "once")
    with pytest.raises(DuplicateMemory) as dup:
        sclient.remember("writer", "once")
    assert dup.value.existing_id and dup.value.existing_id.startswith("mem_")
    with pytest.raises(InvalidInput) as bad:
        sclient.recall("writer", since="yesterday")
    assert bad.value.status_code == 400
    assert bad.value.message.startswith("since")

    with sync_app.client("mtk_" + "x" * 43) as wrong, pytest.raises(AuthenticationError) as auth:
        wrong.list_agents()
    assert auth.value.status_code == 401
    with sync_app.client(sync_app.new_key("read")) as ro:
        assert (ro.list_agents()).count == 0
        with pytest.raises(Forbidden) as forbidden:
            ro.remember("writer", "not allowed")
    assert isinstance(forbidden.value, MemtraceError)
    assert forbidden.value.status_code == 403
