"""The scripted model of ``--offline``: the real anthropic and openai clients talk to it, and it
checks that tool calls are answered (in process: the endpoint is a thread on 127.0.0.1)."""

from __future__ import annotations

import openai
import pytest

from cookbooks._offline import OfflineEndpoint, Step, ToolCall, system_prompts


async def test_scripted_endpoint_speaks_anthropic_and_checks_tool_results() -> None:
    steps = [
        Step("hi", [ToolCall("memtrace_recall", {"session_id": "$SESSION"})]),
        Step("done"),
    ]
    import anthropic  # here, not at the top: ~2.5 s of CPU no other test of a worker needs

    with OfflineEndpoint(steps) as endpoint:
        llm = anthropic.AsyncAnthropic(base_url=endpoint.url, api_key="k", max_retries=0)
        first = await llm.messages.create(
            model="m",
            max_tokens=10,
            system="session sess_abc123 is yours",
            messages=[{"role": "user", "content": "go"}],
        )
        tool_use = first.content[1]
        assert tool_use.type == "tool_use" and first.stop_reason == "tool_use"
        assert tool_use.input == {"session_id": "sess_abc123"}
        history: list[anthropic.types.MessageParam] = [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "calling"},
            {"role": "user", "content": "no tool result"},
        ]
        with pytest.raises(anthropic.BadRequestError, match="without a tool_result"):
            await llm.messages.create(model="m", max_tokens=10, messages=history)
        await llm.close()
        assert system_prompts(endpoint.model.requests)[0] == "session sess_abc123 is yours"


async def test_scripted_endpoint_speaks_openai_and_reports_exhaustion() -> None:
    with OfflineEndpoint([Step(tool_calls=[ToolCall("x", "{broken")])]) as endpoint:
        llm = openai.AsyncOpenAI(base_url=f"{endpoint.url}/v1", api_key="k", max_retries=0)
        reply = await llm.chat.completions.create(
            model="m",
            messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
        )
        call = reply.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert call.function.arguments == "{broken"  # type: ignore[union-attr]
        messages: list[openai.types.chat.ChatCompletionMessageParam] = [
            {"role": "user", "content": "u"},
            {"role": "tool", "tool_call_id": call.id, "content": "r"},
        ]
        with pytest.raises(openai.BadRequestError, match="only 1 steps"):
            await llm.chat.completions.create(model="m", messages=messages)
        await llm.close()
