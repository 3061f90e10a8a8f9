"""The cookbooks' edges: no LLM key, an external server, max turns, the scripted endpoint."""

from __future__ import annotations

from pathlib import Path

import anthropic
import openai
import pytest

from cookbooks._offline import OfflineEndpoint, Step, ToolCall, system_prompts
from memtrace import Memtrace, SearchQuery
from tests.cookbooks.helpers import cookbook_env, run_command
from tests.helpers import ServerProcess, run_cli

pytestmark = pytest.mark.slow  # starts processes or servers (docs/testing.md)


@pytest.mark.parametrize(
    ("module", "key"),
    [
        ("cookbooks.claude.single_agent", "ANTHROPIC_API_KEY"),
        ("cookbooks.claude.multi_agent", "ANTHROPIC_API_KEY"),
        ("cookbooks.openai.single_agent", "OPENAI_API_KEY"),
        ("cookbooks.openai.multi_agent", "OPENAI_API_KEY"),
    ],
)
def test_without_llm_key_or_offline_says_what_to_do(module: str, key: str, tmp_path: Path) -> None:
    run = run_command(["python", "-m", module], cookbook_env(tmp_path), tmp_path / "r.jsonl")
    assert run.result.returncode == 2
    assert key in run.result.stderr and "--offline" in run.result.stderr
    assert "Traceback" not in run.result.stderr
    assert not (tmp_path / "cookbook-data").exists()  # nothing started before the check


def test_uses_the_server_named_by_memtrace_url(server: ServerProcess, tmp_path: Path) -> None:
    org_id = run_cli("org", "create", "external", data_dir=server.data_dir).stdout.strip()
    key = run_cli(
        "key", "create", "--org", org_id, "--name", "cb", data_dir=server.data_dir
    ).stdout.strip()
    env = cookbook_env(tmp_path, MEMTRACE_URL=server.url, MEMTRACE_API_KEY=key)
    command = ["python", "-m", "cookbooks.openai.single_agent", "--offline"]
    run = run_command(command, env, tmp_path / "r.jsonl")
    assert run.result.returncode == 0, run.result.stderr
    assert "embedded server" not in run.result.stdout
    assert not (tmp_path / "cookbook-data").exists()
    with Memtrace(server.url, key) as client:
        found = client.search_memories(SearchQuery(agent_id="billing_assistant_gpt"))
    assert {m.memory_type for m in found.results} == {"entity", "episodic", "decision"}


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("cookbooks.claude.single_agent", "stopped after 2 model calls"),
        ("cookbooks.openai.multi_agent", "stopped after 2 model calls"),
        ("cookbooks.openai_agents.support_agent", "stopped: too many model calls"),
    ],
)
def test_max_turns_stops_the_loop_cleanly(module: str, message: str, tmp_path: Path) -> None:
    command = ["python", "-m", module, "--offline", "--max-turns", "2"]
    run = run_command(command, cookbook_env(tmp_path), tmp_path / "r.jsonl")
    assert run.result.returncode == 0, run.result.stderr
    assert message in run.result.stdout
    assert "Traceback" not in run.result.stderr


def test_memtrace_url_without_key_is_refused(tmp_path: Path) -> None:
    env = cookbook_env(tmp_path, MEMTRACE_URL="http://127.0.0.1:9")
    command = ["python", "-m", "cookbooks.claude.single_agent", "--offline"]
    run = run_command(command, env, tmp_path / "r.jsonl")
    assert run.result.returncode == 2
    assert "MEMTRACE_API_KEY" in run.result.stderr


async def test_scripted_endpoint_speaks_anthropic_and_checks_tool_results() -> None:
    steps = [
        Step("hi", [ToolCall("memtrace_recall", {"session_id": "$SESSION"})]),
        Step("done"),
    ]
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
