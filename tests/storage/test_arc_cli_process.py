"""Arc with the console script and a real server process: binding only with a master key,
remove-arc with a non-empty outbox while writes arrive, copy-data while Arc loses its write
buffer, and SIGKILL with a non-empty outbox. The other Arc commands run in process in
tests/storage/test_arc_cli.py; setup here runs the CLI in process too."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from memtrace.testing.arc_emulator import TEST_TOKEN
from memtrace.testing.arc_server import EmulatorServer
from tests.helpers import (
    TEST_ENV,
    ServerProcess,
    admin,
    fresh_store_health,
    invoke,
    memtrace_cmd,
    new_tenant,
    run_cli,
    wait_until,
)
from tests.storage.arc_support import add_arc, org_to_copy
from tests.test_faults_embedded import Writers, all_ids

pytestmark = pytest.mark.slow  # starts processes or servers (docs/testing.md)

SECRET = TEST_TOKEN  # the Arc API key that must never appear in clear text


def server_org(
    tmp_path: Path, master_env: dict[str, str], arc_server: EmulatorServer
) -> tuple[Path, dict[str, str], str, str]:
    """A data dir for a server process with an Arc-bound org: (data_dir, env, org, api key)."""
    data_dir = tmp_path / "server-data"
    env = {**master_env, "MEMTRACE_ARC_FLUSH_INTERVAL_MS": "10", "MEMTRACE_ARC_RETRY_MAX_S": "0.2"}
    org, key = new_tenant(data_dir, "acme", env=env)
    assert add_arc(data_dir, env, org, arc_server.url)[0] == 0
    return data_dir, env, org, key


def write_memories(server: ServerProcess, api_key: str, n: int) -> list[str]:
    """Write n memories one by one; their ids (each acknowledged with a 201)."""
    ids = []
    for i in range(n):
        response = httpx.post(
            f"{server.url}/api/v1/memories",
            json={"agent_id": "crawler", "content": f"acknowledged {i}"},
            headers={"x-api-key": api_key},
        )
        assert response.status_code == 201
        ids.append(response.json()["id"])
    return ids


def test_console_script_binds_only_with_a_master_key(
    data_dir: Path, master_env: dict[str, str], arc_server: EmulatorServer
) -> None:
    org = admin(data_dir, "org", "create", "acme")
    bind = ("org", "add-arc", org, "--url", arc_server.url, "--database", "acme")
    refused = run_cli(
        *bind, "--api-key", SECRET, data_dir=data_dir, env={"MEMTRACE_MASTER_KEY": ""},
        check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    (line,) = refused.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith("Error: MEMTRACE_MASTER_KEY is not set")
    added = run_cli(*bind, "--api-key", SECRET, data_dir=data_dir, env=master_env)
    assert SECRET not in refused.stdout + refused.stderr + added.stdout + added.stderr
    assert "database\tacme" in admin(data_dir, "org", "show-arc", org, env=master_env)


def test_sigkill_with_pending_outbox_then_restart_ships_everything(
    tmp_path: Path, master_env: dict[str, str], arc_server: EmulatorServer
) -> None:
    data_dir, env, org, api_key = server_org(tmp_path, master_env, arc_server)
    arc_server.emulator.fault = "503"
    server = ServerProcess(data_dir, env=env).start()
    try:
        ids = write_memories(server, api_key, 20)
        health = fresh_store_health(server.url, org)
        assert health["backend"] == "arc" and health["outbox_pending"] == 20
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
        assert fresh_store_health(restarted.url, org)["outbox_pending"] == 0
    finally:
        restarted.stop()
    logs = server.log_path.read_text() + restarted.log_path.read_text()
    assert SECRET not in logs


def test_remove_arc_never_strands_the_outbox(
    tmp_path: Path, master_env: dict[str, str], arc_server: EmulatorServer
) -> None:
    """Acknowledged memories still in the outbox (Arc refusing writes here) must not become
    invisible and unshipped when the binding goes: refused, or moved with --force, also
    while writes keep arriving during the switch."""
    data_dir, env, org, api_key = server_org(tmp_path, master_env, arc_server)
    arc_server.emulator.fault = "503"
    server = ServerProcess(data_dir, env=env).start()
    try:
        acked = write_memories(server, api_key, 20)

        refused = run_cli("org", "remove-arc", org, data_dir=data_dir, env=env, check=False)
        assert refused.returncode == 1
        assert "20 acknowledged memories Arc is not known to hold" in refused.stderr
        assert "--force" in refused.stderr and f"memtrace org outbox {org}" in refused.stderr
        assert "pending\t20" in admin(data_dir, "org", "outbox", org, env=env)
        assert invoke(data_dir, "org", "show-arc", org, env=env)[0] == 0

        with Writers(server.url, api_key, "during the switch", threads=2) as writers:
            wait_until(lambda: writers.count() >= 10, timeout=60)
            forced = run_cli("org", "remove-arc", org, "--force", data_dir=data_dir, env=env)
            assert "moved from the Arc outbox into the embedded store" in forced.stderr

            def on_embedded() -> bool:
                stores = httpx.get(f"{server.url}/health", timeout=10).json()["stores"]
                return stores.get(org, {}).get("backend") == "embedded"

            wait_until(on_embedded, timeout=30)
            count = writers.count()
            wait_until(lambda: writers.count() >= count + 10, timeout=60)  # on the new store
        acked += writers.acked
        listed = all_ids(server.url, api_key)
        assert set(acked) <= set(listed), "an acknowledged memory was stranded"
        assert len(listed) == len(set(listed))
        left = admin(data_dir, "org", "outbox", org, env=env)
        assert "pending\t0" in left and "unverified\t0" in left
    finally:
        arc_server.emulator.fault = None
        server.stop()


def test_copy_data_sends_again_what_arc_lost_from_its_buffer(
    data_dir: Path, master_env: dict[str, str], arc_server: EmulatorServer
) -> None:
    org, ids = org_to_copy(data_dir, master_env, arc_server, 30)
    arc_server.emulator.flush_delay_s = 1.0
    env = {**master_env, "MEMTRACE_ARC_VISIBILITY_GRACE_S": "1.5"}
    copy = subprocess.Popen(
        memtrace_cmd("org", "copy-data", org, "--to", "arc", "--batch-size", "10",
                     "--data-dir", str(data_dir)),
        env={**os.environ, **TEST_ENV, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: arc_server.emulator.buffered() > 0, timeout=30, interval=0.005)
        assert arc_server.emulator.lose_buffer() > 0  # Arc crashes before its flush
        stdout, stderr = copy.communicate(timeout=60)
    finally:
        if copy.poll() is None:
            copy.kill()
    assert copy.returncode == 0, stderr
    assert stdout.strip() == "30"
    rows = arc_server.emulator.sql("acme", "SELECT id FROM events ORDER BY id")
    assert [r[0] for r in rows] == sorted(ids)  # every memory, exactly once
