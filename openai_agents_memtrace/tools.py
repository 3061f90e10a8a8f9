"""The four tools of ``openai-agents-memtrace`` 0.2: remember, recall, search, decide."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from agents import FunctionTool
from agents.tool_context import ToolContext
from pydantic import BaseModel

from memtrace.client import AddMemoryRequest, AsyncMemtrace, ListOptions, SearchQuery

_TYPES = ["episodic", "decision", "entity", "session"]
_MAX_LIMIT = 200  # 0.2 capped the model's limit at 200


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _strings(description: str) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string"}, "description": description}


def _tool(
    name: str,
    description: str,
    properties: dict[str, Any],
    required: list[str],
    run: Callable[[dict[str, Any]], Awaitable[BaseModel]],
) -> FunctionTool:
    async def on_invoke(ctx: ToolContext[Any], args_json: str) -> str:
        result = await run(json.loads(args_json or "{}"))
        return json.dumps(result.model_dump(mode="json"), default=str)

    schema = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    return FunctionTool(
        name=name,
        description=description,
        params_json_schema=schema,
        on_invoke_tool=on_invoke,
        strict_json_schema=False,
    )


def create_memtrace_tools(
    client: AsyncMemtrace, agent_id: str, *, session_id: str | None = None
) -> list[FunctionTool]:
    """remember, recall, search and decide as Agents SDK tools.

    Args:
        client: The async client the tools call.
        agent_id: The default agent of every call (the model may pass another ``agent_id``).
        session_id: The default session of remember and recall.
    """

    async def remember(args: dict[str, Any]) -> BaseModel:
        return await client.add_memory(
            AddMemoryRequest(
                agent_id=args.get("agent_id", agent_id),
                content=args["content"],
                memory_type=args.get("memory_type", "episodic"),
                event_type=args.get("event_type", "general"),
                session_id=args.get("session_id", session_id),
                tags=args.get("tags"),
                importance=args.get("importance"),
                metadata=args.get("metadata"),
            )
        )

    async def recall(args: dict[str, Any]) -> BaseModel:
        return await client.list_memories(
            ListOptions(
                agent_id=args.get("agent_id", agent_id),
                since=args.get("since", "24h"),
                session_id=args.get("session_id", session_id),
                memory_type=args.get("memory_type"),
                limit=min(args.get("limit", 50), _MAX_LIMIT),
                order="desc",
            )
        )

    async def search(args: dict[str, Any]) -> BaseModel:
        return await client.search_memories(
            SearchQuery(
                agent_id=args.get("agent_id", agent_id),
                content_contains=args.get("content_contains"),
                memory_types=args.get("memory_types"),
                tags=args.get("tags"),
                since=args.get("since"),
                min_importance=args.get("min_importance"),
                limit=min(args.get("limit", 50), _MAX_LIMIT),
                order="desc",
            )
        )

    async def decide(args: dict[str, Any]) -> BaseModel:
        return await client.decide(
            args.get("agent_id", agent_id), args["decision"], args["reasoning"]
        )

    override = _string("Override default agent ID")
    return [
        _tool(
            "memtrace_remember",
            "Store a memory. Use this to record actions, observations, events, or any "
            "information the agent should remember later.",
            {
                "content": _string("Memory content text"),
                "memory_type": _string(
                    "Memory type: episodic (default), decision, entity, session", enum=_TYPES
                ),
                "event_type": _string(
                    "Event type (e.g. observation, action, error). Default: general"
                ),
                "session_id": _string("Session ID to scope this memory to"),
                "tags": _strings("Tags for categorization"),
                "importance": {"type": "number", "description": "Importance score 0.0 to 1.0"},
                "metadata": {"type": "object", "description": "Arbitrary key-value metadata"},
                "agent_id": _string("Override default agent ID (for cross-agent memory)"),
            },
            ["content"],
            remember,
        ),
        _tool(
            "memtrace_recall",
            "Retrieve recent memories for an agent. Returns memories in reverse "
            "chronological order.",
            {
                "since": _string("Time window (e.g. 2h, 24h, 7d). Default: 24h"),
                "session_id": _string("Filter by session ID"),
                "memory_type": _string("Filter by memory type", enum=_TYPES),
                "limit": {"type": "integer", "description": "Max results. Default: 50"},
                "agent_id": override,
            },
            [],
            recall,
        ),
        _tool(
            "memtrace_search",
            "Search memories with structured filters: by content text, memory types, tags, "
            "importance, and time range.",
            {
                "content_contains": _string("Search text within memory content"),
                "memory_types": _strings(
                    "Filter by memory types (episodic, decision, entity, session)"
                ),
                "tags": _strings("Filter by tags"),
                "since": _string("Time window (e.g. 2h, 24h)"),
                "min_importance": {
                    "type": "number",
                    "description": "Minimum importance score 0.0 to 1.0",
                },
                "limit": {"type": "integer", "description": "Max results. Default: 50"},
                "agent_id": override,
            },
            [],
            search,
        ),
        _tool(
            "memtrace_decide",
            "Log a decision with reasoning. Creates an auditable record of what was decided "
            "and why.",
            {
                "decision": _string("The decision that was made"),
                "reasoning": _string("Why this decision was made"),
                "agent_id": override,
            },
            ["decision", "reasoning"],
            decide,
        ),
    ]
