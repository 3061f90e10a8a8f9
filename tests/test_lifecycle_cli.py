"""The lifecycle commands (forget, export, import, audit, org retention) in process, and the
round trip export → import into a fresh server reproducing the org in every API answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from http_api.app import create_app
from memtrace.cli import cli
from memtrace.config import load_settings
from memtrace.runtime import Runtime
from tests.helpers import create_org_key


def invoke(data_dir: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [*args, "--data-dir", str(data_dir)])
    return result.exit_code, result.stdout, result.stderr


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


@asynccontextmanager
async def served(data_dir: Path, org_id: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """A runtime on ``data_dir`` and an in-process client with a read+write key of the org
    (created unless ``org_id`` names an existing one)."""
    runtime = Runtime(load_settings(None, {"storage.data_dir": data_dir}))
    await runtime.start(sweep=False)
    try:
        _, key = await create_org_key(runtime, "acme", org_id=org_id)
        transport = httpx.ASGITransport(app=create_app(runtime, manage_runtime=False))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://localhost", headers={"x-api-key": key}
        ) as client:
            yield client
    finally:
        await runtime.close()


def run(fn: Callable[[], Any]) -> Any:
    return asyncio.run(fn())


SEED: list[dict[str, Any]] = [
    {"agent_id": "crawler", "content": "Started crawl of example.com", "tags": ["crawl"]},
    {
        "agent_id": "crawler",
        "content": "Found 3 PRODUCT pages — ünïcödé ✓",
        "event_type": "page_crawled",
        "importance": 0.7,
        "metadata": {"pages": 3, "nested": {"ok": None, "list": [1, 2.5, "x"]}},
        "tags": ["crawl", "products"],
        "time": ago(hours=30),
    },
    {
        "agent_id": "crawler",
        "content": "Skip pagination",
        "memory_type": "decision",
        "event_type": "decision",
        "metadata": {"reasoning": "only 2 pages"},
        "parent_id": "mem_01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "time": ago(hours=2),
    },
    {"agent_id": "planner", "content": "Acme Corp", "memory_type": "entity", "time": ago(days=3)},
    {"agent_id": "crawler", "content": "429 from pricing API", "event_type": "error"},
    {"agent_id": "crawler", "content": "same second", "time": ago(hours=1), "dedup_key": "d1"},
]


async def seed(api: httpx.AsyncClient) -> str:
    """Memories of every shape (and a session); returns the org id."""
    session = (await api.post("/api/v1/sessions", json={"agent_id": "crawler"})).json()["id"]
    body = [{**m, "session_id": session} if i % 2 else m for i, m in enumerate(SEED)]
    response = await api.post("/api/v1/memories", json={"memories": body})
    assert response.status_code == 201 and response.json()["count"] == len(SEED), response.text
    batch = [{"agent_id": "etl", "content": f"row {i}", "time": ago(minutes=i)} for i in range(40)]
    assert (await api.post("/api/v1/memories", json={"memories": batch})).status_code == 201
    return str(response.json()["memories"][0]["org_id"])


async def answers(api: httpx.AsyncClient) -> dict[str, Any]:
    """What the API says about the org's memories (everything export/import carries)."""
    out: dict[str, Any] = {}
    listed = await api.get("/api/v1/memories", params={"limit": 1000, "order": "asc"})
    out["list"] = listed.content
    for memory in listed.json()["memories"]:
        out[memory["id"]] = (await api.get(f"/api/v1/memories/{memory['id']}")).content
    for needle in ("product", "row 1", "ü"):
        found = await api.post("/api/v1/search", json={"content_contains": needle, "limit": 1000})
        out[f"search {needle}"] = [m for m in found.json()["results"]]
    for params in ({"tags": "crawl"}, {"agent_id": "etl", "limit": 7}, {"event_type": "error"}):
        out[f"list {params}"] = (await api.get("/api/v1/memories", params=params)).content
    for agent in ("crawler", "planner", "etl"):
        context = await api.post(f"/api/v1/agents/{agent}/context", json={"since": "7d"})
        out[f"context {agent}"] = context.json()["context"]
        stats = (await api.get(f"/api/v1/agents/{agent}/stats")).json()
        out[f"stats {agent}"] = (stats["memory_count"], stats["memory_types"], stats["errors_24h"])
    out["export"] = (await api.get("/api/v1/export")).content
    return out


