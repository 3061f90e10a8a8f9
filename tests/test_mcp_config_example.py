"""``.mcp.json.example`` is valid, names the installed console script, and its local entry
really starts a working server (placeholders replaced)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.helpers import TEST_ENV

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = json.loads((ROOT / ".mcp.json.example").read_text())


def test_example_has_a_local_and_a_remote_entry() -> None:
    servers = EXAMPLE["mcpServers"]
    local, remote = servers["memtrace"], servers["memtrace-remote"]
    assert local["command"] == remote["command"] == "memtrace-mcp"
    assert (Path(sys.executable).parent / "memtrace-mcp").exists()
    assert "MEMTRACE_URL" not in local["env"] and "MEMTRACE_DATA_DIR" in local["env"]
    assert {"MEMTRACE_URL", "MEMTRACE_API_KEY"} <= set(remote["env"])


@pytest.mark.slow
async def test_local_entry_starts_a_working_server(tmp_path: Path) -> None:
    local = EXAMPLE["mcpServers"]["memtrace"]
    env = {**local["env"], **TEST_ENV, "MEMTRACE_DATA_DIR": str(tmp_path / "data")}
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    command = shutil.which(local["command"], path=env["PATH"])
    assert command is not None
    params = StdioServerParameters(command=command, args=local["args"], env=env)
    async with Client(params) as client:
        result = await client.call_tool("memtrace_remember", {"content": "configured"})
        assert not result.is_error
        assert result.structured_content["memory"]["agent_id"] == local["env"]["MEMTRACE_AGENT_ID"]
