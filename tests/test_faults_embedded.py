"""Fault tests on the embedded backend with a real server subprocess: kill -9 under
concurrent writes, a full disk, and a metadata DB locked by another process.

Long variants (more rounds, more writers) run from ``bench/soak.py``.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import ServerProcess, wait_until

pytestmark = pytest.mark.slow  # starts processes or servers (docs/testing.md)

MEM = "/api/v1/memories"
NO_RATE_LIMIT = {"MEMTRACE_LIMITS_RATE_PER_S": "0"}


class Writers:
    """Threads that write memories (singles and batches) until stopped or the server dies,
    recording exactly which ids the server acknowledged with 201."""

    def __init__(self, url: str, key: str, tag: str, threads: int = 4) -> None:
        self.url, self.key, self.tag = url, key, tag
        self.acked: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)
        ]

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def _run(self, n: int) -> None:
        seq = 0
        with httpx.Client(base_url=self.url, headers={"x-api-key": self.key}, timeout=30) as c:
            while not self.stop.is_set():
                seq += 1
                item = {"agent_id": f"w{n}", "content": f"{self.tag} writer {n} seq {seq}"}
                body = (
                    {"memories": [{**item, "content": f"{item['content']} #{i}"} for i in range(5)]}
                    if seq % 3 == 0
                    else item
                )
                try:
                    response = c.post(MEM, json=body)
                except httpx.TransportError:
                    return  # the server is gone: this request was never acknowledged
                if response.status_code != 201:
                    continue
                data = response.json()
                ids = [m["id"] for m in data["memories"]] if "memories" in data else [data["id"]]
                with self.lock:
                    self.acked.extend(ids)


def all_ids(url: str, key: str) -> list[str]:
    ids: list[str] = []
    with httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=30) as client:
        while True:
            page = client.get(MEM, params={"limit": 1000, "offset": len(ids)}).json()
            ids += [m["id"] for m in page["memories"]]
            if not page["has_more"]:
                return ids


@pytest.fixture
def server_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


def test_sigkill_loop_loses_no_acknowledged_write(server_dir: Path) -> None:
    server = ServerProcess(server_dir, env=NO_RATE_LIMIT)
    acked: list[str] = []
    try:
        # Three kills: one of a fresh deployment, two of a deployment recovering from the
        # previous kill (bench/soak.py runs longer loops).
        for round_no in range(3):
            server.start()
            assert server.admin_key
            with Writers(server.url, server.admin_key, f"round {round_no}") as writers:
                wait_until(lambda w=writers: w.count() >= 60, timeout=60)  # type: ignore[misc]
                assert server.kill(signal.SIGKILL) == -signal.SIGKILL
            acked += writers.acked
        server.start()
        assert server.admin_key
        stored = all_ids(server.url, server.admin_key)
        assert len(stored) == len(set(stored)), "a memory is stored twice"
        missing = set(acked) - set(stored)
        assert not missing, f"{len(missing)} acknowledged memories lost"
        assert len(acked) == len(set(acked))
        with httpx.Client(base_url=server.url, headers={"x-api-key": server.admin_key}) as c:
            for memory_id in acked[:: max(1, len(acked) // 50)]:
                assert c.get(f"{MEM}/{memory_id}").status_code == 200
    finally:
        server.stop()


def _largest_file(root: Path) -> int:
    return max(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_disk_full_is_503_then_recovers(server_dir: Path) -> None:
    server = ServerProcess(server_dir, env=NO_RATE_LIMIT).start()
    assert server.proc is not None and server.admin_key
    headers = {"x-api-key": server.admin_key}
    big = "x" * 50_000
    acked: list[str] = []
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            first = client.post(MEM, json={"agent_id": "a", "content": "before the disk fills"})
            assert first.status_code == 201
            acked.append(first.json()["id"])
            # The server's files may not grow past their current size + 1 MiB: "disk full".
            limit = _largest_file(server_dir) + 1024 * 1024
            _, hard = resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE)
            resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, (limit, hard))
            refused = None
            for n in range(200):
                batch = {
                    "memories": [{"agent_id": "a", "content": f"{n}/{i} {big}"} for i in range(8)]
                }
                response = client.post(MEM, json=batch)
                if response.status_code == 201:
                    acked += [m["id"] for m in response.json()["memories"]]
                    continue
                refused = response
                break
            assert refused is not None, "the file size limit never took effect"
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"].startswith("storage write failed (disk I/O error")
            assert "Traceback" not in refused.text
            # Reads still work while the disk is full, and show every acknowledged memory.
            assert set(acked) <= set(all_ids(server.url, server.admin_key))
            # Space comes back: writes succeed again without a restart.
            resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
            again = client.post(MEM, json={"agent_id": "a", "content": "after space returned"})
            assert again.status_code == 201, again.text
            acked.append(again.json()["id"])
        server.kill(signal.SIGKILL)
        server.start()
        stored = all_ids(server.url, server.admin_key)
        assert set(acked) <= set(stored) and len(stored) == len(set(stored))
    finally:
        server.stop()


LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


def _lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holds the write lock of ``path`` for ``seconds``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_locked_metadata_db_waits_then_503(server_dir: Path) -> None:
    server = ServerProcess(server_dir, env=NO_RATE_LIMIT).start()
    assert server.admin_key
    headers = {"x-api-key": server.admin_key}
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            # A lock released while the request waits: the request just takes longer.
            locker = _lock(server_dir / "memtrace.db", 1.0)
            created = client.post("/api/v1/agents", json={"name": "patient"})
            locker.wait(timeout=30)
            assert created.status_code == 201, created.text
            # A lock held past the busy timeout: a clear 503, nothing half-written.
            locker = _lock(server_dir / "memtrace.db", 30.0)
            try:
                refused = client.post("/api/v1/agents", json={"name": "impatient"})
                assert refused.status_code == 503
                assert refused.json()["error"] == "storage is busy (database locked); retry shortly"
                assert client.get("/health").status_code == 200  # reads are not blocked
            finally:
                locker.kill()
                locker.wait(timeout=30)
            assert client.get("/api/v1/agents/impatient").status_code == 404
            assert client.post("/api/v1/agents", json={"name": "impatient"}).status_code == 201
    finally:
        server.stop()
