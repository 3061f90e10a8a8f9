"""The benchmark suite's parts work end to end on a tiny org (CI also runs `make bench-quick`).

Checks what the figures rely on, never the numbers: the generated org is a normal deployment
that a real `memtrace serve` reads, with the promised shape (agents, sessions, the 500-memory
session, the rare word), and every load of bench/run.py succeeds against it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from bench import timeline as bench_timeline
from bench.common import RARE_WORD, Server
from bench.generate import CONTEXT_SESSION_SIZE, generate
from bench.run import ingest_figure, query_figures, remember_figure, table

pytestmark = pytest.mark.slow  # starts processes or servers (docs/testing.md)


def test_generated_org_is_served_and_every_load_runs(tmp_path: Path) -> None:
    org = generate(tmp_path / "data", 6000, days=1, seed=3)  # 100 agents, ~60 each
    assert org.memories == 6000 + CONTEXT_SESSION_SIZE
    server = Server.start(org.data_dir, key=org.key)
    try:
        headers = {"x-api-key": org.key}
        with httpx.Client(base_url=server.url, headers=headers) as http:
            agents = http.get("/api/v1/agents", params={"limit": 100}).json()["agents"]
            assert len(agents) == 100
            listed = http.get(
                f"/api/v1/sessions/{org.context_session}/memories", params={"limit": 1000}
            ).json()
            assert listed["count"] == CONTEXT_SESSION_SIZE
            total = http.post("/api/v1/search", json={"limit": 1000, "since": "2d"}).json()
            assert total["count"] == 1000
            types = {m["memory_type"] for m in total["results"]}
            assert types == {"episodic", "decision", "entity", "session"}
            assert any(m.get("tags") for m in total["results"])
            rare = http.post("/api/v1/search", json={"content_contains": RARE_WORD}).json()
            assert all(RARE_WORD in m["content"] for m in rare["results"])

        queries = asyncio.run(query_figures(server, org.context_session, repeat=3))
        assert queries["recall"]["rows"] == 50
        assert queries["session_context"]["rows"] > 0
        assert queries["timeline"]["rows"] in (720, 721)  # 30 days of hourly buckets
        remember = asyncio.run(remember_figure(server, 200, clients=8))
        assert remember["requests_per_s"] > 0 and remember["server_cpu_us_per_request"] > 0
        ingest = asyncio.run(ingest_figure(server, 2000, clients=2))
        assert ingest["memories"] == 2000 and ingest["memories_per_s"] > 0
        rendered = table(
            {
                "meta": {
                    "date": "d",
                    "commit": "c",
                    "machine": "m",
                    "quick": True,
                    "load_at_start": "0",
                    "load_at_end": "0",
                },
                "figures": {**queries, "single_remember": remember, "batched_ingest": ingest},
            }
        )
        assert "| recall (agent, since=24h, limit 50), big org |" in rendered
    finally:
        server.stop()
    # bench/timeline.py over the same org (every case answers; a server of its own)
    timeline = bench_timeline.run(0, 2, 1, 0, org.data_dir, org.key)
    assert set(timeline["figures"]) == {label for label, _ in bench_timeline.CASES}
    # (the org plus what the load figures above wrote)
    assert timeline["figures"]["30d, 1h buckets, no grouping"]["total"] >= org.memories
