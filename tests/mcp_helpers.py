"""Connect the real MCP SDK client to memtrace over each transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

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
