"""Query latency over HTTP at 100k+ memories: recall, search, session context, agent stats.

.venv/bin/python -m bench.query --memories 200000
"""

from __future__ import annotations

import argparse

import httpx
import orjson

from bench.common import RARE_WORD, Server, batches, measure, print_table
from bench.ingest import ingest


def populate(server: Server, memories: int) -> str:
    """Load the org, plus one session of 500 memories; returns that session's id."""
    ingest(server.url, server.key, list(batches(memories, 1000)), clients=4)
    with httpx.Client(base_url=server.url, headers={"x-api-key": server.key}) as http:
        sid = http.post("/api/v1/sessions", json={"agent_id": "agent_001"}).json()["id"]
        items = [
            {
                "agent_id": "agent_001",
                "session_id": sid,
                "content": f"step {i} of the task",
                "memory_type": ("episodic", "decision", "entity")[i % 3],
                "event_type": "error" if i % 50 == 0 else "step",
            }
            for i in range(500)
        ]
        response = http.post(
            "/api/v1/memories",
            content=orjson.dumps({"memories": items}),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 201, response.text
    return sid


def run_queries(url: str, key: str, session_id: str, repeat: int) -> dict[str, dict[str, float]]:
    with httpx.Client(base_url=url, headers={"x-api-key": key}) as http:

        def check(response: httpx.Response) -> None:
            assert response.status_code == 200, response.text

        queries = {
            "recall (agent, since=24h, limit 50)": lambda: check(
                http.get(
                    "/api/v1/memories",
                    params={"agent_id": "agent_042", "since": "24h", "limit": 50},
                )
            ),
            "search content (rare word)": lambda: check(
                http.post("/api/v1/search", json={"content_contains": RARE_WORD})
            ),
            "search tag + type + since": lambda: check(
                http.post(
                    "/api/v1/search",
                    json={"tags": ["urgent"], "memory_types": ["decision"], "since": "7d"},
                )
            ),
            "session context (500 memories)": lambda: check(
                http.post(f"/api/v1/sessions/{session_id}/context", json={"max_tokens": 4000})
            ),
            "agent stats": lambda: check(http.get("/api/v1/agents/agent_042/stats")),
        }
        return {name: measure(call, repeat) for name, call in queries.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memories", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    server = Server.start()
    try:
        session_id = populate(server, args.memories)
        results = run_queries(server.url, server.key, session_id, args.repeat)
        print(f"query latency over HTTP, {args.memories:,} memories, {args.repeat} runs each")
        print_table(
            [
                (name, f"p50 {r['p50_ms']:.2f} ms   p99 {r['p99_ms']:.2f} ms")
                for name, r in results.items()
            ]
        )
        print_table([("server peak RSS", f"{server.peak_rss_mb():.0f} MiB")])
    finally:
        server.stop()


if __name__ == "__main__":
    main()
