"""The Arc backend through the real app: read-your-writes, Arc outages, isolation, rebinding,
health and metrics, probes while an Arc hangs. The emulator runs under uvicorn on 127.0.0.1
(real HTTP)."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from http_api.app import create_app
from memtrace.auth.crypto import generate_master_key
from memtrace.config import load_settings
from memtrace.domain.timestamps import now_us
from memtrace.metadata.bindings import put_binding, remove_binding
from memtrace.runtime import Runtime
from memtrace.testing.arc_emulator import TEST_TOKEN
from memtrace.testing.arc_server import EmulatorServer
from tests.helpers import admin, create_org_key, new_tenant
from tests.storage.arc_support import BAD_MASTER_KEYS, eventually

MEM = "/api/v1/memories"


@pytest.fixture
async def arc_runtime(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Runtime]:
    monkeypatch.setenv("MEMTRACE_MASTER_KEY", generate_master_key())
    settings = load_settings(
        None,
        {
            "storage.data_dir": data_dir,
            "arc.flush_interval_ms": 10,
            "arc.retry_max_s": 0.2,
            "arc.connect_timeout_s": 1.0,
            "server.health_interval_s": 0.05,
            "server.health_timeout_s": 2.0,
        },
    )
    rt = Runtime(settings)
    await rt.start()
    yield rt
    await rt.close()


@pytest.fixture
async def http(arc_runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(arc_runtime, manage_runtime=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost"
    ) as c:
        yield c


async def bind(
    runtime: Runtime, org_id: str, server: EmulatorServer, database: str, *, reload: bool = True
) -> None:
    def write(conn: Any) -> None:
        put_binding(
            conn,
            org_id,
            url=server.url,
            database=database,
            measurement="events",
            api_key=TEST_TOKEN,
            now=now_us(),
        )

    await runtime.catalog.db.write(write)
    if reload:
        await runtime.reload()


async def arc_org(
    runtime: Runtime, server: EmulatorServer, database: str = "acme"
) -> tuple[str, dict[str, str]]:
    org_id, key = await create_org_key(runtime, database)
    await bind(runtime, org_id, server, database)
    return org_id, {"x-api-key": key}


async def write(http: httpx.AsyncClient, headers: dict[str, str], content: str, **kw: Any) -> str:
    body = {"agent_id": "crawler", "session_id": "sess_1", "content": content, **kw}
    response = await http.post(MEM, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def backlog(http: httpx.AsyncClient, org_id: str) -> int:
    """The org's outbox backlog from a health check that started after this call (the report
    is kept by a background task: an older one may predate the caller's writes)."""
    started = time.monotonic()

    async def fresh() -> bool:
        entry = (await http.get("/health")).json()["stores"].get(org_id)
        return entry is not None and entry["checked_ago_s"] < time.monotonic() - started

    await eventually(fresh)
    return int((await http.get("/health")).json()["stores"][org_id]["outbox_pending"])


def ids_in_arc(server: EmulatorServer, database: str) -> list[str]:
    return [row[0] for row in server.emulator.sql(database, "SELECT id FROM events ORDER BY id")]


async def test_read_your_writes_with_arc_flush_delay(
    http: httpx.AsyncClient, arc_runtime: Runtime, arc_server: EmulatorServer
) -> None:
    arc_server.emulator.flush_delay_s = 3600.0  # Arc shows nothing until flushed
    org_id, headers = await arc_org(arc_runtime, arc_server)
    session = await http.post("/api/v1/sessions", json={"agent_id": "crawler"}, headers=headers)
    sid = session.json()["id"]
    memory_id = await write(
        http, headers, "Crawled example.com", event_type="page_crawled", session_id=sid
    )
    decision = await write(
        http,
        headers,
        "Skip pagination",
        memory_type="decision",
        metadata={"reasoning": "2 deep"},
        session_id=sid,
    )

    async def visible_everywhere() -> None:
        listed = (await http.get(MEM, headers=headers)).json()
        assert [m["id"] for m in listed["memories"]] == [decision, memory_id]
        assert listed["has_more"] is False
        found = (await http.post("/api/v1/search", json={"content_contains": "CRAWLED"},
                                 headers=headers)).json()  # fmt: skip
        assert [m["id"] for m in found["results"]] == [memory_id]
        got = await http.get(f"{MEM}/{memory_id}", headers=headers)
        assert got.status_code == 200 and got.json()["content"] == "Crawled example.com"
        context = (await http.post(f"/api/v1/sessions/{sid}/context", json={},
                                   headers=headers)).json()  # fmt: skip
        assert context["memory_count"] == 2
        assert (
            "Crawled example.com" in context["context"]
            and "reasoning: 2 deep" in context["context"]
        )
        stats = (await http.get("/api/v1/agents/crawler/stats", headers=headers)).json()
        assert stats["memory_count"] == 2

    await visible_everywhere()  # immediately after the 201s, before Arc shows anything
    assert ids_in_arc(arc_server, "acme") == []

    async def shipped() -> bool:
        return await backlog(http, org_id) == 0

    await eventually(shipped)
    assert arc_server.emulator.flush() == 2
    await visible_everywhere()  # now in Arc and still in the overlay: exactly once
    assert ids_in_arc(arc_server, "acme") == sorted([memory_id, decision])
    duplicate = await http.post(
        MEM, json={"agent_id": "crawler", "session_id": sid, "content": "Skip pagination",
                   "memory_type": "decision"}, headers=headers,
    )  # fmt: skip
    assert duplicate.status_code == 409 and duplicate.json()["existing_id"] == decision


