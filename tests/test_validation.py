"""Every memory-record rule of docs/api.md is rejected with 400 naming the field; never 422/500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from http_api.app import create_app
from memtrace.config import load_settings
from memtrace.runtime import Runtime
from tests.helpers import create_org_key

MEM = "/api/v1/memories"
OK = {"agent_id": "agent_1", "content": "fine"}

BAD_MEMORIES = [
    ({"content": "x"}, "agent_id"),
    ({**OK, "agent_id": ""}, "agent_id"),
    ({**OK, "agent_id": "1starts_with_digit"}, "agent_id"),
    ({**OK, "agent_id": "has space"}, "agent_id"),
    ({**OK, "agent_id": "a" * 129}, "agent_id"),
    ({**OK, "agent_id": 42}, "agent_id"),
    ({**OK, "session_id": "bad/session"}, "session_id"),
    ({**OK, "memory_type": "semantic"}, "memory_type"),
    ({**OK, "event_type": "has-dash"}, "event_type"),
    ({**OK, "event_type": "e" * 65}, "event_type"),
    ({"agent_id": "a"}, "content"),
    ({**OK, "content": ""}, "content"),
    ({**OK, "content": "x" * (64 * 1024 + 1)}, "content"),
    ({**OK, "content": "é" * (32 * 1024 + 1)}, "content"),  # 64 KiB is counted in UTF-8 bytes
    ({**OK, "metadata": "not an object"}, "metadata"),
    ({**OK, "metadata": {"blob": "x" * (16 * 1024)}}, "metadata"),
    ({**OK, "tags": "comma,string"}, "tags"),
    ({**OK, "tags": ["bad tag"]}, "tags[0]"),
    ({**OK, "tags": ["ok", "x" * 65]}, "tags[1]"),
    ({**OK, "tags": [f"t{i}" for i in range(33)]}, "tags"),
    ({**OK, "importance": 1.01}, "importance"),
    ({**OK, "importance": -0.1}, "importance"),
    ({**OK, "importance": "very"}, "importance"),
    ({**OK, "dedup_key": "k" * 129}, "dedup_key"),
    ({**OK, "parent_id": "../../etc"}, "parent_id"),
    ({**OK, "time": "not a time"}, "time"),
    ({**OK, "time": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}, "time"),
]


@pytest.mark.parametrize(("body", "field"), BAD_MEMORIES)
async def test_bad_memory_is_400_naming_field(
    api: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    response = await api.post(MEM, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(f"{field}:"), response.json()
    assert (await api.get(MEM)).json()["count"] == 0  # nothing written


async def test_limits_at_the_boundary_are_accepted(api: httpx.AsyncClient) -> None:
    body = {
        **OK,
        "agent_id": "a" * 128,
        "event_type": "e" * 64,
        "content": "x" * (64 * 1024),
        "tags": [f"t{i}" for i in range(32)],
        "importance": 1.0,
        "dedup_key": "k" * 128,
        "time": (datetime.now(UTC) + timedelta(minutes=4)).isoformat(),
    }
    assert (await api.post(MEM, json=body)).status_code == 201


@pytest.mark.parametrize(
    ("raw", "message"),
    [(b"{not json", "body: invalid JSON"), (b"[1, 2]", "body:"), (b"", "body:")],
)
async def test_malformed_bodies(api: httpx.AsyncClient, raw: bytes, message: str) -> None:
    response = await api.post(MEM, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/api/v1/agents", {"name": "bad\nname"}, "name"),  # a free-text name, no control chars
        ("/api/v1/agents", {"name": ""}, "name"),
        ("/api/v1/agents", {}, "name"),
        ("/api/v1/agents", {"name": "ok", "config": [1]}, "config"),
        ("/api/v1/sessions", {"agent_id": "9x"}, "agent_id"),
        ("/api/v1/sessions", {"agent_id": "a", "metadata": "x"}, "metadata"),
        ("/api/v1/search", {"limit": 0}, "limit"),
        ("/api/v1/search", {"limit": 1001}, "limit"),
        ("/api/v1/search", {"memory_types": ["semantic"]}, "memory_types[0]"),
        ("/api/v1/search", {"since": "2 hours"}, "since"),
        ("/api/v1/search", {"until": "tomorrow"}, "until"),
        ("/api/v1/search", {"min_importance": 2}, "min_importance"),
        ("/api/v1/search", {"order": "sideways"}, "order"),
        ("/api/v1/search", {"content_contains": "x" * 1025}, "content_contains"),
        ("/api/v1/search", "not an object", "body"),
    ],
)
async def test_other_bodies_400(
    api: httpx.AsyncClient, route: str, body: object, field: str
) -> None:
    response = await api.post(route, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(f"{field}:"), response.json()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"order": "random"}, "order"),
        ({"memory_type": "semantic"}, "memory_type"),
        ({"tags": "ok,bad tag"}, "tags"),
        ({"since": "now"}, "since"),
        ({"since": "1y"}, "since"),
        ({"until": "3 days"}, "until"),
        ({"since": "1h", "until": "2h"}, "since"),
    ],
)
async def test_bad_list_params_400(
    api: httpx.AsyncClient, params: dict[str, object], field: str
) -> None:
    response = await api.get(MEM, params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(f"{field}:"), response.json()


async def test_context_options_validated(api: httpx.AsyncClient) -> None:
    session = (await api.post("/api/v1/sessions", json={"agent_id": "a"})).json()
    url = f"/api/v1/sessions/{session['id']}/context"
    for body, field in (
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 100_001}, "max_tokens"),
        ({"include_types": ["nope"]}, "include_types[0]"),
        ({"since": "soon"}, "since"),
    ):
        response = await api.post(url, json=body)
        assert response.status_code == 400 and response.json()["error"].startswith(field)


async def test_unknown_route_and_wrong_method_are_json(api: httpx.AsyncClient) -> None:
    missing = await api.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.json() == {"error": "not found"}
    wrong = await api.patch(MEM)
    assert wrong.status_code == 405 and wrong.json() == {"error": "method not allowed"}


async def test_body_over_limit_is_413(data_dir: object) -> None:
    settings = load_settings(None, {"storage.data_dir": data_dir, "limits.max_body_bytes": 2048})
    runtime = Runtime(settings)
    await runtime.start()
    try:
        _, key = await create_org_key(runtime)
        transport = httpx.ASGITransport(app=create_app(runtime, manage_runtime=False))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://localhost", headers={"x-api-key": key}
        ) as client:
            big = {"agent_id": "a", "content": "x" * 4096}
            response = await client.post(MEM, json=big)
            assert response.status_code == 413 and "error" in response.json()

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: checked while read
                for _ in range(8):
                    yield b"x" * 512

            json_type = {"content-type": "application/json"}
            streamed = await client.post(MEM, content=chunks(), headers=json_type)
            assert streamed.status_code == 413 and "error" in streamed.json()
            assert (await client.get(MEM)).json()["count"] == 0
    finally:
        await runtime.close()


# --- one JSON parser and one rule for every body ----------------------------------------------

NAN_BODIES = [b'{"n": NaN}', b'{"n": Infinity}', b'{"n": -Infinity}', b'{"n": 1e999}']
JSON_BODY_ROUTES = [
    ("POST", MEM, b'{"agent_id": "a", "content": "x", "metadata": %s}'),
    ("POST", "/api/v1/agents", b'{"name": "nan_agent", "config": %s}'),
    ("POST", "/api/v1/sessions", b'{"agent_id": "a", "metadata": %s}'),
    ("PUT", "/api/v1/sessions/{sid}", b'{"metadata": %s}'),
    ("POST", "/api/v1/search", b'{"tags": ["a"], "extra": %s}'),
]


async def test_nan_infinity_and_64_bit_overflow_are_refused_on_every_body(
    api: httpx.AsyncClient,
) -> None:
    # Found by adversarial testing: NaN/Infinity were stored as null on the agents and sessions
    # routes (Python's json) while /memories refused them (orjson), and an integer beyond 64
    # bits was refused on one route and rounded to a float on another.
    sid = (await api.post("/api/v1/sessions", json={"agent_id": "a"})).json()["id"]
    json_type = {"content-type": "application/json"}
    for method, url, template in JSON_BODY_ROUTES:
        for value in NAN_BODIES:
            body = template % value[6:-1]
            response = await api.request(
                method, url.format(sid=sid), content=body, headers=json_type
            )
            assert response.status_code == 400, (url, body, response.text)
            assert response.json()["error"].startswith("body:"), response.text
        if b"extra" in template:
            continue
        field = "config" if "agents" in url else "metadata"
        huge = template % b'{"n": 123456789012345678901234567890}'
        response = await api.request(method, url.format(sid=sid), content=huge, headers=json_type)
        assert response.status_code == 400, (url, response.text)
        assert response.json()["error"].startswith(f"{field}:"), response.text
    largest = b'{"agent_id": "a", "content": "big", "metadata": {"n": 18446744073709551615}}'
    stored = await api.post(MEM, content=largest, headers=json_type)
    assert stored.status_code == 201 and stored.json()["metadata"] == {"n": 2**64 - 1}
    listed = (await api.get(MEM, params={"agent_id": "a"})).json()["memories"]
    assert all(m.get("metadata") != {"n": None} for m in listed)


async def test_time_bounds_take_ascii_digits_only(api: httpx.AsyncClient) -> None:
    # Found by adversarial testing: "٣h" (Arabic-Indic three) was read as 3 hours.
    for since in ("\u0663h", "\uff12d", "1\u0660m"):  # Arabic-Indic 3, fullwidth 2, Arabic 0
        response = await api.get(MEM, params={"since": since})
        assert response.status_code == 400 and response.json()["error"].startswith("since:")
        search = await api.post("/api/v1/search", json={"until": since})
        assert search.status_code == 400 and search.json()["error"].startswith("until:")
    assert (await api.get(MEM, params={"since": "3h"})).status_code == 200


async def test_a_single_memory_with_a_memories_field_is_one_memory(api: httpx.AsyncClient) -> None:
    # Found by adversarial testing: the extra field made the body a batch.
    body = {"agent_id": "a", "content": "one", "memories": [{"agent_id": "a", "content": "b"}]}
    response = await api.post(MEM, json=body)
    assert response.status_code == 201, response.text
    assert response.json()["content"] == "one" and "count" not in response.json()
    batch = await api.post(MEM, json={"memories": [{"agent_id": "a", "content": "two"}]})
    assert batch.status_code == 201 and batch.json()["count"] == 1
    contents = [m["content"] for m in (await api.get(MEM)).json()["memories"]]
    assert sorted(contents) == ["one", "two"]


async def test_search_min_importance_zero_means_no_minimum(api: httpx.AsyncClient) -> None:
    await api.post(MEM, json={"agent_id": "a", "content": "unrated"})
    await api.post(MEM, json={"agent_id": "a", "content": "rated", "importance": 0.2})
    results = (await api.post("/api/v1/search", json={"min_importance": 0})).json()["results"]
    assert sorted(m["content"] for m in results) == ["rated", "unrated"]
    results = (await api.post("/api/v1/search", json={"min_importance": 0.2})).json()["results"]
    assert [m["content"] for m in results] == ["rated"]
