"""The published Python SDK ``memtrace-sdk`` 0.2.0 (the real wheel) against a real ``memtrace
serve`` that took over a Go deployment: the Go keys, the Go-written Arc rows, every call of the
SDK without a 4xx the Go server did not give."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from memtrace.auth.crypto import generate_master_key
from memtrace.cli import cli
from memtrace.testing.arc_emulator import TEST_TOKEN
from memtrace.testing.arc_server import EmulatorServer
from tests.client.sdk020_wheel import load_sdk020
from tests.go_deployment import build_go_db, go_arc_columns, go_memories, write_go_rows
from tests.helpers import ServerProcess

pytestmark = pytest.mark.slow  # starts processes or servers (docs/testing.md)


def test_sdk020_against_a_migrated_go_deployment(
    tmp_path: Path, arc_server: EmulatorServer
) -> None:
    master = generate_master_key()
    go = build_go_db(tmp_path / "go.db", master, arc_url=arc_server.url, arc_api_key=TEST_TOKEN)
    acme = go.orgs["acme"]
    instance = next(i for i in go.arc if i["org_id"] == acme)
    wrote = go_memories(go, acme)
    with httpx.Client(base_url=arc_server.url) as http:
        columns = go_arc_columns(acme, wrote, time.time_ns())
        write_go_rows(http, instance["database"], "events", columns, TEST_TOKEN)
    data_dir = tmp_path / "data"
    migrated = CliRunner().invoke(
        cli,
        ["migrate-from-go", "--go-db", str(go.path), "--data-dir", str(data_dir)],
        env={"MEMTRACE_MASTER_KEY": master},
    )
    assert migrated.exit_code == 0, migrated.stderr
    server = ServerProcess(data_dir, env={"MEMTRACE_MASTER_KEY": master}).start()
    try:
        run_sdk(load_sdk020(tmp_path), server.url, go.key("acme-prod").plaintext, go, wrote)
    finally:
        server.stop()


def run_sdk(sdk: Any, url: str, key: str, go: Any, wrote: list[dict[str, Any]]) -> None:
    acme = go.orgs["acme"]
    crawler = go.agent(acme, "web_crawler")
    session = next(s for s in go.sessions if s["org_id"] == acme)
    with sdk.Memtrace(url, key) as client:  # the Go key: 48 characters, "=" padded
        everything = client.list_memories(sdk.ListOptions())
        assert everything.count == len(wrote)  # every Go memory
        assert {m.content for m in everything.memories} == {m["content"] for m in wrote}
        empty_since = client.list_memories(sdk.ListOptions(since="", order="asc"))
        assert empty_since.count == len(wrote)  # "?since=" means no bound, as with Go

        client.remember("web_crawler", "sdk 0.2.0 remembers")
        assert client.decide("web_crawler", "use the cache", "it is faster").memory_type == (
            "decision"
        )
        recent = client.recall("web_crawler")
        assert "sdk 0.2.0 remembers" in {m.content for m in recent.memories}
        client.add_memory(
            sdk.AddMemoryRequest(
                agent_id=crawler["id"], memory_type="entity", event_type="customer_fact",
                content="Acme prefers email", session_id=session["id"], tags=["crm"],
                importance=0.9, metadata={"source": "sdk"},
            )
        )  # fmt: skip
        batch = client.add_memories(
            [sdk.AddMemoryRequest(agent_id="agent_1", memory_type="episodic",
                                  event_type="general", content=f"batch {i}") for i in range(3)]
        )  # fmt: skip
        assert len(batch) == 3
        found = client.search_memories(sdk.SearchQuery(content_contains="pagination"))
        assert found.count == 1 and found.results[0].memory_type == "decision"

        agents = client.list_agents()
        assert {a.id for a in agents.agents} >= {a["id"] for a in go.agents if a["org_id"] == acme}
        support = client.get_agent("Support Agent")  # by its free-text name
        assert support.id == go.agent(acme, "Support Agent")["id"]
        assert client.get_agent(crawler["id"]).name == "web_crawler"
        made = client.register_agent(sdk.RegisterAgentRequest(name="Billing Bot"))
        assert made.name == "Billing Bot" and made.id.startswith("agent_")
        with pytest.raises(sdk.ConflictError):
            client.register_agent(sdk.RegisterAgentRequest(name="Billing Bot"))
        assert client.get_agent_stats("nobody").memory_count == 0
        stats = client.get_agent_stats(crawler["id"])
        assert stats.memory_count >= 4 and stats.session_count == 1
        mine = client.get_agent_memories(crawler["id"])
        assert all(m.agent_id == crawler["id"] for m in mine.memories) and mine.count >= 4

        created = client.create_session(sdk.CreateSessionRequest(agent_id=crawler["id"]))
        assert client.get_session(created.id).status == "active"
        assert client.get_session(session["id"]).metadata == {"task": "product_research"}
        context = client.get_session_context("sess_abc")  # never created with POST /sessions
        assert context.memory_count == 2
        assert client.get_session_memories("sess_abc").count == 2
        listed = client.list_sessions(agent_id=crawler["id"])
        assert {s.id for s in listed.sessions} == {session["id"], created.id}
        assert client.close_session(created.id).status == "closed"
        client.delete_agent(made.id)
        with pytest.raises(sdk.NotFoundError):
            client.get_agent(made.id)