@pytest.mark.parametrize("outage", ["refused", "503", "500"])
async def test_arc_down_writes_succeed_reads_503_then_backlog_drains(
    outage: str, http: httpx.AsyncClient, arc_runtime: Runtime, arc_server: EmulatorServer
) -> None:
    org_id, headers = await arc_org(arc_runtime, arc_server)
    before = await write(http, headers, "before the outage")
    if outage == "refused":
        arc_server.stop()
    else:
        arc_server.emulator.fault = outage  # type: ignore[assignment]
    written = [await write(http, headers, f"during outage {i}") for i in range(25)]
    batch = await http.post(
        MEM,
        json={"memories": [{"agent_id": "b", "content": f"batch {i}"} for i in range(50)]},
        headers=headers,
    )
    assert batch.status_code == 201
    written += [m["id"] for m in batch.json()["memories"]]

    async def reported_down() -> bool:
        health = (await http.get("/health")).json()["stores"][org_id]
        return health["healthy"] is False and health["outbox_pending"] >= 75

    await eventually(reported_down)
    # Readiness is about this process: one org's Arc being down is reported for that org.
    assert (await http.get("/ready")).status_code == 200
    assert f'memtrace_store_healthy{{org_id="{org_id}"}} 0.0' in (await http.get("/metrics")).text
    listed = await http.get(MEM, headers=headers)
    assert listed.status_code == 503
    assert "Arc" in listed.json()["error"] and "queued" in listed.json()["error"]
    metrics = (await http.get("/metrics")).text
    assert f'memtrace_outbox_pending{{org_id="{org_id}"}}' in metrics
    assert 'memtrace_arc_errors_total{operation="query"}' in metrics

    async def shipper_failed() -> bool:
        return 'memtrace_arc_errors_total{operation="write"}' in (await http.get("/metrics")).text

    await eventually(shipper_failed)

    if outage == "refused":
        arc_server.start()
    else:
        arc_server.emulator.fault = None

    async def drained() -> bool:
        return await backlog(http, org_id) == 0

    await eventually(drained, timeout=30)
    assert ids_in_arc(arc_server, "acme") == sorted([before, *written])  # each exactly once

    async def reported_up() -> bool:
        return bool((await http.get("/health")).json()["stores"][org_id]["healthy"])

    await eventually(reported_up)
    assert (await http.get("/ready")).status_code == 200
    listed = (await http.get(MEM, params={"limit": 1000}, headers=headers)).json()
    assert len(listed["memories"]) == 76
    assert "memtrace_arc_ship_latency_seconds_count" in (await http.get("/metrics")).text


async def test_two_orgs_on_two_arc_databases_are_isolated(
    http: httpx.AsyncClient, arc_runtime: Runtime, arc_server: EmulatorServer
) -> None:
    org_a, a = await arc_org(arc_runtime, arc_server, "alpha")
    org_b, b = await arc_org(arc_runtime, arc_server, "beta")
    ids_a = [await write(http, a, f"alpha secret {i}", tags=["shared"]) for i in range(3)]
    ids_b = [await write(http, b, f"beta secret {i}", tags=["shared"]) for i in range(2)]
    for headers, own, other in ((a, ids_a, ids_b), (b, ids_b, ids_a)):
        listed = (await http.get(MEM, params={"tags": "shared"}, headers=headers)).json()
        assert sorted(m["id"] for m in listed["memories"]) == sorted(own)
        found = (await http.post("/api/v1/search", json={"content_contains": "secret"},
                                 headers=headers)).json()  # fmt: skip
        assert sorted(m["id"] for m in found["results"]) == sorted(own)
        for memory_id in other:
            assert (await http.get(f"{MEM}/{memory_id}", headers=headers)).status_code == 404

    async def shipped() -> bool:
        return await backlog(http, org_a) == 0 and await backlog(http, org_b) == 0

    await eventually(shipped)
    assert ids_in_arc(arc_server, "alpha") == sorted(ids_a)
    assert ids_in_arc(arc_server, "beta") == sorted(ids_b)
    orgs = {r[0] for r in arc_server.emulator.sql("alpha", "SELECT DISTINCT org_id FROM events")}
    assert orgs == {org_a}


