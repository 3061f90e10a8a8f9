"""``memtrace-mcp`` as a real stdio subprocess driven by the MCP SDK's stdio client, in
embedded mode (alone, and beside a running ``memtrace serve`` on the same data dir) and in
remote mode against a real ``memtrace serve``."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.helpers import (
    TEST_ENV,
    ServerProcess,
    Tenant,
    admin,
    free_port,
    memtrace_cmd,
    wait_until,
)
from tests.mcp_helpers import call, data, research_flow, text

pytestmark = pytest.mark.slow  # starts processes or servers (docs/testing.md)

MEMTRACE_MCP = str(Path(sys.executable).parent / "memtrace-mcp")


def stdio_params(env: dict[str, str], command: list[str] | None = None) -> StdioServerParameters:
    command = command or [MEMTRACE_MCP]
    return StdioServerParameters(
        command=command[0], args=command[1:], env={**os.environ, **TEST_ENV, **env}
    )


async def test_embedded_mode_flow(tmp_path: Path) -> None:
    data_dir = tmp_path / "local"
    result = await research_flow(stdio_params({"MEMTRACE_DATA_DIR": str(data_dir)}))
    assert (data_dir / "memtrace.db").exists()
    # A second run on the same directory sees what the first remembered.
    async with Client(stdio_params({"MEMTRACE_DATA_DIR": str(data_dir)})) as client:
        context = await call(
            client, "memtrace_session_context", {"session_id": result["session_id"]}
        )
        assert "Target the enterprise plan first" in text(context)


async def test_embedded_mode_beside_a_running_server(tmp_path: Path) -> None:
    """Two processes on the same SQLite files: what MCP writes, the server serves at once."""
    server = ServerProcess(tmp_path / "shared").start()
    try:
        result = await research_flow(stdio_params({"MEMTRACE_DATA_DIR": str(server.data_dir)}))
        rest = httpx.Client(base_url=server.url, headers={"x-api-key": server.admin_key or ""})
        for memory_id in result["memory_ids"]:
            assert rest.get(f"/api/v1/memories/{memory_id}").status_code == 200
        created = rest.post(
            "/api/v1/memories", json={"agent_id": "researcher", "content": "from the server"}
        )
        assert created.status_code == 201
        rest.close()
        async with Client(stdio_params({"MEMTRACE_DATA_DIR": str(server.data_dir)})) as client:
            found = await call(client, "memtrace_search", {"content_contains": "from the server"})
            assert [m["id"] for m in data(found)["results"]] == [created.json()["id"]]
    finally:
        server.stop()


async def test_remote_mode_flow(tenant: Tenant, tmp_path: Path) -> None:
    env = {
        "MEMTRACE_URL": tenant.url,
        "MEMTRACE_API_KEY": tenant.key,
        # Remote mode must not touch a local data dir: point it somewhere that stays empty.
        "MEMTRACE_DATA_DIR": str(tmp_path / "unused"),
    }
    result = await research_flow(stdio_params(env))
    assert not (tmp_path / "unused").exists()
    response = httpx.get(
        f"{tenant.url}/api/v1/sessions/{result['session_id']}/memories",
        headers={"x-api-key": tenant.key},
    )
    assert response.status_code == 200
    assert response.json()["count"] == 4


async def test_remote_mode_reports_server_errors_as_tool_errors(
    shared_server: ServerProcess,
) -> None:
    env = {"MEMTRACE_URL": shared_server.url, "MEMTRACE_API_KEY": "mtk_" + "A" * 43}
    async with Client(stdio_params(env)) as client:
        refused = await client.call_tool("memtrace_remember", {"agent_id": "bot", "content": "hi"})
        assert refused.is_error
        assert "API key" in text(refused)


async def test_memtrace_mcp_command_and_agent_id_from_env(tmp_path: Path) -> None:
    env = {"MEMTRACE_AGENT_ID": "helper"}
    params = stdio_params(env, memtrace_cmd("mcp", "--data-dir", str(tmp_path / "d")))
    async with Client(params) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert "agent_id" not in tools["memtrace_remember"].input_schema["required"]
        stored = await call(client, "memtrace_remember", {"content": "no agent id needed"})
        assert data(stored)["memory"]["agent_id"] == "helper"


def test_remote_mode_without_a_key_fails_with_one_line() -> None:
    result = subprocess.run(
        [MEMTRACE_MCP],
        env={**os.environ, **TEST_ENV, "MEMTRACE_URL": "http://127.0.0.1:9"},
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "memtrace-mcp: MEMTRACE_API_KEY is required when MEMTRACE_URL is set (remote mode)"
    ]
    assert result.stdout == ""


def test_embedded_mode_without_org_default_fails_with_one_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    admin(data_dir, "org", "create", "acme")  # a deployment without org_default
    result = subprocess.run(
        [MEMTRACE_MCP],
        env={**os.environ, **TEST_ENV, "MEMTRACE_DATA_DIR": str(data_dir)},
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "org_default does not exist" in lines[0]


async def test_remote_mode_with_the_server_down_reports_a_tool_error() -> None:
    env = {"MEMTRACE_URL": f"http://127.0.0.1:{free_port()}", "MEMTRACE_API_KEY": "mtk_" + "A" * 43}
    async with Client(stdio_params(env)) as client:
        result = await client.call_tool("memtrace_recall", {"agent_id": "bot"})
        assert result.is_error
        assert "Traceback" not in text(result)
        assert result.structured_content["status"] >= 500


def without_memtrace_env() -> dict[str, str]:
    """The environment with the test settings and no server or data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMTRACE_")}
    return {**env, **TEST_ENV}


