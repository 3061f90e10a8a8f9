"""A program written for the published memtrace-sdk 0.2.0, using only its documented calls.

It must run unchanged against this SDK and server: ``python sdk020_program.py URL KEY``.
(Nothing here uses an API that 0.2.0 does not have: 0.2.0's Memory has no ``id`` field.)
"""

import asyncio
import sys

from memtrace import (
    AddMemoryRequest,
    AsyncMemtrace,
    AuthenticationError,
    ConflictError,
    ContextOptions,
    CreateSessionRequest,
    ListOptions,
    Memory,
    MemoryList,
    Memtrace,
    MemtraceError,
    NotFoundError,
    RegisterAgentRequest,
    SearchQuery,
    SearchResult,
)


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")


def run_sync(url, key):
    client = Memtrace(url, key, timeout=10.0)
    m = client.remember("agent_1", "User prefers dark mode")
    check(isinstance(m, Memory) and m.memory_type == "episodic", "remember")
    d = client.decide("agent_1", "Use the dark theme", "The user asked for it")
    check(d.metadata == {"reasoning": "The user asked for it"}, "decide")
    recent = client.recall("agent_1")
    check(isinstance(recent, MemoryList) and recent.count == 2, "recall")
    check(recent.memories[0].content == "Use the dark theme", "recall is newest first")

    client.add_memory(
        AddMemoryRequest(
            agent_id="agent_1",
            memory_type="entity",
            event_type="user_pref",
            content="Ada Lovelace, admin of acme",
            tags=["user", "ui"],
            importance=0.8,
            metadata={"email": "ada@example.com"},
        )
    )
    batch = client.add_memories(
        [
            AddMemoryRequest(
                agent_id="agent_1",
                memory_type="episodic",
                event_type="page_crawled",
                content=f"crawled page {i}",
            )
            for i in range(3)
        ]
    )
    check(len(batch) == 3, "add_memories")

    entities = client.list_memories(ListOptions(agent_id="agent_1", memory_type="entity"))
    check(entities.count == 1 and entities.memories[0].tags == ["user", "ui"], "list entity")
    paged = client.list_memories(ListOptions(agent_id="agent_1", limit=2, offset=0, order="asc"))
    check(paged.has_more and paged.memories[0].content == "User prefers dark mode", "paging")
    tagged = client.list_memories(ListOptions(tags="user,ui", since="1h"))
    check(tagged.count == 1, "tags filter")

    found = client.search_memories(
        SearchQuery(content_contains="DARK", memory_types=["episodic", "decision"])
    )
    check(isinstance(found, SearchResult) and found.count == 2, "search")
    crawled = client.search_memories(SearchQuery(event_types=["page_crawled"], limit=2))
    check(crawled.count == 2, "search limit")

    agent = client.register_agent(RegisterAgentRequest(name="agent_2", description="helper"))
    check(agent.name == "agent_2", "register_agent")
    try:
        client.register_agent(RegisterAgentRequest(name="agent_2"))
        check(False, "duplicate agent must conflict")
    except ConflictError as exc:
        check(exc.status_code == 409, "conflict status")
    names = {a.name for a in client.list_agents().agents}
    check(names == {"agent_1", "agent_2"}, "list_agents")
    check(client.get_agent("agent_2").description == "helper", "get_agent")
    stats = client.get_agent_stats("agent_1")
    check(stats.memory_count == 6 and stats.memory_types["entity"] == 1, "stats")
    mine = client.get_agent_memories("agent_1", ListOptions(limit=5))
    check(mine.count == 5 and mine.has_more, "get_agent_memories")

    session = client.create_session(
        CreateSessionRequest(agent_id="agent_1", metadata={"task": "onboarding"})
    )
    client.add_memory(
        AddMemoryRequest(
            agent_id="agent_1",
            session_id=session.id,
            memory_type="session",
            event_type="note",
            content="Walked the user through settings",
        )
    )
    client.add_memory(
        AddMemoryRequest(
            agent_id="agent_1",
            session_id=session.id,
            memory_type="decision",
            event_type="decision",
            content="Skip the tour",
            metadata={"reasoning": "expert"},
        )
    )
    context = client.get_session_context(
        session.id, ContextOptions(max_tokens=1000, include_types=["decision", "session"])
    )
    check(context.session_id == session.id and context.memory_count == 2, "context")
    check("Skip the tour" in context.context and "expert" in context.context, "context text")
    check(client.get_session_context(session.id).memory_count == 2, "context defaults")
    check(client.get_session_memories(session.id).count == 2, "session memories")
    check(client.list_sessions("agent_1").count == 1, "list_sessions(agent)")
    check(client.list_sessions().count == 1, "list_sessions()")
    closed = client.close_session(session.id)
    check(closed.status == "closed" and closed.closed_at is not None, "close_session")
    check(client.get_session(session.id).status == "closed", "get_session")

    try:
        client.get_agent("nobody")
        check(False, "unknown agent must be 404")
    except NotFoundError:
        pass
    client.delete_agent("agent_2")
    client.close()

    with Memtrace(url, "mtk_" + "0" * 43) as bad:
        try:
            bad.list_agents()
            check(False, "bad key must be rejected")
        except AuthenticationError as exc:
            check(isinstance(exc, MemtraceError) and exc.status_code == 401, "401")


async def run_async(url, key):
    async with AsyncMemtrace(url, key) as client:
        await client.remember("agent_3", "async hello")
        await client.decide("agent_3", "stay async", "it is faster")
        recent = await client.recall("agent_3", since="1h")
        check([x.content for x in recent.memories] == ["stay async", "async hello"], "async")
        session = await client.create_session(CreateSessionRequest(agent_id="agent_3"))
        await client.close_session(session.id)
        check((await client.get_agent_stats("agent_3")).memory_count == 2, "async stats")


if __name__ == "__main__":
    run_sync(sys.argv[1], sys.argv[2])
    asyncio.run(run_async(sys.argv[1], sys.argv[2]))
    print("memtrace-sdk 0.2.0 program: OK")
