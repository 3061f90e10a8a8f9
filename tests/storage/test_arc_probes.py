"""Probes never wait on a backend: with one org's Arc hanging (it accepts connections and
never answers), ``/health``, ``/ready`` and ``/metrics`` still answer at once, the process
stays ready, and the hang is reported for that org only (issue 14)."""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from http_api.app import create_app
from memtrace.auth.crypto import generate_master_key
from memtrace.config import load_settings
from memtrace.runtime import Runtime
from memtrace.testing.arc_server import EmulatorServer
from tests.helpers import create_org_key
from tests.storage.arc_support import eventually
from tests.storage.test_arc_runtime import arc_org

MEM = "/api/v1/memories"


@pytest.fixture
async def runtime(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Runtime]:
    monkeypatch.setenv("MEMTRACE_MASTER_KEY", generate_master_key())
    settings = load_settings(
        None,
        {
            "storage.data_dir": data_dir,
            "server.health_interval_s": 0.2,
            "server.health_timeout_s": 1.0,
            "arc.shutdown_drain_s": 0,
        },
    )
    rt = Runtime(settings)
    await rt.start()
    yield rt
    await rt.close()


async def test_probes_answer_at_once_while_an_org_s_arc_hangs(
    runtime: Runtime, arc_server: EmulatorServer
) -> None:
    app = create_app(runtime, manage_runtime=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=60
    ) as http:
        arc_org_id, arc_headers = await arc_org(runtime, arc_server)
        _, key = await create_org_key(runtime)
        plain = {"x-api-key": key}
        body = {"agent_id": "a", "content": "acknowledged before the hang"}
        assert (await http.post(MEM, json=body, headers=arc_headers)).status_code == 201

        arc_server.emulator.fault = "hang"
        try:

            async def reported() -> bool:
                store = (await http.get("/health")).json()["stores"].get(arc_org_id, {})
                return "no answer" in store.get("detail", "")

            await eventually(reported)
            timings: dict[str, list[float]] = {}
            for _ in range(10):
                for path in ("/health", "/ready", "/metrics"):
                    started = time.perf_counter()
                    response = await http.get(path)
                    timings.setdefault(path, []).append(time.perf_counter() - started)
                    assert response.status_code == 200, (path, response.text)
            for path, seconds in timings.items():
                # Each answer comes from memory; the hung Arc would hold it for 30 s
                # (arc.query_timeout_s). The median is the figure; a single answer on a loaded
                # machine may be descheduled for a while, never for the hang.
                assert statistics.median(seconds) < 0.1, (path, seconds)
                assert max(seconds) < 2.0, (path, seconds)
            health = (await http.get("/ready")).json()
            assert health["stores"][arc_org_id]["healthy"] is False
            metrics = (await http.get("/metrics")).text
            assert f'memtrace_store_healthy{{org_id="{arc_org_id}"}} 0.0' in metrics
            assert "memtrace_ready 1.0" in metrics
            # Another org is served as usual meanwhile.
            created = await http.post(MEM, json={"agent_id": "a", "content": "y"}, headers=plain)
            assert created.status_code == 201
            assert (await http.get(MEM, headers=plain)).json()["count"] == 1
        finally:
            arc_server.emulator.fault = None

        async def recovered() -> bool:
            store = (await http.get("/health")).json()["stores"][arc_org_id]
            return bool(store["healthy"])

        await eventually(recovered)
