"""The cookbooks' edges: no LLM key, an external server, max turns (the scripted endpoint
itself: tests/cookbooks/test_offline_endpoint.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from memtrace import Memtrace, SearchQuery
from tests.cookbooks.helpers import cookbook_env, run_command
from tests.helpers import Tenant

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


def test_uses_the_server_named_by_memtrace_url(tenant: Tenant, tmp_path: Path) -> None:
    env = cookbook_env(tmp_path, MEMTRACE_URL=tenant.url, MEMTRACE_API_KEY=tenant.key)
    command = ["python", "-m", "cookbooks.openai.single_agent", "--offline"]
    run = run_command(command, env, tmp_path / "r.jsonl")
    assert run.result.returncode == 0, run.result.stderr
    assert "embedded server" not in run.result.stdout
    assert not (tmp_path / "cookbook-data").exists()
    with Memtrace(tenant.url, tenant.key) as client:
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
def test_max_turns_stops_the_loop_cleanly(
    module: str, message: str, tenant: Tenant, tmp_path: Path
) -> None:
    # On a running server (MEMTRACE_URL): the loop, not the embedded server, is under test
    # here, and the README walk-throughs start the embedded one.
    env = cookbook_env(tmp_path, MEMTRACE_URL=tenant.url, MEMTRACE_API_KEY=tenant.key)
    command = ["python", "-m", module, "--offline", "--max-turns", "2"]
    run = run_command(command, env, tmp_path / "r.jsonl")
    assert run.result.returncode == 0, run.result.stderr
    assert message in run.result.stdout
    assert "Traceback" not in run.result.stderr


def test_memtrace_url_without_key_is_refused(tmp_path: Path) -> None:
    env = cookbook_env(tmp_path, MEMTRACE_URL="http://127.0.0.1:9")
    command = ["python", "-m", "cookbooks.claude.single_agent", "--offline"]
    run = run_command(command, env, tmp_path / "r.jsonl")
    assert run.result.returncode == 2
    assert "MEMTRACE_API_KEY" in run.result.stderr
