"""One tenant never slows, starves or stops another, on a real ``memtrace serve`` (issue 14):
org B's latency while org A runs the worst loads, stream caps and idle lifetime, a process
with more orgs than its open-file limit allows open at once, and readiness on a full disk."""

from __future__ import annotations

import resource
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from bench import fairness
from memtrace.auth.keys import new_api_key
from memtrace.auth.permissions import parse_permissions
from memtrace.domain.ids import new_org_id
from memtrace.domain.timestamps import now_us
from memtrace.metadata import sqlite as md
from tests.helpers import ServerProcess, wait_until

pytestmark = pytest.mark.slow  # starts processes or servers (docs/testing.md)

MEM = "/api/v1/memories"


def add_orgs(server: ServerProcess, orgs: int, keys_per_org: int = 1) -> list[list[str]]:
    """New orgs with read+write keys, written to the running server's metadata DB (as the
    CLI would, without a process per key); returns each org's keys once the server uses them."""
    now = now_us()
    created: list[list[str]] = []
    conn = sqlite3.connect(server.data_dir / "memtrace.db", isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for _ in range(orgs):
            org_id = new_org_id()
            md.insert_org(conn, org_id, f"fairness {org_id[4:]}", now)
            keys = []
            for n in range(keys_per_org):
                record, plain = new_api_key(
                    org_id, f"k{n}", parse_permissions("read,write"), rounds=4, now=now
                )
                md.insert_key(conn, record)
                keys.append(plain)
            created.append(keys)
        conn.execute("COMMIT")
    finally:
        conn.close()
    last = {"x-api-key": created[-1][-1]}
    wait_until(lambda: httpx.get(f"{server.url}{MEM}", headers=last).status_code == 200)
    return created


@pytest.fixture
def server_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


# -- fairness ---------------------------------------------------------------------------------


async def test_org_b_keeps_its_latency_while_org_a_runs_the_worst_loads() -> None:
    """Org A: scan searches, huge contexts and more streams than its key may hold; org B,
    one request at a time, compares its latency with the quiet phases of the same run.

    The bound is generous on purpose: this machine is shared, and its neighbours move a p99
    by several times between runs. What it catches is queueing behind a tenant: before the
    read lanes, org B's recall waited behind org A's scans for seconds (p99 x100 and more,
    bench/README.md), and its probes for five seconds.
    """
    shape = fairness.Shape(
        a_memories=400, a_content=64 * 1024 - 64, phase_s=6, scanners=4, contexts=2, streams=110
    )
    figures = await fairness.run(shape)
    for op in fairness.OPS:
        f = figures[op]
        bound = max(5 * f["quiet_p99_ms"], f["quiet_p99_ms"] + 150)
        assert f["loaded_p99_ms"] <= bound, (op, figures)
    done = figures["org_a"]
    assert done.get("stream 429", 0) > 0  # org A's key held all the streams it may hold
    assert any(k.startswith("search 200") for k in done)  # and its scans were answered
    assert any(k.startswith("context") for k in done)


# -- streams ----------------------------------------------------------------------------------


class Stream:
    """A ``GET /sse`` held open (its line iterator too: dropping it would close the stream)."""

    def __init__(self, stack: ExitStack, url: str, key: str) -> None:
        client = stack.enter_context(httpx.Client(base_url=url, timeout=30))
        self.response = stack.enter_context(
            client.stream("GET", "/sse", headers={"x-api-key": key})
        )
        self.status_code = self.response.status_code
        if self.status_code == 200:
            self.lines = self.response.iter_lines()
            stack.callback(self.lines.close)  # (which keeps it alive until then)
            first = next(self.lines)  # established: the endpoint event
            assert first.startswith("event: endpoint"), first

    def error(self) -> str:
        self.response.read()
        assert self.response.headers["retry-after"]
        return str(self.response.json()["error"])


def open_stream(stack: ExitStack, url: str, key: str) -> Stream:
    return Stream(stack, url, key)


def test_streams_are_capped_per_key_per_org_and_in_all(server_dir: Path) -> None:
    env = {
        "MEMTRACE_LIMITS_STREAMS_PER_KEY": "2",
        "MEMTRACE_LIMITS_STREAMS_PER_ORG": "3",
        "MEMTRACE_LIMITS_MAX_STREAMS": "4",
    }
    server = ServerProcess(server_dir, env=env).start()
    try:
        (a1, a2), (b1, _), (c1, _) = add_orgs(server, 3, keys_per_org=2)
        with ExitStack() as stack:
            assert [open_stream(stack, server.url, a1).status_code for _ in range(2)] == [200] * 2
            refused = open_stream(stack, server.url, a1)
            assert refused.status_code == 429 and "limits.streams_per_key" in refused.error()
            assert open_stream(stack, server.url, a2).status_code == 200  # another key of A
            by_org = open_stream(stack, server.url, a2)
            assert by_org.status_code == 429 and "limits.streams_per_org" in by_org.error()
            assert open_stream(stack, server.url, b1).status_code == 200  # org B: its own
            total = open_stream(stack, server.url, c1)
            assert total.status_code == 429 and "limits.max_streams" in total.error()
            assert "memtrace_open_streams 4.0" in httpx.get(f"{server.url}/metrics").text
            # Streams never take the slots REST, /mcp and the probes need.
            assert httpx.get(f"{server.url}/health").status_code == 200
            rest = httpx.get(f"{server.url}{MEM}", headers={"x-api-key": c1})
            assert rest.status_code == 200
        # Closed streams free their slots.
        wait_until(lambda: _stream_status(server.url, c1) == 200)
    finally:
        server.stop()


def _stream_status(url: str, key: str) -> int:
    with ExitStack() as stack:
        return open_stream(stack, url, key).status_code


def test_idle_streams_end_and_get_mcp_is_405(server_dir: Path) -> None:
    server = ServerProcess(server_dir, env={"MEMTRACE_LIMITS_STREAM_IDLE_S": "1"}).start()
    try:
        assert server.admin_key
        with ExitStack() as stack:
            stream = open_stream(stack, server.url, server.admin_key)
            assert stream.status_code == 200
            rest = list(stream.lines)  # ends by itself: no message for 1 s
            assert not any(line.startswith("event: message") for line in rest)
        # Streamable HTTP is stateless here: no standalone GET stream to hold open.
        mcp = httpx.get(
            f"{server.url}/mcp",
            headers={"x-api-key": server.admin_key, "accept": "text/event-stream"},
        )
        assert mcp.status_code == 405 and mcp.headers["allow"] == "POST"
        assert "stateless" in mcp.json()["error"]
    finally:
        server.stop()


# -- file descriptors -------------------------------------------------------------------------


def _open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
def test_more_orgs_than_the_open_file_limit_allows_open_at_once(server_dir: Path) -> None:
    server = ServerProcess(server_dir).start()  # storage.max_open_stores: the default (128)
    assert server.proc is not None
    try:
        keys = [k for (k,) in add_orgs(server, 80)]
        pid = server.proc.pid
        # Room for about ten stores beside what the server holds now; 80 orgs will come.
        limit = _open_fds(pid) + 40
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for round_no in range(2):
                for n, key in enumerate(keys):
                    headers = {"x-api-key": key}
                    body = {"agent_id": "a", "content": f"org {n} round {round_no}"}
                    created = client.post(MEM, json=body, headers=headers)
                    assert created.status_code == 201, created.text
                    listed = client.get(MEM, headers=headers)
                    assert listed.status_code == 200, listed.text
                    assert listed.json()["count"] == round_no + 1
                assert _open_fds(pid) <= limit
            assert client.get("/health").status_code == 200
        assert "Traceback" not in server.log_path.read_text()
    finally:
        server.stop()


# -- readiness --------------------------------------------------------------------------------


def test_not_ready_while_the_data_directory_takes_no_writes(server_dir: Path) -> None:
    server = ServerProcess(server_dir, env={"MEMTRACE_SERVER_HEALTH_INTERVAL_S": "0.2"}).start()
    assert server.proc is not None and server.admin_key
    headers = {"x-api-key": server.admin_key}
    try:
        assert httpx.get(f"{server.url}/ready").status_code == 200
        # No file of the process may grow past 1 KiB: nothing can be stored any more.
        _, hard = resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, (1024, hard))
        wait_until(lambda: httpx.get(f"{server.url}/ready").status_code == 503)
        body = httpx.get(f"{server.url}/ready").json()
        assert body["disk"]["writable"] is False and "File too large" in body["disk"]["detail"]
        assert "memtrace_ready 0.0" in httpx.get(f"{server.url}/metrics").text
        refused = httpx.post(
            f"{server.url}{MEM}", json={"agent_id": "a", "content": "x" * 5000}, headers=headers
        )
        assert refused.status_code == 503
        resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
        wait_until(lambda: httpx.get(f"{server.url}/ready").status_code == 200)
        body = {"agent_id": "a", "content": "y"}
        assert httpx.post(f"{server.url}{MEM}", json=body, headers=headers).status_code == 201
    finally:
        server.stop()
