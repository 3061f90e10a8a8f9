"""Fault tests on the Arc backend with a real server subprocess and the Arc emulator over
real HTTP: kill -9 loops with a non-empty outbox, Arc flapping (503, refused connections,
success) under write load, Arc losing its unflushed write buffer (a crash before its flush) in
both, and a missing or wrong master key at start (every kind of bad key is also checked in
process by tests/storage/test_arc_runtime.py). Acknowledged = stored, exactly once.

Setup (orgs, keys, bindings) runs the CLI in process; the server is always a real process."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from memtrace.auth.crypto import generate_master_key
from memtrace.testing.arc_emulator import TEST_TOKEN, ArcEmulator
from memtrace.testing.arc_server import EmulatorServer
from tests.helpers import ServerProcess, admin, new_tenant, wait_until
from tests.storage.arc_support import BAD_MASTER_KEYS
from tests.test_faults_embedded import Writers, all_ids

pytestmark = pytest.mark.slow  # starts processes or servers (docs/testing.md)

FAST = {
    "MEMTRACE_ARC_FLUSH_INTERVAL_MS": "10",
    "MEMTRACE_ARC_RETRY_MAX_S": "0.2",
    "MEMTRACE_ARC_CONNECT_TIMEOUT_S": "1",
    "MEMTRACE_ARC_WRITE_TIMEOUT_S": "2",
    # Arc below flushes 0.3 s after a buffer's first write: verify after that, resend what
    # it still lacks a second later.
    "MEMTRACE_ARC_VERIFY_AFTER_S": "0.4",
    "MEMTRACE_ARC_VISIBILITY_GRACE_S": "1",
}
ARC_FLUSH_S = 0.3


@pytest.fixture
def arc() -> Iterator[EmulatorServer]:
    server = EmulatorServer(ArcEmulator(flush_delay_s=ARC_FLUSH_S)).start()
    yield server
    server.stop()


@pytest.fixture
def env() -> dict[str, str]:
    return {"MEMTRACE_MASTER_KEY": generate_master_key(), **FAST}


def bound_org(data_dir: Path, env: dict[str, str], arc_url: str) -> tuple[str, str]:
    """An org bound to Arc database ``acme`` and a read+write key for it."""
    org, key = new_tenant(data_dir, "acme", env=env)
    admin(
        data_dir, "org", "add-arc", org, "--url", arc_url, "--database", "acme",
        "--api-key", TEST_TOKEN, env=env,
    )  # fmt: skip
    return org, key


def arc_ids(arc: EmulatorServer) -> list[str]:
    arc.emulator.flush()
    return [row[0] for row in arc.emulator.sql("acme", "SELECT id FROM events")]


def wait_settled(server: ServerProcess, org: str) -> None:
    """Wait until Arc was seen (in a query) to hold every acknowledged row: the outbox is
    empty. One client for the polls (see tests/helpers.py)."""
    with httpx.Client(base_url=server.url, timeout=10) as http:

        def settled() -> bool:
            store = http.get("/health").json()["stores"].get(org, {})
            return all(store.get(name) == 0 for name in ("outbox_pending", "outbox_unverified"))

        wait_until(settled, timeout=60)


def flushed_ids(arc: EmulatorServer) -> list[str]:
    """What Arc holds durably, without forcing a flush (memtrace must have made it so)."""
    return [row[0] for row in arc.emulator.sql("acme", "SELECT id FROM events")]


def test_sigkill_loop_with_unshipped_outbox(
    tmp_path: Path, arc: EmulatorServer, env: dict[str, str]
) -> None:
    data_dir = tmp_path / "data"
    org, key = bound_org(data_dir, env, arc.url)
    server = ServerProcess(data_dir, env=env)
    acked: list[str] = []
    try:
        lost = 0
        for round_no in range(3):
            # Arc refuses writes in odd rounds: the kill hits a non-empty outbox. In even
            # rounds Arc crashes together with memtrace, losing its unflushed buffer.
            arc.emulator.fault = "503" if round_no % 2 else None
            server.start()
            with Writers(server.url, key, f"arc round {round_no}") as writers:
                wait_until(lambda w=writers: w.count() >= 40, timeout=60)  # type: ignore[misc]
                if not round_no % 2:
                    wait_until(lambda: arc.emulator.buffered() > 0, timeout=60, interval=0.005)
                    lost += arc.emulator.lose_buffer()
                assert server.kill(signal.SIGKILL) == -signal.SIGKILL
            acked += writers.acked
        assert lost > 0
        arc.emulator.fault = None
        server.start()
        wait_settled(server, org)
        assert set(acked) <= set(flushed_ids(arc)), "an acknowledged memory was lost"
        # Shipping is at-least-once: a batch Arc accepted just before a kill is sent again
        # after the restart. Readers must still see every memory exactly once.
        listed = all_ids(server.url, key)
        assert set(acked) <= set(listed)
        assert len(listed) == len(set(listed)), "a memory is listed twice"
        assert set(listed) == set(arc_ids(arc))
        with httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=30) as c:
            stats = [c.get(f"/api/v1/agents/w{n}/stats").json() for n in range(4)]
        assert sum(s["memory_count"] for s in stats) == len(listed)
    finally:
        arc.emulator.fault = None
        server.stop()


def test_arc_flapping_under_write_load(
    tmp_path: Path, arc: EmulatorServer, env: dict[str, str]
) -> None:
    data_dir = tmp_path / "data"
    org, key = bound_org(data_dir, env, arc.url)
    server = ServerProcess(data_dir, env=env).start()
    stop = threading.Event()
    phases: list[str] = []

    def flap() -> None:
        """503s, then refused connections, then success, then a crash that loses Arc's
        unflushed buffer, over and over."""
        while not stop.is_set():
            for phase in ("503", "down", "up", "crash"):
                if stop.is_set():
                    return
                phases.append(phase)
                if phase == "503":
                    arc.emulator.fault = "503"
                elif phase == "down":
                    arc.emulator.fault = None
                    arc.stop()
                elif phase == "up":
                    arc.start()
                else:
                    arc.emulator.lose_buffer()
                stop.wait(0.3)  # how long each phase lasts (load keeps running throughout)

    flapper = threading.Thread(target=flap, daemon=True)
    try:
        with Writers(server.url, key, "flapping", threads=4) as writers:
            flapper.start()
            # Flap until at least one crash caught rows in Arc's buffer: on a loaded machine
            # the first crashes may find it empty (shipping lagging behind the phases).
            wait_until(
                lambda: len(phases) >= 12 and writers.count() >= 150 and arc.emulator.lost > 0,
                timeout=180,
            )
            stop.set()
            flapper.join(timeout=30)
        if arc._server is None:  # the flapper may have stopped in a "down" phase
            arc.start()
        arc.emulator.fault = None
        acked = writers.acked
        assert acked, "no write was acknowledged while Arc flapped"
        assert arc.emulator.lost > 0, "no crash hit a non-empty buffer"
        wait_settled(server, org)
        assert set(acked) <= set(flushed_ids(arc)), "an acknowledged memory was lost"
        shipped = arc_ids(arc)
        assert len(shipped) == len(set(shipped)), "a memory reached Arc twice"
        listed = all_ids(server.url, key)
        assert set(acked) <= set(listed) and len(listed) == len(set(listed))
        assert "Traceback" not in server.log_path.read_text()
    finally:
        stop.set()
        server.stop()


# A key that cannot be read at all, and a readable key that decrypts nothing.
@pytest.mark.parametrize("bad", ["missing", "wrong"])
def test_bad_master_key_at_start_is_a_clear_refusal(
    tmp_path: Path, arc: EmulatorServer, env: dict[str, str], bad: str
) -> None:
    master_key, message = BAD_MASTER_KEYS[bad]
    data_dir = tmp_path / "data"
    org, key = bound_org(data_dir, env, arc.url)
    _, plain_key = new_tenant(data_dir, "plain", env=env)
    server = ServerProcess(data_dir, env={**env, "MEMTRACE_MASTER_KEY": master_key}).start()
    try:
        ok = httpx.post(  # an org on the embedded store keeps working
            f"{server.url}/api/v1/memories",
            json={"agent_id": "a", "content": "embedded still works"},
            headers={"x-api-key": plain_key},
        )
        assert ok.status_code == 201
        refused = httpx.post(
            f"{server.url}/api/v1/memories",
            json={"agent_id": "a", "content": "x"},
            headers={"x-api-key": key},
        )
        assert refused.status_code == 503
        assert message in refused.json()["error"]
        ready = httpx.get(f"{server.url}/ready")  # readiness is about the process
        assert ready.status_code == 200 and message in ready.json()["stores"][org]["detail"]
        log = server.log_path.read_text()
        for secret in (TEST_TOKEN, env["MEMTRACE_MASTER_KEY"], key):
            assert secret not in log and secret not in refused.text + ready.text
    finally:
        server.stop()
