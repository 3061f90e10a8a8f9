"""Access-control matrix: every route (and, later, every MCP tool) by every kind of caller.

``MATRIX`` is the one table. Each row names an entry point and the status expected for each
caller column. The test fails when the app has a route without a row (or a row without a
route), so a new endpoint cannot ship without deciding who may call it. Rows are keyed by a
name: REST rows are ``"METHOD /path"``; transports added later (MCP tools over Streamable HTTP)
add rows named ``"mcp:<tool>"`` with their own ``call`` and the same columns.

Each cell runs in a fresh world: two orgs with an agent, a session and a memory each, and the
caller's key. Column meanings:

- ``own``: a read+write key of the org that owns the ids in the request.
- ``other``: a read+write key of org A, with org B's ids in the request.
- ``none`` / ``malformed`` / ``revoked``: no key, a syntactically wrong key, a revoked key.
- ``readonly``: a ``read`` key of the owning org. ``admin``: an ``admin``-only key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import BaseRoute, Mount

from http_api.app import create_app
from memtrace import metadata as md
from memtrace.auth import new_api_key, parse_permissions
from memtrace.config import load_settings
from memtrace.runtime import Runtime
from memtrace.timeutil import now_us
from tests.helpers import create_org_key

COLUMNS = ("own", "other", "none", "malformed", "revoked", "readonly", "admin")
SECRET = "org-b-secret-content"


@dataclass
class World:
    """The ids a cell may use, the caller's key, and clients of both orgs for checks."""

    ids: dict[str, str]  # agent_id, session_id, memory_id the request refers to
    key: str | None
    other_key: str  # read+write key of org B (the victim in the "other" column)
    other_ids: dict[str, str]


Call = Callable[[httpx.AsyncClient, World], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Row:
    name: str
    call: Call
    expect: dict[str, int]


def _fill(template: Any, ids: dict[str, str]) -> Any:
    if isinstance(template, str):
        return template.format(**ids)
    if isinstance(template, dict):
        return {k: _fill(v, ids) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, ids) for v in template]
    return template


def _headers(key: str | None) -> dict[str, str]:
    return {"x-api-key": key} if key is not None else {}


def rest(
    method: str,
    path: str,
    perm: str,
    ok: int,
    *,
    other: int | None = None,
    json: Any = None,
    params: dict[str, str] | None = None,
) -> Row:
    """A REST row. ``perm`` is ``none``, ``read`` or ``write``; ``other`` is the status when
    org B's ids are used with org A's key (404 for routes addressing an object by id)."""

    async def call(client: httpx.AsyncClient, world: World) -> httpx.Response:
        return await client.request(
            method,
            path.format(**world.ids),
            json=_fill(json, world.ids),
            params=_fill(params, world.ids),
            headers=_headers(world.key),
        )

    if perm == "none":
        expect = dict.fromkeys(COLUMNS, ok)
    else:
        by_id = "{" in path
        expect = {
            "own": ok,
            "other": other if other is not None else (404 if by_id else ok),
            "none": 401,
            "malformed": 401,
            "revoked": 401,
            "readonly": ok if perm == "read" else 403,
            "admin": ok,
        }
    return Row(f"{method} {path}", call, expect)


A = "/api/v1/agents/{agent_id}"
S = "/api/v1/sessions/{session_id}"
MATRIX: list[Row] = [
    rest("GET", "/health", "none", 200),
    rest("GET", "/ready", "none", 200),
    rest("GET", "/metrics", "none", 200),
    rest("GET", "/openapi.json", "none", 200),
    rest("GET", "/docs", "none", 200),
    rest("GET", "/docs/oauth2-redirect", "none", 200),
    rest("GET", "/redoc", "none", 200),
    rest(
        "POST",
        "/api/v1/memories",
        "write",
        201,
        json={"agent_id": "{agent_id}", "session_id": "{session_id}", "content": "new note"},
    ),
    rest("GET", "/api/v1/memories", "read", 200, params={"agent_id": "{agent_id}"}),
    rest("GET", "/api/v1/memories/{memory_id}", "read", 200),
    rest("POST", "/api/v1/search", "read", 200, json={"session_id": "{session_id}"}),
    rest("POST", "/api/v1/agents", "write", 201, json={"name": "brand_new_agent"}),
    rest("GET", "/api/v1/agents", "read", 200),
    rest("GET", A, "read", 200),
    rest("GET", A + "/stats", "read", 200),
    rest("GET", A + "/memories", "read", 200),
    rest("POST", A + "/context", "read", 200, json={}),
    rest("DELETE", A, "write", 204),
    rest("POST", "/api/v1/sessions", "write", 201, json={"agent_id": "{agent_id}"}),
    rest("GET", "/api/v1/sessions", "read", 200, params={"agent_id": "{agent_id}"}),
    rest("GET", S, "read", 200),
    rest("PUT", S, "write", 200, json={"status": "closed"}),
    rest("GET", S + "/memories", "read", 200),
    rest("POST", S + "/context", "read", 200, json={}),
]


