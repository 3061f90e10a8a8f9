"""``memtrace serve --workers N`` and several server processes on one data directory.

Two single-process servers on the same data directory exercise, deterministically, what the
workers of one server share through the SQLite files (which worker a request reaches is the
kernel's choice): every acknowledged memory stored once, exact dedup, ids in write order, an
agent deleted by one process registered again by the other's next write. A real
``--workers 2`` server then shows the rest: one admin key, one rate-limit allowance and one
set of metrics for all workers, a clean stop, and the workers going down with a killed parent.
"""

from __future__ import annotations

import os
import signal
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.helpers import KEY_RE, ServerProcess, run_cli, wait_until

pytestmark = pytest.mark.slow  # starts processes or servers (docs/testing.md)

MEM = "/api/v1/memories"
TWO_WORKERS = {"MEMTRACE_SERVER_WORKERS": "2"}
# Spawning two interpreters takes a while on a loaded machine (17 s seen with load 16).
STARTUP_S = 180.0


def _post(url: str, key: str, body: object) -> httpx.Response:
    # A new connection per request: with several workers, each may reach another one.
    with httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=30) as client:
        return client.post(MEM, json=body)


def test_two_processes_on_one_data_dir_write_as_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = ServerProcess(data).start()
    second = ServerProcess(data).start()
    try:
        key = first.admin_key
        assert key and second.admin_key is None  # the deployment's key is printed once
        urls = [first.url, second.url]
        # concurrent single writes through both processes
        with ThreadPoolExecutor(8) as pool:
            responses = list(
                pool.map(
                    lambda n: _post(
                        urls[n % 2], key, {"agent_id": f"w{n % 4}", "content": f"m{n}"}
                    ),
                    range(120),
                )
            )
        assert all(r.status_code == 201 for r in responses)
        acked = [r.json()["id"] for r in responses]
        # the same memory sent many times at once to both: stored once, the rest are 409s
        same = {"agent_id": "dup", "content": "exactly once", "event_type": "step"}
        with ThreadPoolExecutor(8) as pool:
            racing = list(pool.map(lambda n: _post(urls[n % 2], key, same), range(16)))
        assert sorted(r.status_code for r in racing) == [201] + [409] * 15
        winner = next(r.json()["id"] for r in racing if r.status_code == 201)
        assert {r.json()["existing_id"] for r in racing if r.status_code == 409} == {winner}
        # every acknowledged memory stored once; ids increase in write order across processes
        with sqlite3.connect(data / "orgs" / "org_default" / "memories.db") as conn:
            ids = [row[0] for row in conn.execute("SELECT id FROM memories ORDER BY rowid")]
        assert sorted(ids) == ids and len(set(ids)) == len(ids) == 121
        assert set(acked) | {winner} == set(ids)

        # An agent the first process knows, deleted through the second: once the first has
        # reloaded (it accepts a key created after the deletion), its next write registers
        # the agent again before answering.
        admin = {"x-api-key": key}
        assert _post(first.url, key, {"agent_id": "known", "content": "one"}).status_code == 201
        deleted = httpx.delete(f"{second.url}/api/v1/agents/known", headers=admin, timeout=30)
        assert deleted.status_code in (200, 204), deleted.text
        marker = run_cli(
            "key", "create", "--org", "org_default", "--name", "marker", data_dir=data
        ).stdout.strip()
        wait_until(lambda: _accepted(first.url, marker), timeout=30)
        assert _post(first.url, key, {"agent_id": "known", "content": "two"}).status_code == 201
        agent = httpx.get(f"{second.url}/api/v1/agents/known", headers=admin, timeout=30)
        assert agent.status_code == 200, agent.text
    finally:
        first.stop()
        second.stop()


def _accepted(url: str, key: str) -> bool:
    response = httpx.get(f"{url}/api/v1/agents", headers={"x-api-key": key}, timeout=30)
    return response.status_code == 200


def _workers_started(server: ServerProcess) -> set[str]:
    return set(_pids(server.log_path.read_text(), "Started server process ["))