async def test_binding_changes_apply_without_restart(
    http: httpx.AsyncClient, arc_runtime: Runtime, arc_server: EmulatorServer
) -> None:
    org_id, key = await create_org_key(arc_runtime, "acme")
    headers = {"x-api-key": key}
    local = await write(http, headers, "embedded memory")

    async def on_embedded() -> bool:
        stores = (await http.get("/health")).json()["stores"]
        return stores.get(org_id, {}).get("backend") == "embedded"

    await eventually(on_embedded)
    await bind(arc_runtime, org_id, arc_server, "acme", reload=False)  # like the CLI would

    async def on_arc() -> bool:
        response = await http.get(MEM, headers=headers)
        stores = (await http.get("/health")).json()["stores"]
        return response.status_code == 200 and stores.get(org_id, {}).get("backend") == "arc"

    await eventually(on_arc, timeout=2.0)
    arc_server.emulator.flush_delay_s = 3600.0  # Arc keeps it unconfirmed in its buffer
    remote = await write(http, headers, "arc memory")
    listed = (await http.get(MEM, headers=headers)).json()["memories"]
    assert [m["id"] for m in listed] == [remote]  # embedded data stays put until copied

    await arc_runtime.catalog.db.write(lambda conn: remove_binding(conn, org_id))

    async def back_on_embedded() -> bool:
        response = await http.get(MEM, headers=headers)
        stores = (await http.get("/health")).json()["stores"]
        return response.status_code == 200 and stores.get(org_id, {}).get("backend") == "embedded"

    await eventually(back_on_embedded, timeout=2.0)
    listed = (await http.get(MEM, headers=headers)).json()["memories"]
    # The memory Arc never confirmed was moved from the outbox into the embedded store.
    assert [m["id"] for m in listed] == [remote, local]