def _flat_routes(routes: list[BaseRoute]) -> list[Any]:
    """The app's routes with included routers expanded (FastAPI >= 0.16x keeps them nested)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes is already flat
        return list(routes)
    return list(iter_route_contexts(routes))


def route_names(routes: list[BaseRoute]) -> set[str]:
    """Every entry point of the app: ``METHOD /path`` per route, ``MOUNT /path`` per mount."""
    names: set[str] = set()
    for route in _flat_routes(routes):
        original = getattr(route, "original_route", route)
        if isinstance(original, Mount):
            names.add(f"MOUNT {original.path}")
            continue
        methods = getattr(route, "methods", None)
        if not methods:
            raise AssertionError(f"route without methods: {route!r}")
        names.update(f"{m} {route.path}" for m in methods if m != "HEAD")
    return names


@pytest.fixture
async def matrix_runtime(data_dir: Path) -> AsyncIterator[Runtime]:
    # Hundreds of requests from few keys: the rate limit has its own tests.
    settings = load_settings(None, {"storage.data_dir": data_dir, "limits.rate_per_s": 0})
    runtime = Runtime(settings)
    await runtime.start()
    yield runtime
    await runtime.close()


async def _seed(client: httpx.AsyncClient, key: str, agent: str, content: str) -> dict[str, str]:
    h = _headers(key)
    session = await client.post("/api/v1/sessions", headers=h, json={"agent_id": agent})
    memory = await client.post(
        "/api/v1/memories",
        headers=h,
        json={"agent_id": agent, "session_id": session.json()["id"], "content": content},
    )
    assert memory.status_code == 201, memory.text
    return {"agent_id": agent, "session_id": session.json()["id"], "memory_id": memory.json()["id"]}


async def _column_key(runtime: Runtime, org_id: str, column: str, rw_key: str) -> str | None:
    if column in ("own", "other"):
        return rw_key
    if column == "none":
        return None
    if column == "malformed":
        return "mtk_not-a-real-key"
    permissions = {"revoked": "read,write", "readonly": "read", "admin": "admin"}[column]
    record, plain = new_api_key(
        org_id, column, parse_permissions(permissions), rounds=4, now=now_us()
    )

    def store(conn: Any) -> None:
        md.insert_key(conn, record)
        if column == "revoked":
            md.revoke_key(conn, record.id, now_us())

    await runtime.catalog.db.write(store)
    await runtime.reload()
    return plain


async def _world(runtime: Runtime, client: httpx.AsyncClient, column: str) -> World:
    org_a, key_a = await create_org_key(runtime)  # unnamed: the name is the fresh org id
    _, key_b = await create_org_key(runtime)
    own_ids = await _seed(client, key_a, "mine", "org-a note")
    other_ids = await _seed(client, key_b, "theirs", SECRET)
    ids = other_ids if column == "other" else own_ids
    return World(ids, await _column_key(runtime, org_a, column, key_a), key_b, other_ids)


async def _org_b_intact(client: httpx.AsyncClient, world: World) -> list[str]:
    """After an ``other`` cell: org B's objects are exactly as seeded."""
    h = _headers(world.other_key)
    problems = []
    agent = await client.get(f"/api/v1/agents/{world.other_ids['agent_id']}", headers=h)
    session = await client.get(f"/api/v1/sessions/{world.other_ids['session_id']}", headers=h)
    listed = await client.get("/api/v1/memories", headers=h)
    if agent.status_code != 200:
        problems.append("org B's agent is gone")
    if session.status_code != 200 or session.json()["status"] != "active":
        problems.append("org B's session changed")
    if [m["id"] for m in listed.json()["memories"]] != [world.other_ids["memory_id"]]:
        problems.append("org B's memories changed")
    return problems


async def test_every_route_has_a_row(matrix_runtime: Runtime) -> None:
    app = create_app(matrix_runtime, manage_runtime=False)
    rows = {row.name for row in MATRIX if not row.name.startswith("mcp:")}
    assert len(rows) == len([r for r in MATRIX if not r.name.startswith("mcp:")]), "duplicate row"
    routes = route_names(app.routes)
    assert routes - rows == set(), "routes without a row in MATRIX"
    assert rows - routes == set(), "rows for routes that do not exist"
    assert all(set(row.expect) == set(COLUMNS) for row in MATRIX)


async def test_access_control_matrix(matrix_runtime: Runtime) -> None:
    app = create_app(matrix_runtime, manage_runtime=False)
    transport = httpx.ASGITransport(app=app)
    mismatches: list[str] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://matrix.test") as client:
        for row in MATRIX:
            for column in COLUMNS:
                world = await _world(matrix_runtime, client, column)
                response = await row.call(client, world)
                expected = row.expect[column]
                if response.status_code != expected:
                    mismatches.append(
                        f"{row.name} [{column}]: expected {expected}, got "
                        f"{response.status_code} {response.text[:120]}"
                    )
                if response.status_code >= 400 and "error" not in response.json():
                    mismatches.append(f"{row.name} [{column}]: error without an 'error' field")
                if column != "own" and SECRET in response.text:
                    mismatches.append(f"{row.name} [{column}]: org B's content leaked")
                if world.other_ids["memory_id"] in response.text and column != "other":
                    mismatches.append(f"{row.name} [{column}]: org B's memory id leaked")
                if column == "other":
                    if SECRET in response.text:
                        mismatches.append(f"{row.name} [other]: org B's content leaked")
                    mismatches += [
                        f"{row.name} [other]: {p}" for p in await _org_b_intact(client, world)
                    ]
    assert not mismatches, "\n".join(mismatches)
