"""Against a real ``memtrace serve`` (uvicorn on 127.0.0.1): a program written for the
published memtrace-sdk 0.2.0 runs unchanged, and the clients read their env configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from memtrace import AsyncMemtrace, Memtrace
from memtrace.domain.errors import ConfigError
from tests.helpers import Tenant

PROGRAM = Path(__file__).with_name("sdk020_program.py")


def test_sdk020_program_runs_unchanged(tenant: Tenant) -> None:
    result = subprocess.run(
        [sys.executable, str(PROGRAM), tenant.url, tenant.key],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "program: OK" in result.stdout


async def test_env_configuration_sync_and_async(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMTRACE_URL", tenant.url + "/")
    monkeypatch.setenv("MEMTRACE_API_KEY", tenant.key)
    async with AsyncMemtrace() as aclient:
        stored = await aclient.remember("env_agent", "configured from the environment")
        assert aclient.base_url == tenant.url
    with Memtrace() as client:
        assert client.get_memory(stored.id).content == "configured from the environment"
        assert [m.id for m in client.iter_memories()] == [stored.id]


def test_missing_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        Memtrace("http://127.0.0.1:1")
    assert "MEMTRACE_API_KEY" in info.value.message
