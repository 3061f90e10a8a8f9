"""Arc from the command line and a real server process: bindings, master key handling,
copy to Arc (times, refused rows, a lost write buffer), the outbox command, remove-arc with a
non-empty outbox, and SIGKILL with a non-empty outbox."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from memtrace.auth.crypto import generate_master_key
from memtrace.domain.memory import MemoryRecord
from memtrace.domain.timestamps import now_us
from memtrace.storage.base import NewMemory
from memtrace.storage.embedded import EmbeddedStore
from memtrace.testing.arc_emulator import TEST_TOKEN
from memtrace.testing.arc_server import EmulatorServer
from tests.helpers import (
    TEST_ENV,
    ServerProcess,
    fresh_store_health,
    memtrace_cmd,
    run_cli,
    wait_until,
)
from tests.storage.arc_support import memory
from tests.test_faults_embedded import Writers, all_ids

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


def seed_embedded(data_dir: Path, org: str, items: list[NewMemory]) -> list[MemoryRecord]:
    """Memories written straight into the org's embedded store (the CLI's source of copies)."""

    async def run() -> list[MemoryRecord]:
        store = EmbeddedStore(data_dir / "orgs" / org / "memories.db", org, synchronous="NORMAL")
        await store.open()
        try:
            outcomes = await store.write(items, None)
        finally:
            await store.close()
        return [o.record for o in outcomes if o.record is not None]

    return asyncio.run(run())


def org_to_copy(
    data_dir: Path, env: dict[str, str], arc_server: EmulatorServer, n: int
) -> tuple[str, list[str]]:
    """An org with n embedded memories from an hour ago, bound to Arc: (org, memory ids)."""
    org = new_org(data_dir, env)
    base = now_us() - 3_600_000_000
    items = [memory(f"old memory {i}", time_us=base + i) for i in range(n)]
    ids = [r.id for r in seed_embedded(data_dir, org, items)]
    assert add_arc(data_dir, env, org, arc_server.url).returncode == 0
    return org, ids


def server_org(
    tmp_path: Path, master_env: dict[str, str], arc_server: EmulatorServer
) -> tuple[Path, dict[str, str], str, str]:
    """A data dir for a server process with an Arc-bound org: (data_dir, env, org, api key)."""
    data_dir = tmp_path / "server-data"
    env = {**master_env, "MEMTRACE_ARC_FLUSH_INTERVAL_MS": "10", "MEMTRACE_ARC_RETRY_MAX_S": "0.2"}
    org = new_org(data_dir, env)
    key = run_cli("key", "create", "--org", org, "--name", "t", data_dir=data_dir, env=env)
    assert add_arc(data_dir, env, org, arc_server.url).returncode == 0
    return data_dir, env, org, key.stdout.strip()


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
    org, ids = org_to_copy(data_dir, master_env, arc_server, 25)
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
        shown = run_cli("org", "outbox", org, data_dir=data_dir, env=env)
        assert "pending\t20" in shown.stdout
        assert run_cli("org", "show-arc", org, data_dir=data_dir, env=env).returncode == 0

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
        left = run_cli("org", "outbox", org, data_dir=data_dir, env=env)
        assert "pending\t0" in left.stdout and "unverified\t0" in left.stdout
    finally:
        arc_server.emulator.fault = None
        server.stop()


def test_copy_data_keeps_early_times_and_parks_what_arc_refuses(
    data_dir: Path, master_env: dict[str, str], arc_server: EmulatorServer
) -> None:
    org = new_org(data_dir, master_env)
    now = now_us()
    times = [7, 86_400_000_123, now - 3_600_000_000, 5_000_000, now - 1]

    items = [memory(f"at {t}", time_us=t) for t in times] + [memory("poison", time_us=now - 2)]
    stored = {r.id: r.time for r in seed_embedded(data_dir, org, items)}
    poison = next(i for i, t in stored.items() if t == now - 2)
    assert add_arc(data_dir, master_env, org, arc_server.url).returncode == 0
    arc_server.emulator.refuse_content = "poison"
    done = run_cli(
        "org", "copy-data", org, "--to", "arc", "--batch-size", "3",
        data_dir=data_dir, env=master_env,
    )  # fmt: skip
    assert done.stdout.strip() == "6"
    assert "1 memories were refused by Arc and parked" in done.stderr
    sql = f"SELECT id, epoch_us(time) FROM events WHERE org_id = '{org}'"
    in_arc = dict(arc_server.emulator.sql("acme", sql))
    assert in_arc == {i: t for i, t in stored.items() if i != poison}  # exact times
    # a batch of only pre-April-1970 rows was led by the unit anchor row, which no org sees
    others = arc_server.emulator.sql("acme", f"SELECT org_id FROM events WHERE org_id <> '{org}'")
    assert {row[0] for row in others} <= {""}
    shown = run_cli("org", "outbox", org, data_dir=data_dir, env=master_env)
    assert "parked\t1" in shown.stdout and poison in shown.stdout
    assert "emulated refusal" in shown.stdout

    arc_server.emulator.refuse_content = None
    retried = run_cli("org", "outbox", org, "--retry-parked", data_dir=data_dir, env=master_env)
    assert "1 parked memories go back to the queue" in retried.stderr
    assert "pending\t1" in retried.stdout and "parked\t0" in retried.stdout


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
