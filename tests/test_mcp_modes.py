"""Which mode ``memtrace-mcp`` runs in, from its environment (docs/configuration.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mcp_server.stdio import DEFAULT_URL, ops_from_env, remote_url
from memtrace.client.ops import ClientOps
from memtrace.domain.errors import ConfigError


def test_modes() -> None:
    assert remote_url({"MEMTRACE_URL": "http://m:1", "MEMTRACE_DATA_DIR": "/d"}) == "http://m:1"
    assert remote_url({"MEMTRACE_API_KEY": "k"}) == DEFAULT_URL == "http://localhost:9100"
    assert remote_url({"MEMTRACE_DATA_DIR": "/d"}) is None
    assert remote_url({"MEMTRACE_STORAGE_DATA_DIR": "/d"}) is None
    assert remote_url({}, local=True) is None
    with pytest.raises(ConfigError, match="MEMTRACE_DATA_DIR"):
        remote_url({"MEMTRACE_URL": " ", "MEMTRACE_DATA_DIR": ""})


async def test_an_api_key_alone_is_remote_mode_on_localhost() -> None:
    async with ops_from_env({"MEMTRACE_API_KEY": "mtk_" + "A" * 43 + "="}) as ops:
        assert isinstance(ops, ClientOps)
        assert ops.client.base_url == DEFAULT_URL


@pytest.mark.slow  # starts an interpreter
def test_remote_mode_loads_no_server_side_module() -> None:
    """memtrace-mcp in remote mode starts without the runtime, stores or metadata layer (its
    start-up is the MCP SDK's import plus the tool schemas, bench/README.md "Start-up")."""
    server_side = ["memtrace.runtime", "memtrace.tenancy", "memtrace.metadata.catalog"]
    code = (
        "import sys, mcp_server.stdio, memtrace.cli.main\n"
        f"print([m for m in {server_side!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
