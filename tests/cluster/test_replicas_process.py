"""Cluster mode end to end: ``memtrace serve`` replicas (real processes) on one real PostgreSQL,
driven round robin as a load balancer would, and the ``memtrace`` CLI against the same database.

Each test starts its replicas at once on an empty database: the schema migrations and the
first-run bootstrap race, as they do when a deployment's replicas start together.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest

from memtrace.testing.arc_emulator import ArcEmulator
from memtrace.testing.arc_server import EmulatorServer
from memtrace.testing.postgres import PgServer
from tests.helpers import KEY_RE, ServerProcess, run_cli, wait_until

pytestmark = pytest.mark.slow
MEM = "/api/v1/memories"
_names = itertools.count()


class Cluster:
    def __init__(self, root: Path, url: str, extra_env: dict[str, str]) -> None:
        self.root = root
        self.url = url
        self.env = {
            "MEMTRACE_POSTGRES_URL": url,
            "MEMTRACE_STORAGE_DEFAULT_BACKEND": "postgres",
            **extra_env,
        }
        self.replicas: list[ServerProcess] = []

    def start(self, n: int) -> list[ServerProcess]:
        new = [
            ServerProcess(self.root / f"replica{len(self.replicas) + i}", env=self.env)
            for i in range(n)
        ]
        with ThreadPoolExecutor(n) as pool:  # all at once: migrations and bootstrap race
            list(pool.map(lambda r: r.start(timeout=120), new))
        self.replicas += new
        return new

    def cli(self, *args: str) -> str:
        return run_cli(*args, data_dir=self.root / "cli", env=self.env).stdout.strip()

    def org_key(self, name: str) -> tuple[str, dict[str, str]]:
        org_id = self.cli("org", "create", name)
        key = self.cli("key", "create", "--org", org_id, "--name", "k")
        return org_id, {"x-api-key": key}

    def sql(self, query: str) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(self.url)
            try:
                return await conn.fetch(query)
            finally:
                await conn.close()

        return asyncio.run(run())


@pytest.fixture
def cluster(tmp_path: Path, pg_server: PgServer) -> Iterator[Cluster]:
    name = f"cluster_{os.getpid()}_{next(_names)}"
    url = pg_server.create_database(name)  # empty: the replicas migrate it
    c = Cluster(tmp_path, url, {"MEMTRACE_ARC_FLUSH_INTERVAL_MS": "20"})
    yield c
    for replica in c.replicas:
        replica.stop()
    pg_server.drop_database(name)


def test_round_robin_read_your_writes_and_revocation_via_cli(cluster: Cluster) -> None:
    replicas = cluster.start(3)
    admin_keys = [r.admin_key for r in replicas if r.admin_key]
    assert len(admin_keys) == 1  # three first starts at once print one bootstrap key
    org_id, headers = cluster.org_key("acme")
    urls = itertools.cycle([r.url for r in replicas])
    with httpx.Client(timeout=10) as http:
        wait_until(
            lambda: all(http.get(f"{r.url}{MEM}", headers=headers).status_code == 200
                        for r in replicas),
            timeout=2.0,
        )  # fmt: skip
        ids: list[str] = []
        for n in range(30):
            created = http.post(
                f"{next(urls)}{MEM}", json={"agent_id": "a", "content": f"m{n}"}, headers=headers
            )
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
            reader = next(urls)  # the next replica sees it at once
            assert http.get(f"{reader}{MEM}/{ids[-1]}", headers=headers).status_code == 200
            listed = http.get(f"{reader}{MEM}", params={"limit": 1}, headers=headers).json()
            assert listed["memories"][0]["id"] == ids[-1]

        key_id = cluster.cli("key", "list", "--org", org_id).split("\t")[0]
        cluster.cli("key", "revoke", key_id)
        revoked = time.monotonic()
        wait_until(
            lambda: all(http.get(f"{r.url}{MEM}", headers=headers).status_code == 401
                        for r in replicas),
            timeout=2.0,
            interval=0.02,
        )  # fmt: skip
        assert time.monotonic() - revoked <= 2.0


def test_cross_replica_dedup_under_concurrency(cluster: Cluster) -> None:
    replicas = cluster.start(3)
    _, headers = cluster.org_key("acme")
    with httpx.Client(timeout=10) as http:  # a new key reaches each replica within 2 s
        wait_until(
            lambda: all(http.get(f"{r.url}{MEM}", headers=headers).status_code == 200
                        for r in replicas)
        )  # fmt: skip
    barrier = threading.Barrier(3)
    results: list[list[httpx.Response]] = [[], [], []]

    def send(n: int) -> None:
        with httpx.Client(timeout=30) as http:
            for round_ in range(25):
                barrier.wait()
                body = {"agent_id": "a", "content": f"same thing {round_}"}
                results[n].append(http.post(f"{replicas[n].url}{MEM}", json=body, headers=headers))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for round_ in range(25):
        answers = [results[n][round_] for n in range(3)]
        assert sorted(a.status_code for a in answers) == [201, 409, 409]
        stored = next(a.json()["id"] for a in answers if a.status_code == 201)
        assert all(a.json()["existing_id"] == stored for a in answers if a.status_code == 409)
    counts = cluster.sql("SELECT count(*) AS n, count(DISTINCT dedup_key) AS k FROM memories")
    assert (counts[0]["n"], counts[0]["k"]) == (25, 25)


def test_kill_9_of_a_replica_under_concurrent_writes(cluster: Cluster) -> None:
    replicas = cluster.start(3)
    _, headers = cluster.org_key("acme")
    acknowledged: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()
    after_kill = threading.Event()
    served_after_kill: list[int] = []

    def writer(w: int) -> None:
        order = itertools.cycle(range(3))
        with httpx.Client(timeout=10) as http:
            for n in itertools.count():
                if stop.is_set() or n >= 400:
                    return
                body = {"agent_id": f"w{w}", "content": f"writer {w} memory {n}"}
                for _ in range(6):  # a load balancer's retry: the next replica
                    target = replicas[next(order)]
                    try:
                        response = http.post(f"{target.url}{MEM}", json=body, headers=headers)
                    except httpx.TransportError:
                        continue
                    if response.status_code in (201, 409):
                        memory_id = response.json().get("id") or response.json()["existing_id"]
                        with lock:
                            acknowledged.add(memory_id)
                            if after_kill.is_set():
                                served_after_kill.append(replicas.index(target))
                        break

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: len(acknowledged) >= 60, timeout=60)
    replicas[1].kill()  # SIGKILL mid-stream
    after_kill.set()
    wait_until(lambda: len(served_after_kill) >= 60, timeout=60)
    stop.set()
    for t in threads:
        t.join()
    assert set(served_after_kill) == {0, 2}  # the others kept serving
    rows = cluster.sql("SELECT id, count(*) AS n FROM memories GROUP BY id")
    stored = {row["id"]: row["n"] for row in rows}
    assert acknowledged <= set(stored)  # every acknowledged memory is stored …
    assert all(n == 1 for n in stored.values())  # … exactly once
    contents = cluster.sql("SELECT count(*) AS n, count(DISTINCT content) AS c FROM memories")
    assert contents[0]["n"] == contents[0]["c"]  # no memory written twice under two ids


def test_arc_shipping_is_taken_over_from_a_killed_replica(cluster: Cluster) -> None:
    emulator = ArcEmulator(token=None)
    emulator.fail_writes_after = 0  # Arc refuses writes (503): rows stay claimed, unshipped
    arc = EmulatorServer(emulator).start()
    try:
        cluster.env["MEMTRACE_POSTGRES_LEASE_S"] = "600"  # takeover must not wait for the lease
        cluster.env["MEMTRACE_ARC_RETRY_MAX_S"] = "0.2"
        cluster.env["MEMTRACE_ARC_VERIFY_AFTER_S"] = "0"
        (first,) = cluster.start(1)
        org_id, headers = cluster.org_key("acme")
        cluster.cli("org", "add-arc", org_id, "--url", arc.url, "--database", "acme")
        with httpx.Client(timeout=10) as http:

            def written() -> bool:
                body = {"agent_id": "a", "content": "probe"}
                response = http.post(f"{first.url}{MEM}", json=body, headers=headers)
                return response.status_code in (201, 409) and bool(
                    cluster.sql("SELECT 1 FROM arc_outbox LIMIT 1")
                )

            wait_until(written, timeout=5)  # the binding reached the replica
            for n in range(50):
                body = {"agent_id": "a", "content": f"to arc {n}"}
                assert http.post(f"{first.url}{MEM}", json=body, headers=headers).status_code == 201
        wait_until(
            lambda: cluster.sql(
                "SELECT count(*) = 0 AS all_claimed FROM arc_outbox WHERE lease_owner IS NULL"
            )[0]["all_claimed"],
            timeout=10,
        )
        (second,) = cluster.start(1)
        first.kill()
        killed = time.monotonic()
        emulator.fail_writes_after = None  # Arc is back
        wait_until(lambda: emulator.flush() >= 0 and len(shipped(emulator)) >= 51, timeout=30)
        assert time.monotonic() - killed < 30  # not the 600 s lease
        assert second.proc is not None and second.proc.poll() is None
        assert {f"to arc {n}" for n in range(50)} <= set(shipped(emulator))
    finally:
        arc.stop()


def shipped(emulator: ArcEmulator) -> list[str]:
    try:
        return [str(row[0]) for row in emulator.sql("acme", 'SELECT content FROM "events"')]
    except Exception:
        return []


def test_cli_works_against_the_cluster(cluster: Cluster) -> None:
    (replica,) = cluster.start(1)
    org_id, headers = cluster.org_key("acme")
    assert org_id in cluster.cli("org", "list")
    with httpx.Client(timeout=10) as http:
        wait_until(lambda: http.get(f"{replica.url}{MEM}", headers=headers).status_code == 200)
        body = {"agent_id": "a", "content": "kept"}
        assert http.post(f"{replica.url}{MEM}", json=body, headers=headers).status_code == 201
    result = run_cli("org", "delete", "acme", "--purge", data_dir=cluster.root / "cli",
                     env=cluster.env)  # fmt: skip
    assert "purged" in result.stderr
    assert cluster.sql("SELECT count(*) AS n FROM memories")[0]["n"] == 0
    assert KEY_RE.fullmatch(cluster.cli("key", "create", "--org", "default", "--name", "x"))


def test_sigterm_drains_an_in_flight_write_while_the_others_serve(cluster: Cluster) -> None:
    """A rolling restart: SIGTERM to a replica in the middle of a request. The replica stops
    accepting connections at once (the balancer sends new ones elsewhere), finishes the request
    it has started, acknowledges it, and exits 0; the write is visible on the other replica."""
    leaving, staying = cluster.start(2)
    _, headers = cluster.org_key("acme")
    with httpx.Client(timeout=10) as http:
        wait_until(lambda: http.get(f"{leaving.url}{MEM}", headers=headers).status_code == 200)
    body = orjson.dumps({"agent_id": "a", "content": "written during a rolling restart"})
    head = (
        f"POST {MEM} HTTP/1.1\r\nhost: 127.0.0.1:{leaving.port}\r\n"
        f"x-api-key: {headers['x-api-key']}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nexpect: 100-continue\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", leaving.port), timeout=30) as conn:
        conn.sendall(head)
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):  # the app is reading the body: in flight
            interim += conn.recv(1)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        assert leaving.proc is not None
        leaving.proc.send_signal(signal.SIGTERM)

        def refusing() -> bool:
            try:
                socket.create_connection(("127.0.0.1", leaving.port), timeout=1).close()
            except ConnectionRefusedError:
                return True
            return False

        wait_until(refusing, timeout=10)  # draining: no new connection is accepted
        conn.sendall(body)
        response = b""
        while chunk := conn.recv(65536):  # the replica closes the connection after answering
            response += chunk
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 201"), response
    assert b"connection: close" in rest.lower()
    memory_id = orjson.loads(rest.partition(b"\r\n\r\n")[2])["id"]
    assert leaving.proc.wait(timeout=30) == 0
    with httpx.Client(timeout=10) as http:
        stored = http.get(f"{staying.url}{MEM}/{memory_id}", headers=headers)
    assert stored.status_code == 200
    assert stored.json()["content"] == "written during a rolling restart"


def test_an_arc_binding_added_by_the_cli_reaches_every_replica_within_two_seconds(
    cluster: Cluster,
) -> None:
    arc = EmulatorServer(ArcEmulator(token=None)).start()
    try:
        replicas = cluster.start(3)
        org_id, headers = cluster.org_key("acme")
        probes = itertools.count()
        with httpx.Client(timeout=10) as http:
            wait_until(
                lambda: all(http.get(f"{r.url}{MEM}", headers=headers).status_code == 200
                            for r in replicas),
            )  # fmt: skip

            def routed_to_arc(replica: ServerProcess) -> bool:
                """A fresh write on ``replica`` went to the org's Arc outbox, not its table."""
                content = f"probe {next(probes)}"
                body = {"agent_id": "a", "content": content}
                response = http.post(f"{replica.url}{MEM}", json=body, headers=headers)
                assert response.status_code == 201, response.text
                query = (
                    "SELECT count(*) AS n FROM arc_outbox WHERE org_id = '{}' AND content = '{}'"
                )
                return bool(cluster.sql(query.format(org_id, content))[0]["n"])

            assert not any(routed_to_arc(r) for r in replicas)
            cluster.cli("org", "add-arc", org_id, "--url", arc.url, "--database", "acme")
            bound = time.monotonic()
            for replica in replicas:
                wait_until(lambda r=replica: routed_to_arc(r), timeout=2.0, interval=0.05)
            assert time.monotonic() - bound <= 2.0
    finally:
        arc.stop()
