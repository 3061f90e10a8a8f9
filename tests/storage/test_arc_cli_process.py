"""Arc from the command line and a real server process: bindings, master key handling,
copy to Arc, and SIGKILL with a non-empty outbox."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from memtrace.auth.crypto import generate_master_key
from memtrace.domain.timestamps import now_us
from memtrace.storage.embedded import EmbeddedStore
from memtrace.testing.arc_emulator import TEST_TOKEN
from memtrace.testing.arc_server import EmulatorServer
from tests.helpers import ServerProcess, fresh_store_health, run_cli, wait_until
from tests.storage.arc_support import memory

pytestmark = pytest.mark.slow  # starts processes or servers (docs/testing.md)

SECRET = TEST_TOKEN  # the Arc API key that must never appear in clear text


@pytest.fixture
def master_env() -> dict[str, str]:
    return {"MEMTRACE_MASTER_KEY": generate_master_key()}


def new_org(data_dir: Path, env: dict[str, str], name: str = "acme") -> str:
    return run_cli("org", "create", name, data_dir=data_dir, env=env).stdout.strip()


def add_arc(
    data_dir: Path, env: dict[str, str], org: str, url: str, database: str = "acme"
) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "org", "add-arc", org, "--url", url, "--database", database, "--api-key", SECRET,
        data_dir=data_dir, env=env, check=False,
    )  # fmt: skip


def test_master_key_errors_and_no_plaintext_anywhere(
    data_dir: Path, master_env: dict[str, str], arc_server: EmulatorServer
) -> None:
    org = new_org(data_dir, master_env)
    missing = add_arc(data_dir, {"MEMTRACE_MASTER_KEY": ""}, org, arc_server.url)
    assert missing.returncode == 1 and "MEMTRACE_MASTER_KEY is not set" in missing.stderr
    malformed = add_arc(data_dir, {"MEMTRACE_MASTER_KEY": "not-base64!"}, org, arc_server.url)
    assert malformed.returncode == 1 and "malformed" in malformed.stderr
    short = add_arc(data_dir, {"MEMTRACE_MASTER_KEY": "c2hvcnQ="}, org, arc_server.url)
    assert short.returncode == 1 and "32 bytes" in short.stderr
    bad_db = run_cli(
        "org", "add-arc", org, "--url", arc_server.url, "--database", "has-dash",
        data_dir=data_dir, env=master_env, check=False,
    )  # fmt: skip
    assert bad_db.returncode == 1 and "database:" in bad_db.stderr

    added = add_arc(data_dir, master_env, org, arc_server.url)
    assert added.returncode == 0, added.stderr
    shown = run_cli("org", "show-arc", org, data_dir=data_dir, env=master_env)
    assert f"api_key\t****{SECRET[-4:]}" in shown.stdout and "database\tacme" in shown.stdout
    wrong = run_cli(
        "org", "show-arc", org, data_dir=data_dir,
        env={"MEMTRACE_MASTER_KEY": generate_master_key()}, check=False,
    )  # fmt: skip
    assert wrong.returncode == 1 and "not the key it was encrypted with" in wrong.stderr
    for result in (missing, malformed, added, shown, wrong):
        assert SECRET not in result.stdout + result.stderr
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path

    run_cli("org", "remove-arc", org, data_dir=data_dir, env=master_env)
    gone = run_cli("org", "show-arc", org, data_dir=data_dir, env=master_env, check=False)
    assert gone.returncode == 1 and "no Arc binding" in gone.stderr


def test_copy_data_copies_embedded_memories_and_resumes(
    data_dir: Path, master_env: dict[str, str], arc_server: EmulatorServer
) -> None:
    org = new_org(data_dir, master_env)
    base = now_us() - 3_600_000_000

    async def seed() -> list[str]:
        store = EmbeddedStore(data_dir / "orgs" / org / "memories.db", org, synchronous="NORMAL")
        await store.open()
        outcomes = await store.write(
            [memory(f"old memory {i}", time_us=base + i) for i in range(25)], None
        )
        await store.close()
        return [o.record.id for o in outcomes if o.record]

    ids = asyncio.run(seed())
    assert add_arc(data_dir, master_env, org, arc_server.url).returncode == 0
    arc_server.emulator.fail_writes_after = 1  # the second batch fails: a crash mid-copy
    failed = run_cli(
        "org", "copy-data", org, "--to", "arc", "--batch-size", "10",
        data_dir=data_dir, env=master_env, check=False,
    )  # fmt: skip
    assert failed.returncode == 1 and "Arc" in failed.stderr
    arc_server.emulator.fail_writes_after = None
    done = run_cli(
        "org", "copy-data", org, "--to", "arc", "--batch-size", "10",
        data_dir=data_dir, env=master_env,
    )  # fmt: skip
    assert done.stdout.strip() == "25" and "15 copied now" in done.stderr
    again = run_cli("org", "copy-data", org, "--to", "arc", data_dir=data_dir, env=master_env)
    assert "0 copied now" in again.stderr
    rows = arc_server.emulator.sql("acme", "SELECT id, content FROM events ORDER BY id")
    assert [r[0] for r in rows] == sorted(ids)  # every memory exactly once


def test_sigkill_with_pending_outbox_then_restart_ships_everything(
    tmp_path: Path, master_env: dict[str, str], arc_server: EmulatorServer
) -> None:
    data_dir = tmp_path / "server-data"
    env = {**master_env, "MEMTRACE_ARC_FLUSH_INTERVAL_MS": "10", "MEMTRACE_ARC_RETRY_MAX_S": "0.2"}
    org = new_org(data_dir, env)
    key = run_cli("key", "create", "--org", org, "--name", "t", data_dir=data_dir, env=env)
    headers = {"x-api-key": key.stdout.strip()}
    assert add_arc(data_dir, env, org, arc_server.url).returncode == 0
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