async def test_wrong_master_key_gives_a_clear_503(
    http: httpx.AsyncClient,
    arc_runtime: Runtime,
    arc_server: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    org_id, headers = await arc_org(arc_runtime, arc_server)
    await arc_runtime.stores.retain(set())  # close the open store; it reopens on next use
    monkeypatch.setenv("MEMTRACE_MASTER_KEY", generate_master_key())
    response = await http.post(MEM, json={"agent_id": "a", "content": "x"}, headers=headers)
    assert response.status_code == 503
    assert "MEMTRACE_MASTER_KEY" in response.json()["error"]
    assert TEST_TOKEN not in response.text
    ready = await http.get("/ready")  # the process serves every other org: it is ready
    assert ready.status_code == 200
    assert "MEMTRACE_MASTER_KEY" in ready.json()["stores"][org_id]["detail"]
    assert ready.json()["stores"][org_id]["healthy"] is False


@pytest.mark.parametrize("bad", list(BAD_MASTER_KEYS))
async def test_bad_master_key_at_start_refuses_only_the_arc_org(
    data_dir: Path,
    arc_server: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    bad: str,
) -> None:
    """Every kind of bad key, in process (tests/test_faults_arc.py starts real servers with
    some of them): the Arc org gets a 503 naming the problem, the embedded org keeps working,
    /ready names it, and no secret reaches a response or the log."""
    master_key, message = BAD_MASTER_KEYS[bad]
    good = {"MEMTRACE_MASTER_KEY": generate_master_key()}
    org_id, key = new_tenant(data_dir, "acme", env=good)
    admin(
        data_dir, "org", "add-arc", org_id, "--url", arc_server.url, "--database", "acme",
        "--api-key", TEST_TOKEN, env=good,
    )  # fmt: skip
    _, plain_key = new_tenant(data_dir, "plain")
    monkeypatch.setenv("MEMTRACE_MASTER_KEY", master_key)
    caplog.set_level(logging.DEBUG)
    runtime = Runtime(load_settings(None, {"storage.data_dir": data_dir}))
    await runtime.start()
    try:
        app = create_app(runtime, manage_runtime=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            body = {"agent_id": "a", "content": "x"}
            ok = await c.post(MEM, json=body, headers={"x-api-key": plain_key})
            assert ok.status_code == 201
            refused = await c.post(MEM, json=body, headers={"x-api-key": key})
            assert refused.status_code == 503 and message in refused.json()["error"]
            ready = await c.get("/ready")  # the process serves every other org: it is ready
            assert ready.status_code == 200 and message in ready.json()["stores"][org_id]["detail"]
    finally:
        await runtime.close()
    for secret in (TEST_TOKEN, good["MEMTRACE_MASTER_KEY"], key):
        assert secret not in caplog.text and secret not in refused.text + ready.text


async def test_filters_too_long_for_arc_are_a_400(
    http: httpx.AsyncClient, arc_runtime: Runtime, arc_server: EmulatorServer
) -> None:
    _, headers = await arc_org(arc_runtime, arc_server)
    await write(http, headers, "quote ' and NUL \x00 inside")
    ok = await http.post(
        "/api/v1/search", json={"content_contains": "' AND NUL \x00 IN"}, headers=headers
    )
    assert ok.status_code == 200 and ok.json()["count"] == 1
    huge = await http.post(
        "/api/v1/search", json={"content_contains": "\x00" * 1000}, headers=headers
    )
    assert huge.status_code == 400 and huge.json()["error"].startswith("query:")


async def test_probes_answer_at_once_while_an_org_s_arc_hangs(
    http: httpx.AsyncClient, arc_runtime: Runtime, arc_server: EmulatorServer
) -> None:
    """Probes never wait on a backend: with one org's Arc hanging (it accepts connections and
    never answers), /health, /ready and /metrics answer at once, the process stays ready, and
    the hang is reported for that org only (issue 14)."""
    arc_org_id, arc_headers = await arc_org(arc_runtime, arc_server)
    _, key = await create_org_key(arc_runtime)
    plain = {"x-api-key": key}
    await write(http, arc_headers, "acknowledged before the hang")
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
            # Answered from memory; the hung Arc would hold each for 30 s (arc.query_timeout_s).
            # The median is the figure: one answer on a loaded machine may be descheduled for
            # a while, never for the hang.
            assert statistics.median(seconds) < 0.1, (path, seconds)
            assert max(seconds) < 2.0, (path, seconds)
        assert (await http.get("/ready")).json()["stores"][arc_org_id]["healthy"] is False
        metrics = (await http.get("/metrics")).text
        assert f'memtrace_store_healthy{{org_id="{arc_org_id}"}} 0.0' in metrics
        assert "memtrace_ready 1.0" in metrics
        # Another org is served as usual meanwhile.
        await write(http, plain, "an embedded org during the hang")
        assert (await http.get(MEM, headers=plain)).json()["count"] == 1
    finally:
        arc_server.emulator.fault = None

    async def recovered() -> bool:
        return bool((await http.get("/health")).json()["stores"][arc_org_id]["healthy"])

    await eventually(recovered)


async def test_parked_rows_are_reported_per_org(
    http: httpx.AsyncClient, arc_runtime: Runtime, arc_server: EmulatorServer
) -> None:
    """A row Arc refuses shows in /health (per org, with what to run) and /metrics, the org
    keeps shipping, and the row stays readable."""
    org_id, headers = await arc_org(arc_runtime, arc_server)
    arc_server.emulator.refuse_content = "refused by arc"
    bad = await write(http, headers, "this one is refused by arc")
    good = await write(http, headers, "this one is fine")

    async def parked() -> bool:
        # (the store's first check may still run: it opened at the first write, just now)
        store = (await http.get("/health")).json()["stores"].get(org_id)
        return store is not None and store["outbox_parked"] == 1 and store["outbox_pending"] == 0

    await eventually(parked)
    health = await http.get("/health")
    store = health.json()["stores"][org_id]
    assert store["healthy"] is True and f"memtrace org outbox {org_id}" in store["detail"]
    assert (await http.get("/ready")).status_code == 200  # one org's refused row is no outage
    metrics = (await http.get("/metrics")).text
    assert f'memtrace_outbox_parked{{org_id="{org_id}"}} 1.0' in metrics
    assert good in ids_in_arc(arc_server, "acme") and bad not in ids_in_arc(arc_server, "acme")
    listed = (await http.get(MEM, headers=headers)).json()["memories"]
    assert {m["id"] for m in listed} == {bad, good}
