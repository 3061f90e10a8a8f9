"""An OpenAI chat-completions tool loop over the memtrace tools (function calling).

The tools come from :mod:`memtrace.tools` rendered for OpenAI; each tool call runs through the
same dispatcher as the MCP server, against memtrace over HTTP (``ClientOps``). Malformed JSON
arguments, unknown tools and invalid arguments go back to the model as the tool message so it
can correct itself; the loop stops after ``max_turns`` calls.
"""

from __future__ import annotations

from typing import Any

from openai import AsyncOpenAI

from cookbooks._common import run_tool, show
from memtrace.tools import MemoryOps, openai_tools


async def run_agent(
    llm: AsyncOpenAI,
    ops: MemoryOps,
    *,
    model: str,
    agent_id: str,
    system: str,
    task: str,
    max_turns: int,
) -> str:
    """Run one agent on one task until it answers without tools; returns its final text."""
    tools: Any = openai_tools(default_agent_id=agent_id)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system},
        {"role": "user", "content": task},
    ]
    for _ in range(max_turns):
        response = await llm.chat.completions.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            tools=tools,
        )
        message = response.choices[0].message
        text = message.content or ""
        if text:
            show(agent_id, text)
        calls = [call for call in message.tool_calls or [] if call.type == "function"]
        turn: dict[str, Any] = {"role": "assistant", "content": message.content}
        if calls:
            turn["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
                for call in calls
            ]
        messages.append(turn)
        if not calls:
            return text
        for call in calls:
            show(f"{agent_id} → {call.function.name}", call.function.arguments)
            output, _ = await run_tool(call.function.name, call.function.arguments, ops, agent_id)
            show("memtrace", output)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": output})
    show(agent_id, f"(stopped after {max_turns} model calls without a final answer)")
    return ""
