"""``openai_agents_memtrace``: a program written for the Go memtrace's ``openai-agents-memtrace``
0.2 runs unchanged (same imports, arguments, tool schemas) with a scripted model on the real
app."""

from __future__ import annotations

import json

from agents import Agent, Runner
from agents.memory.session import SessionABC
from agents.testing import ScriptedModel, assistant_message, function_call

from memtrace import AsyncMemtrace, ListOptions
from openai_agents_memtrace import MemtraceSession, __version__, create_memtrace_tools

_CALLS = iter(range(1_000_000))


def call(name: str, arguments: dict[str, object]) -> object:
    return function_call(name, arguments, call_id=f"call_{next(_CALLS)}")


def test_the_02_tool_schemas(mt: AsyncMemtrace) -> None:
    tools = {t.name: t for t in create_memtrace_tools(mt, "agent_1", session_id="sess_x")}
    assert list(tools) == ["memtrace_remember", "memtrace_recall", "memtrace_search",
                           "memtrace_decide"]  # fmt: skip
    remember = tools["memtrace_remember"].params_json_schema
    assert remember["required"] == ["content"] and remember["additionalProperties"] is False
    assert set(remember["properties"]) == {
        *("content", "memory_type", "event_type", "session_id"),
        *("tags", "importance", "metadata", "agent_id"),
    }
    assert tools["memtrace_recall"].params_json_schema["required"] == []
    assert tools["memtrace_decide"].params_json_schema["required"] == ["decision", "reasoning"]
    assert __version__ == "0.2.0"


async def test_tools_with_02_defaults_in_a_run(mt: AsyncMemtrace) -> None:
    model = ScriptedModel(
        [
            [call("memtrace_remember", {"content": "acme blocks crawlers",
                                                 "tags": ["acme"], "importance": 0.8})],
            [call("memtrace_decide", {"decision": "slow down", "reasoning": "429s"})],
            [call("memtrace_remember", {"content": "for another agent",
                                                 "agent_id": "agent_2", "session_id": "s2"})],
            [call("memtrace_recall", {"limit": 500})],
            [call("memtrace_search", {"content_contains": "ACME"})],
            [assistant_message("done")],
        ]
    )  # fmt: skip
    tools = create_memtrace_tools(mt, "agent_1", session_id="sess_run")
    agent = Agent(name="crawler", instructions="remember things", tools=tools, model=model)
    result = await Runner.run(agent, "go")
    assert result.final_output == "done"
    outputs = [
        json.loads(item["output"])
        for call in model.calls
        for item in call.input
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    ][-5:]
    remembered, decided, other, recalled, found = outputs
    assert remembered["agent_id"] == "agent_1" and remembered["session_id"] == "sess_run"
    assert remembered["memory_type"] == "episodic" and remembered["event_type"] == "general"
    assert decided["memory_type"] == "decision" and decided["metadata"] == {"reasoning": "429s"}
    assert other["agent_id"] == "agent_2" and other["session_id"] == "s2"
    # recall: the agent's memories of the default session, newest first (decide has none)
    assert [m["content"] for m in recalled["memories"]] == ["acme blocks crawlers"]
    assert [m["content"] for m in found["results"]] == ["acme blocks crawlers"]


async def test_session_create_inject_persist_close(mt: AsyncMemtrace) -> None:
    session = await MemtraceSession.create(mt, agent_id="agent_1", metadata={"user": "u1"})
    assert isinstance(session, SessionABC) and session.session_id.startswith("sess_")
    assert await session.get_items() == []  # a new session has no prior context
    await session.add_items([
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "hello Ada"},
    ])  # fmt: skip
    assert len(await session.get_items()) == 2
    assert await session.get_items(limit=1) == [{"role": "assistant", "content": "hello Ada"}]
    stored = await mt.list_memories(ListOptions(session_id=session.session_id))
    assert [(m.event_type, m.content) for m in stored.memories] == [
        ("user_message", "my name is Ada")  # assistant messages are not persisted by default
    ]
    assert await session.pop_item() == {"role": "assistant", "content": "hello Ada"}
    await session.clear_session()
    assert await session.get_items() == []
    await session.close()
    assert (await mt.get_session(session.session_id)).status == "closed"

    # a session created against an existing session id's memories injects its context
    again = MemtraceSession(mt, "agent_1", session.session_id, persist_assistant_messages=True)
    await again.add_items([{"role": "assistant", "content": "noted"}])
    context = await mt.get_session_context(session.session_id)
    assert context.memory_count == 2
    injected = await MemtraceSession.create(
        mt, "agent_1", inject_context=True, context_since="1h", context_max_tokens=500,
        persist_user_messages=False,
    )  # fmt: skip
    await injected.add_items([{"role": "user", "content": "not persisted"}])
    assert (await mt.list_memories(ListOptions(session_id=injected.session_id))).count == 0