def test_export_then_import_into_a_fresh_server_reproduces_the_org(tmp_path: Path) -> None:
    source, target = tmp_path / "a", tmp_path / "b"
    dump = tmp_path / "acme.ndjson"

    async def first() -> tuple[str, dict[str, Any]]:
        async with served(source) as api:
            org_id = await seed(api)
            return org_id, await answers(api)

    org_id, before = run(first)
    code, _, err = invoke(source, "export", "--org", org_id, "-o", str(dump))
    assert code == 0, err
    assert len(dump.read_bytes().splitlines()) == len(SEED) + 40
    assert dump.read_bytes() == before["export"]  # the CLI writes what GET /export streams

    assert invoke(target, "org", "create", "acme", "--id", org_id)[0] == 0
    code, out, err = invoke(target, "import", "--org", org_id, str(dump))
    assert code == 0, err
    assert out.strip() == f"imported {len(SEED) + 40}"
    code, out, _ = invoke(target, "import", "--org", org_id, str(dump))  # idempotent by id
    assert out.strip() == "imported 0"

    async def second() -> dict[str, Any]:
        async with served(target, org_id) as api:
            return await answers(api)

    after = run(second)
    assert after.keys() == before.keys()
    for name in before:
        assert after[name] == before[name], name
    code, out, _ = invoke(target, "audit", "--org", org_id)
    lines = [line.split("\t") for line in out.splitlines()]
    assert [(x[1], x[2], x[3]) for x in lines] == [
        ("cli", "import", "0"),
        ("cli", "import", str(len(SEED) + 40)),
    ]


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (['{"id": "mem_01ARZ3NDEKTSV4RRFFQ69G5FAV"', "{}"], "line 1: not JSON"),
        (["GOOD", "[1, 2]"], "line 2: expected a JSON object"),
        (["GOOD", "", '{"id": "mem_1", "agent_id": "a"}'], "line 3: "),
        (["GOOD", "GOOD2", "BAD_AGENT"], "line 3: agent_id:"),
        (["GOOD", "NO_TIME"], "line 2: time:"),
        (["FUTURE"], "line 1: time: must not be more than 5 minutes in the future"),
        (["HUGE"], "line 1: content: must be at most 65536 bytes"),
    ],
)
def test_import_refuses_a_bad_file_whole(tmp_path: Path, lines: list[str], error: str) -> None:
    data_dir = tmp_path / "d"
    good: dict[str, Any] = {
        "id": "mem_01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "time": "2026-01-02T03:04:05.000006Z",
        "org_id": "org_elsewhere",
        "agent_id": "bot",
        "memory_type": "episodic",
        "event_type": "general",
        "content": "hello",
        "dedup_key": "k1",
    }
    variants = {
        "GOOD": good,
        "GOOD2": {**good, "id": "mem_01ARZ3NDEKTSV4RRFFQ69G5FAW"},
        "BAD_AGENT": {**good, "agent_id": "9 lives"},
        "NO_TIME": {k: v for k, v in good.items() if k != "time"},
        "FUTURE": {**good, "time": "2999-01-01T00:00:00Z"},
        "HUGE": {**good, "content": "x" * (64 * 1024 + 1)},
    }
    path = tmp_path / "bad.ndjson"
    path.write_bytes(
        b"\n".join(
            orjson.dumps(variants[line]) if line in variants else line.encode() for line in lines
        )
    )
    org_id = invoke(data_dir, "org", "create", "acme")[1].strip()
    code, out, err = invoke(data_dir, "import", "--org", org_id, str(path))
    assert code == 1 and error in err and "nothing was imported" in err, err
    code, out, _ = invoke(data_dir, "export", "--org", org_id)
    assert code == 0 and out == ""
    assert invoke(data_dir, "audit", "--org", org_id)[1] == ""


