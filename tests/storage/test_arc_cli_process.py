"""Arc with the console script and a real server process: the CLI refuses to bind without a
master key and binds with one, and a SIGKILL with a non-empty outbox loses nothing. The other
Arc commands run in process in tests/storage/test_arc_cli.py."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from memtrace.auth.crypto import generate_master_key
from memtrace.testing.arc_emulator import TEST_TOKEN
from memtrace.testing.arc_server import EmulatorServer
from tests.helpers import ServerProcess, new_tenant, run_cli, wait_until

pytestmark = pytest.mark.slow  # starts processes or servers (docs/testing.md)

SECRET = TEST_TOKEN  # the Arc API key that must never appear in clear text


@pytest.fixture
def master_env() -> dict[str, str]:
    return {"MEMTRACE_MASTER_KEY": generate_master_key()}


def add_arc(
    data_dir: Path, env: dict[str, str], org: str, url: str, database: str = "acme"
) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "org", "add-arc", org, "--url", url, "--database", database, "--api-key", SECRET,
        data_dir=data_dir, env=env, check=False,
    )  # fmt: skip


def test_sigkill_with_pending_outbox_then_restart_ships_everything(
    tmp_path: Path, master_env: dict[str, str], arc_server: EmulatorServer
) -> None:
    data_dir = tmp_path / "server-data"
    env = {**master_env, "MEMTRACE_ARC_FLUSH_INTERVAL_MS": "10", "MEMTRACE_ARC_RETRY_MAX_S": "0.2"}
    org, key = new_tenant(data_dir, "acme", env=env)
    headers = {"x-api-key": key}
    refused = add_arc(data_dir, {"MEMTRACE_MASTER_KEY": ""}, org, arc_server.url)
    assert refused.returncode == 1
    (line,) = refused.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith("Error: MEMTRACE_MASTER_KEY is not set")
    added = add_arc(data_dir, env, org, arc_server.url)
    assert added.returncode == 0, added.stderr
    assert SECRET not in refused.stderr + added.stdout + added.stderr
    arc_server.emulator.fault = "503"

    server = ServerProcess(data_dir, env=env).start()
    try:
        ids = []
        for i in range(20):
            response = httpx.post(
                f"{server.url}/api/v1/memories",
                json={"agent_id": "crawler", "content": f"acknowledged {i}"},
                headers=headers,
            )
            assert response.status_code == 201
            ids.append(response.json()["id"])
        stores = httpx.get(f"{server.url}/health").json()["stores"]
        assert stores[org]["backend"] == "arc" and stores[org]["outbox_pending"] == 20
        assert server.kill(signal.SIGKILL) == -signal.SIGKILL
    finally:
        server.stop()
    assert arc_server.emulator.sql("acme", "SELECT count(*) FROM events") == []

    arc_server.emulator.fault = None
    restarted = ServerProcess(data_dir, env=env).start()  # no request needed: shipping resumes
    try:

        def all_in_arc() -> bool:
            rows = arc_server.emulator.sql("acme", "SELECT id FROM events ORDER BY id")
            return [r[0] for r in rows] == sorted(ids)

        wait_until(all_in_arc, timeout=20)
        stores = httpx.get(f"{restarted.url}/health").json()["stores"]
        assert stores[org]["outbox_pending"] == 0
    finally:
        restarted.stop()
    logs = server.log_path.read_text() + restarted.log_path.read_text()
    assert SECRET not in logs
