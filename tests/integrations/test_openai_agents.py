"""The OpenAI Agents SDK integration with a scripted model (no network) on the real app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from agents import Agent, Runner, SQLiteSession
from agents.memory import Session, SessionSettings
from agents.testing import ScriptedModel, assistant_message, function_call

from http_api.app import create_app
from memtrace import AsyncMemtrace, ListOptions
from memtrace.config import Settings
from memtrace.integrations.openai_agents import (
    MemtraceSession,
    create_memtrace_tools,
    memtrace_instructions,
)
from memtrace.runtime import Runtime
from memtrace.tools import TOOLS_BY_NAME
from tests.client.conftest import BASE


def _outputs(model: ScriptedModel, call: int) -> list[str]:
    """The function-call outputs the model received in its ``call``-th request."""
    items = model.calls[call].input
    return [
        i["output"]
        for i in items
        if isinstance(i, dict) and i.get("type") == "function_call_output"
    ]


async def test_agent_remembers_then_recalls(mt: AsyncMemtrace) -> None:
    model = ScriptedModel(
        [
            [
                function_call(
                    "memtrace_remember",
                    {
                        "content": "acme.com blocks crawlers",
                        "event_type": "page_crawled",
                        "tags": ["web"],
                    },
                    call_id="c1",
                )
            ],
            [function_call("memtrace_recall", {"since": "1h"}, call_id="c2")],
            [
                function_call(
                    "memtrace_decide",
                    {"decision": "skip acme.com", "reasoning": "it blocks us"},
                    call_id="c3",
                )
            ],
            [assistant_message("Done: I will skip acme.com.")],
        ]
    )
    agent = Agent(name="crawler", model=model, tools=create_memtrace_tools(mt, "crawler"))
    result = await Runner.run(agent, "Crawl acme.com and remember what you find.")
    assert result.final_output == "Done: I will skip acme.com."

    stored = await mt.recall("crawler", since="1h")
    assert [m.content for m in stored.memories] == ["skip acme.com", "acme.com blocks crawlers"]
    assert stored.memories[1].tags == ["web"]
    assert stored.memories[0].metadata == {"reasoning": "it blocks us"}
    assert "acme.com blocks crawlers" in _outputs(model, 2)[-1]


async def test_failing_tool_returns_text_and_the_run_continues(mt: AsyncMemtrace) -> None:
    model = ScriptedModel(
        [
            [function_call("memtrace_recall", {"since": "yesterday"}, call_id="c1")],
            [function_call("memtrace_remember", "{not json", call_id="c2")],
            [assistant_message("I could not recall anything.")],
        ]
    )
    agent = Agent(name="a", model=model, tools=create_memtrace_tools(mt, "a1"))
    result = await Runner.run(agent, "What do you remember?")
    assert result.final_output == "I could not recall anything."
    first = _outputs(model, 1)[-1]
    assert first.startswith("memtrace error: since")
    assert _outputs(model, 2)[-1].startswith("memtrace error:")


async def test_tools_are_the_shared_definitions_scoped_to_agent_and_session(
    mt: AsyncMemtrace,
) -> None:
    tools = {t.name: t for t in create_memtrace_tools(mt, "writer", "sess_abc")}
    assert list(tools) == [
        "memtrace_remember",
        "memtrace_recall",
        "memtrace_search",
        "memtrace_decide",
    ]
    for name, tool in tools.items():
        assert tool.description == TOOLS_BY_NAME[name].description
    remember = tools["memtrace_remember"].params_json_schema
    assert "agent_id" not in remember["properties"]
    assert "session_id" not in remember["properties"]
    assert remember["required"] == ["content"]
    shared = TOOLS_BY_NAME["memtrace_remember"].input_schema()["properties"]
    assert remember["properties"]["tags"] == shared["tags"]
    assert "agent_id" in tools["memtrace_search"].params_json_schema["properties"]

    model = ScriptedModel(
        [
            [function_call("memtrace_remember", {"content": "draft 1 done"}, call_id="c1")],
            [assistant_message("ok")],
        ]
    )
    await Runner.run(Agent(name="w", model=model, tools=list(tools.values())), "go")
    page = await mt.list_memories(ListOptions(session_id="sess_abc"))
    assert [(m.agent_id, m.content) for m in page.memories] == [("writer", "draft 1 done")]


def _turn(reply: str) -> ScriptedModel:
    return ScriptedModel([[assistant_message(reply, item_id=f"msg_{reply}")]])


async def test_session_survives_a_restart(
    settings: Settings, org_key: tuple[str, str], runtime: Runtime
) -> None:
    key = org_key[1]
    transport = httpx.ASGITransport(app=create_app(runtime, manage_runtime=False))
    async with AsyncMemtrace(BASE, key, transport=transport) as client:
        session = await MemtraceSession.create(client, "support")
        session_id = session.session_id
        assert session_id.startswith("sess_")
        for question, answer in (("My name is Ada.", "Hello Ada"), ("I use Linux.", "Noted")):
            agent = Agent(name="support", model=_turn(answer))
            await Runner.run(agent, question, session=session)
        before = await session.get_items()
    del session, client, agent
    await runtime.close()

    # A new process: a new runtime on the same data dir, a new app, client and session object.
    fresh = Runtime(settings)
    await fresh.start()
    try:
        transport = httpx.ASGITransport(app=create_app(fresh, manage_runtime=False))
        async with AsyncMemtrace(BASE, key, transport=transport) as client:
            again = await MemtraceSession.create(client, "support", session_id)
            items = await again.get_items()
            assert items == before
            texts = [json.dumps(i) for i in items]
            assert len(items) == 4
            assert "My name is Ada." in texts[0] and "Hello Ada" in texts[1]
            assert "I use Linux." in texts[2] and "Noted" in texts[3]
            assert await again.get_items(limit=1) == items[-1:]
            model = _turn("You are Ada")
            await Runner.run(Agent(name="support", model=model), "Who am I?", session=again)
            assert "My name is Ada." in json.dumps(model.calls[0].input)
    finally:
        await fresh.close()


async def _replay(session: Any) -> list[Any]:
    """One sequence of Session calls; everything observable is returned."""
    seen: list[Any] = []
    item = lambda n: {"role": "user", "content": f"message {n}"}  # noqa: E731
    await session.add_items([item(1), item(2), item(3)])
    seen.append(await session.pop_item())
    seen.append(await session.get_items())
    await session.add_items([item(2)])  # the same content again is a new item
    seen.append(await session.get_items())
    seen.append(await session.get_items(limit=2))
    seen.append([await session.pop_item() for _ in range(4)])
    await session.add_items([item(4), item(5)])
    await session.clear_session()
    seen.append(await session.get_items())
    seen.append(await session.pop_item())
    await session.add_items([item(6)])
    seen.append(await session.get_items())
    await session.clear_session()
    await session.clear_session()
    seen.append(await session.get_items())
    return seen


async def test_pop_and_clear_match_the_sdk_sqlite_session(
    mt: AsyncMemtrace, tmp_path: Path
) -> None:
    reference = SQLiteSession("conv", str(tmp_path / "agents.db"))
    try:
        expected = await _replay(reference)
    finally:
        reference.close()
    ours = await MemtraceSession.create(mt, "support", "conv_1")
    assert isinstance(ours, Session)  # the SDK's runtime-checkable protocol
    assert await _replay(ours) == expected
    limited = MemtraceSession(mt, "support", "conv_2", session_settings=SessionSettings(limit=2))
    await limited.add_items([{"role": "user", "content": str(n)} for n in range(3)])
    assert [i["content"] for i in await limited.get_items()] == ["1", "2"]
    assert len(await limited.get_items(limit=3)) == 3

    # Nothing was deleted: every item and marker is still in memtrace.
    history = [m async for m in mt.iter_memories(ListOptions(session_id="conv_1"))]
    assert len([m for m in history if m.event_type == "conversation_item"]) == 7


async def test_instructions_carry_prior_agent_context(mt: AsyncMemtrace) -> None:
    await mt.decide("support", "refunds need a manager", "policy since March")
    await mt.remember(
        "support", "Ada is a VIP customer", memory_type="entity", event_type="customer"
    )
    session = await MemtraceSession.create(mt, "support")
    await session.add_items([{"role": "user", "content": "an old chat line"}])
    model = _turn("ok")
    agent = Agent(name="support", model=model, instructions=session.instructions("Be kind."))
    await Runner.run(agent, "Can I get a refund?", session=session)
    system = model.calls[0].system_instructions or ""
    assert system.startswith("Be kind.")
    assert "refunds need a manager" in system and "policy since March" in system
    assert "Ada is a VIP customer" in system
    assert "an old chat line" not in system  # conversation items are replayed, not summarised

    empty = memtrace_instructions(mt, "nobody_yet", "Plain.")
    assert await empty(None, None) == "Plain."