def test_forget_and_retention_commands(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"

    async def fill() -> str:
        async with served(data_dir) as api:
            old = [
                {"agent_id": "bot", "content": f"old {i}", "time": ago(days=40 + i)}
                for i in range(5)
            ]
            old.append(
                {
                    "agent_id": "bot",
                    "content": "old call",
                    "memory_type": "decision",
                    "time": ago(days=45),
                }
            )
            new = [{"agent_id": "alice", "content": f"alice {i}"} for i in range(3)]
            response = await api.post("/api/v1/memories", json={"memories": old + new})
            return str(response.json()["memories"][0]["org_id"])

    org_id = run(fill)
    assert invoke(data_dir, "forget", "--org", org_id)[0] != 0  # no filter
    code, _, err = invoke(data_dir, "forget", "--org", org_id)
    assert "filter: at least one filter is required" in err
    code, out, _ = invoke(data_dir, "forget", "--org", "acme", "--agent", "alice", "--dry-run")
    assert (code, out.strip()) == (0, "matched 3")
    code, out, err = invoke(
        data_dir, "forget", "--org", org_id, "--agent", "alice", "--delete-agent"
    )
    assert (code, out.strip()) == (0, "deleted 3") and "agent alice: deleted" in err

    code, out, _ = invoke(data_dir, "org", "retention", org_id)
    assert out.strip() == f"{org_id}: keep for ever (configuration defaults)"
    code, out, _ = invoke(
        data_dir, "org", "retention", org_id, "--days", "30", "--type", "decision=365", "--dry-run"
    )
    assert code == 0
    report = out.splitlines()
    assert report[0] == f"{org_id}: 30 days (decision: 365 days) (org policy)"
    assert report[1].startswith("would delete 5\tepisodic/entity/session\t")
    assert report[2].startswith("would delete 0\tdecision\t")
    # the dry run saved nothing
    assert (
        invoke(data_dir, "org", "retention", org_id)[1].strip().endswith("(configuration defaults)")
    )
    code, out, _ = invoke(
        data_dir, "org", "retention", org_id, "--days", "30", "--type", "decision=365"
    )
    assert out.strip() == f"{org_id}: 30 days (decision: 365 days) (org policy)"
    code, _, err = invoke(data_dir, "org", "retention", org_id, "--type", "dream=3")
    assert code == 1 and "type: 'dream' is not a memory type" in err
    code, _, err = invoke(data_dir, "org", "retention", org_id, "--type", "decision")
    assert code == 2 and "TYPE=DAYS" in err

    async def sweep() -> int:
        runtime = Runtime(load_settings(None, {"storage.data_dir": data_dir}))
        await runtime.start(sweep=False)
        try:
            deleted = await runtime.sweeper.run_once()
            metrics = runtime.metrics.render().decode()
            assert f'memtrace_retention_deleted_total{{org_id="{org_id}"}} 5.0' in metrics
            return deleted[org_id]
        finally:
            await runtime.close()

    assert run(sweep) == 5
    code, out, _ = invoke(data_dir, "export", "--org", org_id)
    assert [orjson.loads(line)["content"] for line in out.splitlines()] == ["old call"]
    audit = [
        line.split("\t") for line in invoke(data_dir, "audit", "--org", org_id)[1].splitlines()
    ]
    assert [(x[1], x[2], x[3]) for x in audit] == [
        ("retention", "retention", "5"),
        ("cli", "delete_agent", "1"),
        ("cli", "forget", "3"),
    ]
    assert orjson.loads(audit[2][4]) == {"agent_id": "alice"}
    code, out, _ = invoke(data_dir, "org", "retention", org_id, "--clear")
    assert out.strip().endswith("keep for ever (configuration defaults)")