def test_without_a_mode_it_says_what_to_set_and_creates_nothing(tmp_path: Path) -> None:
    """Neither a server nor a data directory: one line, and no ./data in the client's cwd."""
    result = subprocess.run(
        [MEMTRACE_MCP],
        env=without_memtrace_env(),
        cwd=tmp_path,
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "memtrace-mcp: set MEMTRACE_URL and MEMTRACE_API_KEY to use a memtrace server "
        "(MEMTRACE_API_KEY alone means http://localhost:9100), or MEMTRACE_DATA_DIR to open a "
        "local data directory"
    ]
    assert list(tmp_path.iterdir()) == []


async def test_go_era_config_only_an_api_key_calls_localhost_9100(tmp_path: Path) -> None:
    """The Go memtrace-mcp's configuration (MEMTRACE_API_KEY, no URL) calls the server on
    localhost:9100, never a private local store."""
    params = StdioServerParameters(
        command=MEMTRACE_MCP,
        env={**without_memtrace_env(), "MEMTRACE_API_KEY": "mtk_" + "A" * 43 + "="},
        cwd=str(tmp_path),
    )
    async with Client(params) as client:
        result = await client.call_tool("memtrace_recall", {"agent_id": "bot"})
        assert result.is_error  # a server there refuses the key, or none is listening
        message = text(result)
        assert "could not reach the memtrace server" in message or "API key" in message
    assert list(tmp_path.iterdir()) == []


def _serving(command: list[str], data_dir: Path) -> subprocess.Popen[str]:
    """``command`` serving MCP over stdio, initialized, with one memory remembered, then idle
    (blocked on the client's open stdin)."""
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **TEST_ENV, "MEMTRACE_DATA_DIR": str(data_dir)},
    )
    assert proc.stdin is not None and proc.stdout is not None
    messages = [
        (
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        ),
        (
            "tools/call",
            {"name": "memtrace_remember", "arguments": {"agent_id": "a", "content": "x"}},
        ),
    ]
    for number, (method, params) in enumerate(messages, 1):
        proc.stdin.write(
            json.dumps({"jsonrpc": "2.0", "id": number, "method": method, "params": params}) + "\n"
        )
        proc.stdin.flush()
        reply = json.loads(proc.stdout.readline())
        assert reply["id"] == number and "error" not in reply, reply
        if number == 1:
            proc.stdin.write('{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
    return proc


def test_sigterm_stops_the_stdio_server_gracefully(tmp_path: Path) -> None:
    """docker stop / systemd send SIGTERM while the client still holds stdin open: the server
    ends its calls, closes the stores and exits 0 (it used to die by the signal)."""
    proc = _serving([MEMTRACE_MCP], tmp_path / "d")
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    finally:
        proc.kill()


def test_sigterm_stops_the_stdio_server_as_pid_1(tmp_path: Path) -> None:
    """As a container's main process (PID 1 of its namespace) a signal without a handler is
    ignored, so `docker stop` used to wait its whole timeout and then SIGKILL."""
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a PID namespace here: {probe.stderr.decode().strip()}")
    proc = _serving(["unshare", "--pid", "--fork", "--kill-child", MEMTRACE_MCP], tmp_path / "d")
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 1, children  # memtrace-mcp, PID 1 in its namespace
        os.kill(int(children[0]), signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()


def _catches_sigterm(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(re.search(r"^SigCgt:\s*([0-9a-f]+)$", status, re.M).group(1), 16)  # type: ignore[union-attr]
    return bool(caught >> (signal.SIGTERM - 1) & 1)


@pytest.mark.parametrize("command", [[MEMTRACE_MCP], memtrace_cmd("serve", "--port", "0")])
def test_sigterm_during_a_slow_start_ends_the_process(tmp_path: Path, command: list[str]) -> None:
    """The entry points handle SIGTERM from their first moment, not only once serving: the
    metadata DB is locked by another process, so the start waits on it, and SIGTERM ends the
    wait at once, status 0 (as PID 1 a signal without a handler would be ignored)."""
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    lock = sqlite3.connect(data_dir / "memtrace.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    proc = subprocess.Popen(
        [*command, "--data-dir", str(data_dir)] if command[0] != MEMTRACE_MCP else command,
        env={**os.environ, **TEST_ENV, "MEMTRACE_DATA_DIR": str(data_dir)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: proc.poll() is None and _catches_sigterm(proc.pid), timeout=4)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        lock.close()
