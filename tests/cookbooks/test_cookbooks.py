"""Every cookbook runs as its README says (offline), writes what it claims, and remembers.

The commands come from each folder's README; the cookbooks start their own embedded memtrace
server (a fresh data dir per test) and drive the real anthropic/openai clients against the
scripted endpoint. Afterwards the app on the same data dir (in process) is asked, through the
SDK, for every memory the scripts claim to write; the recorded requests show what the model saw.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from cookbooks._common import FIRST_RUN
from cookbooks._offline import system_prompts
from cookbooks._scenarios import ACME_FACT, RESEARCH_FACTS
from cookbooks.openai_agents import support_agent
from http_api.app import create_app
from memtrace import AsyncMemtrace, SearchQuery
from memtrace.config import load_settings
from memtrace.runtime import Runtime
from tests.client.conftest import BASE
from tests.cookbooks.helpers import (
    COOKBOOKS,
    Run,
    claimed_writes,
    cookbook_api_key,
    cookbook_env,
    readme_commands,
    run_command,
)

FOLDERS = {
    "claude": ("single_agent", "multi_agent"),
    "openai": ("single_agent", "multi_agent"),
    "openai_agents": ("support_agent",),
}


def _claims(module: str) -> list[tuple[str, str]]:
    """What a cookbook's offline script stores: (agent_id, content)."""
    cookbook = importlib.import_module(module)
    return claimed_writes(cookbook.OFFLINE_SCRIPT, getattr(cookbook, "AGENT_ID", None))


def _run_readme(folder: str, tmp_path: Path) -> list[Run]:
    commands = readme_commands(folder)
    modules = [command[2] for command in commands]
    for name in FOLDERS[folder]:
        # each cookbook is run twice by its README: the second run must remember the first
        assert modules.count(f"cookbooks.{folder}.{name}") >= 2, modules
    env = cookbook_env(tmp_path)
    runs = []
    for index, command in enumerate(commands):
        run = run_command(command, env, tmp_path / f"requests-{index}.jsonl")
        assert run.result.returncode == 0, run.result.stdout + run.result.stderr
        assert run.requests, "the cookbook never called the scripted model"
        runs.append(run)
    return runs


@asynccontextmanager
async def _memtrace_on(data_dir: Path) -> AsyncIterator[AsyncMemtrace]:
    """The SDK with the cookbooks' key, on the real app serving ``data_dir`` in process."""
    runtime = Runtime(load_settings(None, {"storage.data_dir": data_dir}))
    await runtime.start()
    try:
        asgi = httpx.ASGITransport(app=create_app(runtime, manage_runtime=False))
        async with AsyncMemtrace(BASE, cookbook_api_key(data_dir), transport=asgi) as client:
            yield client
    finally:
        await runtime.close()


def _assert_claimed_writes_stored(modules: set[str], data_dir: Path) -> None:
    async def check() -> None:
        async with _memtrace_on(data_dir) as client:
            for module in sorted(modules):
                claims = _claims(module)
                assert claims, module
                for agent_id, content in claims:
                    found = await client.search_memories(
                        SearchQuery(agent_id=agent_id, content_contains=content, limit=10)
                    )
                    assert [m for m in found.results if m.content == content], (module, content)
            if any(module.endswith("multi_agent") for module in modules):
                await _assert_team_shares_sessions(client)

    asyncio.run(check())


async def _assert_team_shares_sessions(client: AsyncMemtrace) -> None:
    """Team decisions are session-scoped, in the session holding the researcher's facts."""
    decisions = await client.search_memories(SearchQuery(memory_types=["decision"], limit=100))
    team = [d for d in decisions.results if d.agent_id in ("writer", "reviewer")]
    assert {d.agent_id for d in team} == {"writer", "reviewer"}
    for decision in team:
        assert decision.session_id, decision
        session = await client.get_session_memories(decision.session_id)
        assert {m.agent_id for m in session.memories} == {"researcher", "writer", "reviewer"}
        assert set(RESEARCH_FACTS) <= {m.content for m in session.memories}


def _assert_second_run_remembers(runs: list[Run]) -> None:
    for module in {run.module for run in runs}:
        first, second = [run for run in runs if run.module == module][:2]
        claims = [content for _, content in _claims(module)]
        first_prompt = system_prompts(first.requests)[0]
        second_prompt = system_prompts(second.requests)[0]
        assert not [c for c in claims if c in first_prompt]
        assert [c for c in claims if c in second_prompt], (module, second_prompt)


@pytest.mark.slow
@pytest.mark.parametrize("folder", ["claude", "openai"])
def test_readme_commands_run_offline_store_and_remember(folder: str, tmp_path: Path) -> None:
    runs = _run_readme(folder, tmp_path)
    _assert_claimed_writes_stored({run.module for run in runs}, tmp_path / "cookbook-data")
    _assert_second_run_remembers(runs)

    first_single, second_single = [r for r in runs if r.module.endswith("single_agent")][:2]
    assert FIRST_RUN in system_prompts(first_single.requests)[0]
    assert FIRST_RUN not in system_prompts(second_single.requests)[0]
    single = first_single
    assert ACME_FACT in single.result.stdout  # the transcript shows the tool results
    assert "unknown tool 'memtrace_forget_everything'" in single.result.stdout
    multi = next(r for r in runs if r.module.endswith("multi_agent"))
    writer_prompt = next(p for p in system_prompts(multi.requests) if "You are the writer" in p)
    # the writer starts with what the researcher stored in the shared session
    assert all(fact in writer_prompt for fact in RESEARCH_FACTS)


@pytest.mark.slow
def test_support_agent_readme_commands_continue_the_conversation(tmp_path: Path) -> None:
    runs = _run_readme("openai_agents", tmp_path)
    _assert_claimed_writes_stored({run.module for run in runs}, tmp_path / "cookbook-data")
    _assert_second_run_remembers(runs)

    first, second = runs[:2]
    assert "Tool 'crm_lookup' not found" in first.result.stdout  # unknown tool: run goes on
    # The persistent MemtraceSession replays the first run's conversation into the second.
    replayed = json.dumps(second.requests[0]["body"]["messages"])
    assert json.dumps(support_agent.FIRST_CONTACT)[1:-1] in replayed
    assert json.dumps(support_agent.FOLLOW_UP)[1:-1] in replayed
    assert support_agent.DANA_FACT in system_prompts(second.requests)[0]


def test_every_readme_command_names_a_cookbook_that_exists() -> None:
    for folder in FOLDERS:
        text = (COOKBOOKS / folder / "README.md").read_text()
        modules = set(re.findall(r"python -m (cookbooks\.[\w.]+)", text))
        assert modules == {f"cookbooks.{folder}.{name}" for name in FOLDERS[folder]}, folder
        for module in modules:
            assert importlib.util.find_spec(module) is not None, module
