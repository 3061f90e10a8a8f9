"""A real uvicorn process: smoke test over HTTP, graceful shutdown, SIGKILL durability."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx
import pytest

from tests.helpers import ServerProcess, Tenant, wait_until

pytestmark = pytest.mark.slow  # starts processes or servers (docs/testing.md)


def test_smoke_over_real_http(tenant: Tenant) -> None:
    with httpx.Client(base_url=tenant.url, headers={"x-api-key": tenant.key}) as client:
        created = client.post("/api/v1/memories", json={"agent_id": "smoke", "content": "hi"})
        assert created.status_code == 201
        sid = client.post("/api/v1/sessions", json={"agent_id": "smoke"}).json()["id"]
        assert client.get("/api/v1/memories", params={"since": "1h"}).json()["count"] == 1
        assert client.post(f"/api/v1/sessions/{sid}/context").status_code == 200
        assert client.get("/api/v1/agents/smoke/stats").json()["memory_count"] == 1
        assert client.get("/openapi.json").json()["info"]["title"] == "memtrace"
        assert client.get("/nope").json() == {"error": "not found"}
        assert client.get("/ready").status_code == 200


def test_first_start_prints_key_once_and_sigterm_is_graceful(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path / "d").start()
    assert first.admin_key and first.output.count("mtk_") == 1
    # uvicorn finishes in-flight work, runs the lifespan shutdown (closing the stores), then
    # re-raises SIGTERM, which ends the process with status 0 (cli.common.exit_on_sigterm).
    assert first.kill(signal.SIGTERM) == 0
    assert "Application shutdown complete" in first.log_path.read_text()
    second = ServerProcess(tmp_path / "d").start()
    try:
        assert second.admin_key is None  # not printed again on later starts
        response = httpx.get(f"{second.url}/api/v1/agents", headers={"x-api-key": first.admin_key})
        assert response.status_code == 200
    finally:
        second.stop()


def test_sigkill_loses_no_acknowledged_memory(tmp_path: Path) -> None:
    """Concurrent writers, SIGKILL mid-load, restart: every 201 is there, exactly once."""
    proc = ServerProcess(tmp_path / "d").start()
    key = proc.admin_key
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n: int) -> None:
        with httpx.Client(base_url=proc.url, headers={"x-api-key": key}, timeout=5) as client:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    if i % 5 == 0:  # mix batches in
                        items = [
                            {"agent_id": f"w{n}", "content": f"w{n}-{i}-{j}"} for j in range(20)
                        ]
                        response = client.post("/api/v1/memories", json={"memories": items})
                        ids = [m["id"] for m in response.json()["memories"]]
                    else:
                        response = client.post(
                            "/api/v1/memories", json={"agent_id": f"w{n}", "content": f"w{n}-{i}"}
                        )
                        ids = [response.json()["id"]]
                except (httpx.TransportError, ValueError):
                    return  # the server died under us: that request was not acknowledged
                if response.status_code == 201:
                    with lock:
                        acknowledged.extend(ids)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    try:

        def enough() -> bool:
            with lock:
                return len(acknowledged) >= 1500

        wait_until(enough, timeout=60, interval=0.01)
        assert proc.kill(signal.SIGKILL) == -signal.SIGKILL
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    restarted = ServerProcess(tmp_path / "d").start()
    try:
        seen: list[str] = []
        contents: list[str] = []
        with httpx.Client(base_url=restarted.url, headers={"x-api-key": key}) as client:
            offset = 0
            while True:
                page = client.get(
                    "/api/v1/memories", params={"limit": 1000, "offset": offset, "order": "asc"}
                ).json()
                seen += [m["id"] for m in page["memories"]]
                contents += [m["content"] for m in page["memories"]]
                offset += page["count"]
                if not page["has_more"]:
                    break
        assert len(seen) == len(set(seen)) and len(contents) == len(set(contents))
        missing = set(acknowledged) - set(seen)
        assert not missing, f"{len(missing)} acknowledged memories lost"
    finally:
        restarted.stop()


def test_shutdown_delay_turns_ready_off_while_requests_are_still_served(tmp_path: Path) -> None:
    """server.shutdown_delay_s: after SIGTERM the server keeps serving while /ready says 503,
    so a load balancer takes it out of rotation before it stops accepting; a second signal
    stops it without waiting out the delay."""
    server = ServerProcess(tmp_path / "d", env={"MEMTRACE_SERVER_SHUTDOWN_DELAY_S": "300"})
    server.start()
    assert server.proc is not None and server.admin_key
    headers = {"x-api-key": server.admin_key}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        assert client.get("/ready").status_code == 200
        server.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: client.get("/ready").status_code == 503)
        assert client.get("/ready").json()["draining"] is True
        created = client.post("/api/v1/memories", json={"agent_id": "a", "content": "late"})
        assert created.status_code == 201  # still served: the balancer may not have noticed
        assert client.get("/health").status_code == 200  # alive, only not ready
    assert server.proc.poll() is None
    assert server.kill(signal.SIGTERM) == 0  # the second signal: graceful, without the delay
    restarted = ServerProcess(tmp_path / "d").start()
    try:
        with httpx.Client(base_url=restarted.url, headers=headers) as client:
            listed = client.get("/api/v1/memories").json()["memories"]
        assert [m["content"] for m in listed] == ["late"]
    finally:
        restarted.stop()
