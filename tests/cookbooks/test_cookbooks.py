"""Every cookbook runs as its README says (offline), writes what it claims, and remembers.

The commands come from each folder's README; the cookbooks start their own embedded memtrace
server (a fresh data dir per test) and drive the real anthropic/openai clients against the
scripted endpoint. Afterwards a memtrace server on the same data dir is asked, through the SDK,
for every memory the scripts claim to write; the recorded requests show what the model saw.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from cookbooks._common import FIRST_RUN
from cookbooks._offline import system_prompts
from cookbooks._scenarios import ACME_FACT, RESEARCH_FACTS
from memtrace import Memtrace, SearchQuery
from tests.cookbooks.helpers import (
    Run,
    claimed_writes,
    cookbook_api_key,
    cookbook_env,
    readme_commands,
    run_command,
)
from tests.helpers import ServerProcess

FOLDERS = {
    "claude": ("single_agent", "multi_agent"),
    "openai": ("single_agent", "multi_agent"),
}


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


def _assert_claimed_writes_stored(modules: set[str], data_dir: Path) -> None:
    server = ServerProcess(data_dir).start()
    try:
        with Memtrace(server.url, cookbook_api_key(data_dir)) as client:
            for module in sorted(modules):
                claims = claimed_writes(importlib.import_module(module).OFFLINE_SCRIPT)
                assert claims, module
                for agent_id, content in claims:
                    found = client.search_memories(
                        SearchQuery(agent_id=agent_id, content_contains=content, limit=10)
                    )
                    assert [m for m in found.results if m.content == content], (module, content)
    finally:
        server.stop()


def _assert_second_run_remembers(runs: list[Run]) -> None:
    for module in {run.module for run in runs}:
        first, second = [run for run in runs if run.module == module][:2]
        claims = [c for _, c in claimed_writes(importlib.import_module(module).OFFLINE_SCRIPT)]
        first_prompt = system_prompts(first.requests)[0]
        second_prompt = system_prompts(second.requests)[0]
        assert FIRST_RUN in first_prompt
        assert not [c for c in claims if c in first_prompt]
        assert FIRST_RUN not in second_prompt
        assert [c for c in claims if c in second_prompt], (module, second_prompt)


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_readme_commands_run_offline_store_and_remember(folder: str, tmp_path: Path) -> None:
    runs = _run_readme(folder, tmp_path)
    _assert_claimed_writes_stored({run.module for run in runs}, tmp_path / "cookbook-data")
    _assert_second_run_remembers(runs)

    single = next(r for r in runs if r.module.endswith("single_agent"))
    assert ACME_FACT in single.result.stdout  # the transcript shows the tool results
    assert "unknown tool 'memtrace_forget_everything'" in single.result.stdout
    multi = next(r for r in runs if r.module.endswith("multi_agent"))
    writer_prompt = next(p for p in system_prompts(multi.requests) if "You are the writer" in p)
    # the writer starts with what the researcher stored in the shared session
    assert all(fact in writer_prompt for fact in RESEARCH_FACTS)
