"""The MCP server through the real ``mcp.Client`` in memory: the tool list matches the README's
tool table and the argument models, and every tool's happy path and bad-input path."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import Client

from mcp_server.server import build_server, fixed_ops
from memtrace.runtime import Runtime
from memtrace.service_ops import ServiceOps
from memtrace.tools import TOOLS
from tests.mcp_helpers import data, text

# The tool table of the README (MCP section): tool → (required, optional) parameters.
TOOL_TABLE = {
    "memtrace_remember": (
        {"agent_id", "content"},
        {
            "memory_type",
            "event_type",
            "session_id",
            "tags",
            "importance",
            "metadata",
            "dedup_key",
            "parent_id",
        },
    ),
    "memtrace_recall": (
        {"agent_id"},
        {"since", "until", "session_id", "memory_type", "event_type", "tags", "limit", "new_only"},
    ),
    "memtrace_search": (
        set(),
        {
            "agent_id",
            "session_id",
            "content_contains",
            "memory_types",
            "event_types",
            "tags",
            "since",
            "until",
            "min_importance",
            "limit",
        },
    ),
    "memtrace_decide": (
        {"agent_id", "decision", "reasoning"},
        {"session_id", "tags", "importance"},
    ),
    "memtrace_session_create": ({"agent_id"}, {"metadata"}),
    "memtrace_session_context": (
        {"session_id"},
        {"since", "until", "include_types", "max_tokens"},
    ),
    "memtrace_agent_register": ({"name"}, {"description", "config"}),
    "memtrace_forget": ({"memory_id"}, set()),
    "memtrace_timeline": (
        set(),
        {
            "since",
            "until",
            "bucket",
            "group_by",
            "agent_id",
            "session_id",
            "event_types",
            "memory_types",
            "tags",
            "content_contains",
        },
    ),
    "memtrace_outcome": ({"decision_id", "outcome", "content"}, {"metrics", "agent_id"}),
}


@pytest.fixture
async def ops(runtime: Runtime) -> ServiceOps:
    return ServiceOps(
        await runtime.service("org_default"), await runtime.lifecycle("org_default", "test")
    )


@asynccontextmanager
async def connect(ops: ServiceOps, default_agent_id: str | None = None) -> AsyncIterator[Client]:
    """The in-memory client (a context manager per test: the SDK's task group must be entered
    and left in the same task, which async-generator fixtures do not guarantee)."""
    async with Client(build_server(fixed_ops(ops), default_agent_id=default_agent_id)) as client:
        yield client


async def call(client: Client, name: str, arguments: dict[str, Any]) -> Any:
    result = await client.call_tool(name, arguments)
    assert not result.is_error, text(result)
    return result


async def test_list_tools_is_exactly_the_tool_table_rendered_from_the_argument_models(
    ops: ServiceOps,
) -> None:
    async with connect(ops) as mcp:
        listed = {tool.name: tool for tool in (await mcp.list_tools()).tools}
        assert set(listed) == set(TOOL_TABLE)
        assert len(listed) == len(TOOLS)
        # the seven tools of memtrace 0.2 come first, in their order; new tools follow
        assert [t.name for t in (await mcp.list_tools()).tools] == [
            "memtrace_remember",
            "memtrace_recall",
            "memtrace_search",
            "memtrace_decide",
            "memtrace_session_create",
            "memtrace_session_context",
            "memtrace_agent_register",
            "memtrace_forget",
            "memtrace_timeline",
            "memtrace_outcome",
        ]
        for spec in TOOLS:
            tool = listed[spec.name]
            required, optional = TOOL_TABLE[spec.name]
            schema = tool.input_schema
            assert set(schema.get("required", [])) == required, spec.name
            assert set(schema["properties"]) == required | optional, spec.name
            assert schema == spec.input_schema(), spec.name  # one source of truth
            assert set(spec.args.model_fields) == required | optional
            assert tool.description == spec.description
            assert tool.annotations is not None
            assert tool.annotations.read_only_hint == (spec.permission == "read")
        assert listed["memtrace_recall"].input_schema["properties"]["since"]["default"] == "24h"
        assert listed["memtrace_recall"].input_schema["properties"]["limit"]["default"] == 50
        assert listed["memtrace_search"].input_schema["properties"]["limit"]["default"] == 50


async def test_default_agent_makes_agent_id_optional(ops: ServiceOps) -> None:
    async with connect(ops, default_agent_id="helper") as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        for name in ("memtrace_remember", "memtrace_recall", "memtrace_decide"):
            schema = listed[name].input_schema
            assert "agent_id" not in schema.get("required", [])
            assert schema["properties"]["agent_id"]["default"] == "helper"
        stored = await call(client, "memtrace_remember", {"content": "no agent given"})
        assert data(stored)["memory"]["agent_id"] == "helper"
        mine = await call(client, "memtrace_recall", {"since": "1h"})
        assert "no agent given" in text(mine)


async def test_every_tool_happy_path(ops: ServiceOps) -> None:
    async with connect(ops) as mcp:
        registered = await call(
            mcp, "memtrace_agent_register", {"name": "crawler", "description": "crawls"}
        )
        assert "crawler registered" in text(registered)
        again = await call(mcp, "memtrace_agent_register", {"name": "crawler"})
        assert "already registered" in text(again)

        session = await call(mcp, "memtrace_session_create", {"agent_id": "crawler"})
        sid = data(session)["id"]
        assert sid in text(session)

        stored = await call(
            mcp,
            "memtrace_remember",
            {
                "agent_id": "crawler",
                "content": "Crawled example.com pricing page",
                "event_type": "page_crawled",
                "session_id": sid,
                "tags": ["pricing"],
                "importance": 0.7,
                "metadata": {"url": "https://example.com/pricing"},
            },
        )
        memory_id = data(stored)["id"]
        assert text(stored) == f"Remembered as {memory_id} (episodic/page_crawled)."

        decided = await call(
            mcp,
            "memtrace_decide",
            {
                "agent_id": "crawler",
                "decision": "Skip the blog section",
                "reasoning": "It has no pricing data",
                "session_id": sid,
            },
        )
        assert text(decided).startswith("Decision recorded as mem_")

        recalled = await call(mcp, "memtrace_recall", {"agent_id": "crawler", "since": "1h"})
        lines = text(recalled).splitlines()
        assert lines[0] == "Memories of crawler since 1h (2):"
        assert (
            "decision/decision: Skip the blog section — reasoning: It has no pricing data"
            in (lines[1])
        )
        assert "episodic/page_crawled: Crawled example.com pricing page [tags: pricing]" in lines[2]
        assert memory_id in lines[2]
        assert data(recalled)["count"] == 2

        found = await call(
            mcp, "memtrace_search", {"content_contains": "PRICING page", "min_importance": 0.5}
        )
        assert [m["id"] for m in data(found)["results"]] == [memory_id]
        nothing = await call(mcp, "memtrace_search", {"content_contains": "no such text"})
        assert text(nothing) == "Search results: none found."

        context = await call(mcp, "memtrace_session_context", {"session_id": sid})
        markdown = text(context)
        assert "Skip the blog section" in markdown
        assert "It has no pricing data" in markdown
        assert "Crawled example.com pricing page" in markdown
        assert data(context)["context"] == markdown

        decision_id = data(decided)["id"]
        judged = await call(
            mcp,
            "memtrace_outcome",
            {
                "decision_id": decision_id,
                "outcome": "success",
                "content": "Saved 40 requests",
                "metrics": {"requests_saved": 40},
            },
        )
        outcome_id = data(judged)["id"]
        assert text(judged) == f"Outcome of {decision_id} recorded as {outcome_id}: success."
        assert data(judged)["memory"]["parent_id"] == decision_id
        again_judged = await call(
            mcp,
            "memtrace_outcome",
            {"decision_id": decision_id, "outcome": "success", "content": "Saved 40 requests"},
        )
        assert data(again_judged) == {"id": outcome_id, "duplicate": True}
        context = await call(mcp, "memtrace_session_context", {"session_id": sid})
        assert (
            "Skip the blog section — reasoning: It has no pricing data — outcome: success "
            "(Saved 40 requests) [requests_saved=40]" in text(context)
        )

        timeline = await call(
            mcp,
            "memtrace_timeline",
            {"since": "2h", "bucket": "1h", "group_by": "event_type", "agent_id": "crawler"},
        )
        table = text(timeline)
        assert (
            table.splitlines()[0].startswith("Timeline ") and "by event_type: 3 memories" in table
        )
        assert "| bucket start (UTC) | count |" in table and "page_crawled" in table
        assert data(timeline)["total"] == 3 and len(data(timeline)["buckets"]) in (2, 3)
        errors = await call(mcp, "memtrace_timeline", {"event_types": ["error"]})
        assert text(errors).endswith(": 0 memories.")

        forgot = await call(mcp, "memtrace_forget", {"memory_id": memory_id})
        assert text(forgot) == f"Forgot {memory_id}."
        again_recalled = await call(mcp, "memtrace_recall", {"agent_id": "crawler", "since": "1h"})
        assert memory_id not in text(again_recalled) and data(again_recalled)["count"] == 2
        twice = await mcp.call_tool("memtrace_forget", {"memory_id": memory_id})
        assert twice.is_error and "not found" in text(twice)


async def test_recall_new_only_is_the_agents_feed_and_advances(ops: ServiceOps) -> None:
    """What other agents wrote since this agent's last new_only recall, each memory once
    (docs/feed.md)."""
    async with connect(ops, default_agent_id="bob") as mcp:
        await call(mcp, "memtrace_remember", {"agent_id": "alice", "content": "found a bug"})
        await call(mcp, "memtrace_remember", {"content": "bob's own note"})
        await call(mcp, "memtrace_remember", {"agent_id": "carol", "content": "fixed it"})
        first = await call(mcp, "memtrace_recall", {"new_only": True})
        assert [m["content"] for m in data(first)["memories"]] == ["found a bug", "fixed it"]
        assert "New memories from other agents" in text(first)
        again = await call(mcp, "memtrace_recall", {"new_only": True})
        assert data(again)["memories"] == [] and "none found" in text(again)
        await call(mcp, "memtrace_remember", {"agent_id": "alice", "content": "deployed"})
        last = await call(mcp, "memtrace_recall", {"new_only": True, "limit": 5})
        assert [m["content"] for m in data(last)["memories"]] == ["deployed"]
        # the plain recall is unchanged: the agent's own memories
        own = await call(mcp, "memtrace_recall", {})
        assert [m["content"] for m in data(own)["memories"]] == ["bob's own note"]


async def test_duplicate_remember_is_reported_as_success(ops: ServiceOps) -> None:
    async with connect(ops) as mcp:
        args = {"agent_id": "bot", "content": "same thing", "dedup_key": "k-1"}
        first = await call(mcp, "memtrace_remember", args)
        second = await mcp.call_tool("memtrace_remember", args)
        assert not second.is_error
        assert text(second).startswith(f"Already remembered as {data(first)['id']}")
        assert data(second) == {"id": data(first)["id"], "duplicate": True}


BAD_INPUT = [
    ("memtrace_remember", {"content": "no agent"}, "agent_id"),
    ("memtrace_remember", {"agent_id": "bot", "content": ""}, "content"),
    ("memtrace_remember", {"agent_id": "9bad", "content": "x"}, "agent_id"),
    ("memtrace_remember", {"agent_id": "bot", "content": "x", "importance": 3}, "importance"),
    ("memtrace_remember", {"agent_id": "bot", "content": "x", "colour": "red"}, "colour"),
    ("memtrace_recall", {"agent_id": "bot", "limit": 0}, "limit"),
    ("memtrace_recall", {"agent_id": "bot", "since": "yesterday-ish"}, "since"),
    ("memtrace_search", {"memory_types": ["dream"]}, "memory_types"),
    ("memtrace_search", {"tags": ["no spaces allowed"]}, "tags"),
    ("memtrace_decide", {"agent_id": "bot", "decision": "x"}, "reasoning"),
    ("memtrace_session_create", {"agent_id": "bot", "metadata": "not an object"}, "metadata"),
    ("memtrace_session_context", {"session_id": "not a session"}, "not found"),
    ("memtrace_session_context", {"session_id": "s", "max_tokens": -1}, "max_tokens"),
    ("memtrace_agent_register", {"description": "nameless"}, "name"),
    ("memtrace_forget", {}, "memory_id"),
    ("memtrace_forget", {"memory_id": "not-an-id"}, "memory_id"),
    ("memtrace_forget", {"memory_id": "mem_01ARZ3NDEKTSV4RRFFQ69G5FAV"}, "not found"),
    ("memtrace_timeline", {"bucket": "hourly"}, "bucket"),
    ("memtrace_timeline", {"since": "30d", "bucket": "1m"}, "bucket"),
    ("memtrace_timeline", {"group_by": "colour"}, "group_by"),
    ("memtrace_timeline", {"event_types": ["not valid"]}, "event_types"),
    (
        "memtrace_outcome",
        {"decision_id": "not-an-id", "outcome": "success", "content": "x"},
        "decision_id",
    ),
    (
        "memtrace_outcome",
        {"decision_id": "mem_01ARZ3NDEKTSV4RRFFQ69G5FAV", "outcome": "great", "content": "x"},
        "outcome",
    ),
    (
        "memtrace_outcome",
        {"decision_id": "mem_01ARZ3NDEKTSV4RRFFQ69G5FAV", "outcome": "success", "content": "x"},
        "not found",
    ),
]


@pytest.mark.parametrize(("tool", "arguments", "named"), BAD_INPUT)
async def test_bad_input_is_an_error_result_naming_the_argument(
    ops: ServiceOps, tool: str, arguments: dict[str, Any], named: str
) -> None:
    async with connect(ops) as mcp:
        result = await mcp.call_tool(tool, arguments)
        assert result.is_error
        message = text(result)
        assert named in message
        assert "Traceback" not in message
        assert data(result)["error"] == message.split(" (hint:")[0]


async def test_bad_input_writes_nothing(ops: ServiceOps) -> None:
    async with connect(ops) as mcp:
        refused = await mcp.call_tool(
            "memtrace_remember", {"agent_id": "bot", "content": "x", "tags": ["ok", "not ok"]}
        )
        assert refused.is_error
        recalled = await call(mcp, "memtrace_recall", {"agent_id": "bot", "since": "1h"})
        assert data(recalled)["memories"] == []


async def test_unknown_tool_is_an_error_result(ops: ServiceOps) -> None:
    async with connect(ops) as mcp:
        result = await mcp.call_tool("memtrace_teleport", {})
        assert result.is_error
        assert "memtrace_teleport" in text(result)


async def test_list_and_object_arguments_sent_as_json_text_are_accepted(ops: ServiceOps) -> None:
    async with connect(ops) as mcp:
        stored = await call(
            mcp,
            "memtrace_remember",
            {
                "agent_id": "desktop",
                "content": "tags as text",
                "tags": '["a", "b"]',
                "metadata": '{"k": 1}',
            },
        )
        memory = data(stored)["memory"]
        assert memory["tags"] == ["a", "b"]
        assert memory["metadata"] == {"k": 1}
        # Strings stay strings, and broken JSON is still reported by validation.
        kept = await call(mcp, "memtrace_remember", {"agent_id": "desktop", "content": "[1]"})
        assert data(kept)["memory"]["content"] == "[1]"
        broken = await mcp.call_tool(
            "memtrace_remember", {"agent_id": "desktop", "content": "x", "tags": "[oops"}
        )
        assert broken.is_error
        assert "tags" in text(broken)


async def test_default_agent_never_narrows_search(ops: ServiceOps) -> None:
    # Found with the README's Claude Code set-up (MEMTRACE_AGENT_ID=claude-code): search was
    # silently limited to the default agent, with no way to search the team's memories.
    async with connect(ops) as plain:
        await call(plain, "memtrace_remember", {"agent_id": "teammate", "content": "teammate note"})
    async with connect(ops, default_agent_id="helper") as mcp:
        await call(mcp, "memtrace_remember", {"content": "my own note"})
        found = await call(mcp, "memtrace_search", {"content_contains": "note"})
        assert {m["agent_id"] for m in data(found)["results"]} == {"helper", "teammate"}
        only = await call(mcp, "memtrace_search", {"agent_id": "teammate"})
        assert [m["content"] for m in data(only)["results"]] == ["teammate note"]
        search = next(t for t in (await mcp.list_tools()).tools if t.name == "memtrace_search")
        assert search.input_schema["properties"]["agent_id"].get("default") is None
        assert (
            "never defaults to your own agent"
            in search.input_schema["properties"]["agent_id"]["description"]
        )
        assert "all agents unless you pass agent_id" in (search.description or "")


TOO_LONG_REASONING = "r" * (20 * 1024)
KEY_SHAPED = "mtk_" + "K" * 43


@pytest.mark.parametrize(
    ("tool", "arguments", "named"),
    [
        (
            "memtrace_remember",
            {"agent_id": "bot", "content": "x", "parent_id": "no/slash"},
            "parent_id",
        ),
        (
            "memtrace_remember",
            {"agent_id": "bot", "content": "x", "dedup_key": "k" * 200},
            "dedup_key",
        ),
        (
            "memtrace_decide",
            {"agent_id": "bot", "decision": "d", "reasoning": TOO_LONG_REASONING},
            "reasoning",
        ),
        (
            "memtrace_remember",
            {"agent_id": "bot", "content": "x", "metadata": {"n": 2**70}},
            "metadata",
        ),
    ],
)
async def test_every_validation_problem_is_an_error_result_naming_the_argument(
    ops: ServiceOps,
    tool: str,
    arguments: dict[str, Any],
    named: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Found with independent MCP clients: a parent_id off its pattern and a decide reasoning
    # over the metadata limit answered a bare "Error executing tool …" and logged a traceback
    # quoting the input.
    caplog.set_level(logging.DEBUG)
    async with connect(ops) as mcp:
        result = await mcp.call_tool(tool, arguments)
        assert result.is_error
        assert text(result).startswith(f"{named}:"), text(result)
        recalled = await call(mcp, "memtrace_recall", {"agent_id": "bot", "since": "1h"})
        assert data(recalled)["memories"] == []
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert not [r for r in caplog.records if "r" * 200 in r.getMessage()]


async def test_error_texts_are_redacted_like_rest_bodies(ops: ServiceOps) -> None:
    # Found by adversarial testing: MCP error texts echoed a key-shaped input in full.
    async with connect(ops) as mcp:
        for name, arguments in (
            ("memtrace_recall", {"agent_id": "bot", "since": KEY_SHAPED}),
            (KEY_SHAPED, {}),
        ):
            result = await mcp.call_tool(name, arguments)
            assert result.is_error
            assert KEY_SHAPED not in text(result) and "mtk_[redacted]" in text(result)
            assert KEY_SHAPED not in str(result.structured_content)


async def test_min_importance_zero_means_no_minimum(ops: ServiceOps) -> None:
    # Found with model-driven clients: models and UIs send 0 for "no minimum", which hid every
    # memory stored without an importance.
    async with connect(ops) as mcp:
        await call(mcp, "memtrace_remember", {"agent_id": "bot", "content": "no importance"})
        await call(
            mcp, "memtrace_remember", {"agent_id": "bot", "content": "some", "importance": 0.3}
        )
        everything = await call(mcp, "memtrace_search", {"min_importance": 0})
        assert {m["content"] for m in data(everything)["results"]} == {"no importance", "some"}
        some = await call(mcp, "memtrace_search", {"min_importance": 0.1})
        assert [m["content"] for m in data(some)["results"]] == ["some"]
