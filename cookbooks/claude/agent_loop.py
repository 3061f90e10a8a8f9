"""A Claude tool loop over the memtrace tools (Anthropic Messages API).

The tools come from :mod:`memtrace.tools` rendered for Anthropic; each ``tool_use`` block runs
through the same dispatcher as the MCP server, against memtrace over HTTP (``ClientOps``).
Errors (unknown tool, invalid arguments, server refusals) go back to Claude as
``is_error`` tool results so it can correct itself; the loop stops after ``max_turns`` calls.
"""

from __future__ import annotations

import json
from typing import Any

from anthropic import AsyncAnthropic

from cookbooks._common import run_tool, show
from memtrace.tools import MemoryOps, anthropic_tools

MAX_OUTPUT_TOKENS = 1024


async def run_agent(
    llm: AsyncAnthropic,
    ops: MemoryOps,
    *,
    model: str,
    agent_id: str,
    system: str,
    task: str,
    max_turns: int,
) -> str:
    """Run one agent on one task until it answers without tools; returns its final text."""
    tools: Any = anthropic_tools(default_agent_id=agent_id)
    messages: list[dict[str, Any]] = [{"role": "user", "content": task}]
    for _ in range(max_turns):
        response = await llm.messages.create(
            model=model,
            max_tokens=MAX_OUTPUT_TOKENS,
            system=system,
            tools=tools,
            messages=messages,  # type: ignore[arg-type]
        )
        assistant: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        text = ""
        for block in response.content:
            if block.type == "text":
                text += block.text
                assistant.append({"type": "text", "text": block.text})
            elif block.type == "tool_use":
                assistant.append(
                    {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
                )
        if text:
            show(agent_id, text)
        messages.append({"role": "assistant", "content": assistant})
        for block in response.content:
            if block.type != "tool_use":
                continue
            show(f"{agent_id} → {block.name}", json.dumps(block.input))
            output, is_error = await run_tool(block.name, block.input, ops, agent_id)
            show("memtrace", output)
            results.append(
                {
                    "type": "tool_result",
                    "tool_use_id": block.id,
                    "content": output,
                    "is_error": is_error,
                }
            )
        if not results:
            return text
        messages.append({"role": "user", "content": results})
    show(agent_id, f"(stopped after {max_turns} model calls without a final answer)")
    return ""