def _pids(text: str, marker: str) -> list[str]:
    return [line.split(marker, 1)[1].split("]")[0] for line in text.splitlines() if marker in line]


def test_two_workers_share_one_key_rate_limit_and_metrics(tmp_path: Path) -> None:
    env = {
        **TWO_WORKERS,
        "MEMTRACE_LIMITS_RATE_PER_S": "0.001",  # no refill during the test
        "MEMTRACE_LIMITS_RATE_BURST": "10",
    }
    server = ServerProcess(tmp_path / "data", env=env).start(timeout=STARTUP_S)
    try:
        wait_until(lambda: len(_workers_started(server)) == 2, timeout=STARTUP_S)
        assert server.admin_key
        assert len(KEY_RE.findall(server.log_path.read_text())) == 1
        statuses = [
            _post(server.url, server.admin_key, {"agent_id": "a", "content": f"n{n}"}).status_code
            for n in range(25)
        ]
        # one allowance of 10 for the key, whichever worker each connection reached
        assert statuses.count(201) == 10 and statuses.count(429) == 15, statuses
        metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
        written = next(
            line for line in metrics.splitlines() if line.startswith("memtrace_memories_written")
        )
        assert written.endswith(" 10.0"), written
        # (429s are answered outside the metrics middleware, as in a single process)
        created = [
            line
            for line in metrics.splitlines()
            if line.startswith("memtrace_http_requests_total") and 'status="201"' in line
        ]
        assert created and created[0].endswith(" 10.0"), created
        # gauges of shared state: one series, the latest check of any worker (not one per pid)
        assert "memtrace_ready 1.0" in metrics.splitlines(), metrics
    finally:
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=60) == 0
    for pid in _workers_started(server):  # the workers were stopped, not orphaned
        wait_until(lambda p=int(pid): not _alive(p), timeout=30)  # type: ignore[misc]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_killing_the_parent_kills_its_workers(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", env=TWO_WORKERS).start(timeout=STARTUP_S)
    wait_until(lambda: len(_workers_started(server)) == 2, timeout=STARTUP_S)
    workers = [int(pid) for pid in _workers_started(server)]
    assert server.kill(signal.SIGKILL) == -signal.SIGKILL
    for pid in workers:
        wait_until(lambda p=pid: not _alive(p), timeout=30)  # type: ignore[misc]
    server.start(timeout=STARTUP_S)  # the data dir (and its write lock) is free for the next server
    try:
        assert httpx.get(f"{server.url}/health", timeout=30).status_code == 200
    finally:
        server.stop()


def test_two_workers_dedup_once_and_refuse_a_revoked_key_everywhere(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data, env=TWO_WORKERS).start(timeout=STARTUP_S)
    try:
        wait_until(lambda: len(_workers_started(server)) == 2, timeout=STARTUP_S)
        assert server.admin_key
        # the same memory sent at once on many connections (both workers): stored once
        same = {"agent_id": "dup", "content": "once across workers", "dedup_key": "k1"}
        with ThreadPoolExecutor(8) as pool:
            racing = list(pool.map(lambda _: _post(server.url, server.admin_key, same), range(16)))
        assert sorted(r.status_code for r in racing) == [201] + [409] * 15
        # a key revoked from a shell is refused by every worker (new connections each time)
        created = run_cli(
            "key", "create", "--org", "org_default", "--name", "leaving", data_dir=data
        ).stdout
        secret = KEY_RE.findall(created)[0]
        wait_until(lambda: all(_accepted(server.url, secret) for _ in range(8)), timeout=30)
        listed = run_cli("key", "list", "--org", "org_default", data_dir=data).stdout
        key_id = next(line.split("\t")[0] for line in listed.splitlines() if "\tleaving\t" in line)
        run_cli("key", "revoke", key_id, data_dir=data)
        wait_until(lambda: not any(_accepted(server.url, secret) for _ in range(8)), timeout=30)
        refused = [_post(server.url, secret, {"agent_id": "a", "content": "x"}) for _ in range(8)]
        assert {r.status_code for r in refused} == {401}
    finally:
        server.stop()
