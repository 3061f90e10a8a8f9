"""Connect the real MCP SDK client to memtrace over each transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from memtrace.tools import TOOLS

TRANSPORTS = ("streamable-http", "sse")


@asynccontextmanager
async def http_client(transport: str, base_url: str, key: str) -> AsyncIterator[Client]:
    """An MCP client on ``/mcp`` (Streamable HTTP) or ``/sse`` (legacy SSE) with an API key."""
    headers = {"x-api-key": key}
    if transport == "sse":
        async with Client(sse_client(f"{base_url}/sse", headers=headers)) as client:
            yield client
        return
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(f"{base_url}/mcp", http_client=http)) as client,
    ):
        yield client


def text(result: CallToolResult) -> str:
    """The text of a tool result (memtrace results are one text block)."""
    return "".join(getattr(block, "text", "") for block in result.content)


def data(result: CallToolResult) -> Any:
    return result.structured_content


async def call(client: Client, name: str, arguments: dict[str, Any]) -> Any:
    result = await client.call_tool(name, arguments)
    assert not result.is_error, f"{name}: {text(result)}"
    return result


async def research_flow(params: StdioServerParameters) -> dict[str, Any]:
    """register → session_create → remember (3) → decide → recall → search → session_context."""
    async with Client(params) as client:
        assert len((await client.list_tools()).tools) == len(TOOLS)
        await call(client, "memtrace_agent_register", {"name": "researcher"})
        session = await call(client, "memtrace_session_create", {"agent_id": "researcher"})
        sid = data(session)["id"]
        ids = []
        for page in ("pricing", "careers", "blog"):
            stored = await call(
                client,
                "memtrace_remember",
                {
                    "agent_id": "researcher",
                    "content": f"Crawled the {page} page of example.com",
                    "event_type": "page_crawled",
                    "session_id": sid,
                },
            )
            ids.append(data(stored)["id"])
        await call(
            client,
            "memtrace_decide",
            {
                "agent_id": "researcher",
                "decision": "Target the enterprise plan first",
                "reasoning": "The pricing page shows enterprise is the only plan with SSO",
                "session_id": sid,
            },
        )
        recalled = await call(client, "memtrace_recall", {"agent_id": "researcher", "since": "1h"})
        assert data(recalled)["count"] == 4
        found = await call(client, "memtrace_search", {"content_contains": "careers"})
        assert [m["id"] for m in data(found)["results"]] == [ids[1]]
        context = await call(client, "memtrace_session_context", {"session_id": sid})
        markdown = text(context)
        assert "Target the enterprise plan first" in markdown
        assert "The pricing page shows enterprise is the only plan with SSO" in markdown
        assert "Crawled the blog page of example.com" in markdown
        return {"session_id": sid, "memory_ids": ids, "markdown": markdown}
