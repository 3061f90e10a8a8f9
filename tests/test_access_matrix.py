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

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from starlette.routing import BaseRoute, Mount

from http_api.app import create_app
from memtrace import tools
from memtrace.auth.keys import ApiKeyRecord, new_api_key
from memtrace.auth.permissions import parse_permissions
from memtrace.config import load_settings
from memtrace.domain.ids import new_org_id
from memtrace.domain.models import MemoryCreate, SessionCreate
from memtrace.domain.positions import encode_position
from memtrace.domain.timestamps import now_us
from memtrace.metadata import sqlite as md
from memtrace.runtime import Runtime
from tests.helpers import free_port

try:
    from mcp_server.http import McpHttpAddon
except ImportError:  # a build without the MCP HTTP transports
    McpHttpAddon = None

COLUMNS = ("own", "other", "none", "malformed", "revoked", "readonly", "admin")
SECRET = "org-b-secret-content"


@dataclass
class World:
    """The ids a cell may use, the caller's key, and clients of both orgs for checks."""

    ids: dict[str, str]  # agent_id, session_id, memory_id the request refers to
    key: str | None
    other_key: str  # read+write key of org B (the victim in the "other" column)
    other_ids: dict[str, str]


Call = Callable[[httpx.AsyncClient, World], Awaitable[tuple[int, str]]]


@dataclass(frozen=True)
class Row:
    """One entry point. ``route`` is the app route it exercises (several MCP tools share
    ``/mcp``); ``json_errors`` is false for transport endpoints whose errors past the key gate
    come from the MCP SDK as plain text."""

    name: str
    call: Call
    expect: dict[str, int]
    route: str = ""
    json_errors: bool = True

    @property
    def covers(self) -> str:
        return self.route or self.name


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
    """A REST row. ``perm`` is ``none``, ``read``, ``write`` or ``admin``; ``other`` is the
    status when org B's ids are used with org A's key (404 for routes addressing an object by
    id)."""

    async def call(client: httpx.AsyncClient, world: World) -> tuple[int, str]:
        response = await client.request(
            method,
            path.format(**world.ids),
            json=_fill(json, world.ids),
            params=_fill(params, world.ids),
            headers=_headers(world.key),
        )
        return response.status_code, response.text

    if perm == "none":
        return Row(f"{method} {path}", call, dict.fromkeys(COLUMNS, ok))
    return Row(f"{method} {path}", call, _keyed(perm, ok, other, by_id="{" in path))


def _keyed(perm: str, ok: int, other: int | None, *, by_id: bool) -> dict[str, int]:
    """Expected statuses of an entry point that needs a key with ``perm`` (``admin``: only
    the admin key passes; the read+write keys of ``own`` and ``other`` get 403)."""
    if perm == "admin":
        return {**_keyed("write", ok, other, by_id=by_id), "own": 403, "other": 403}
    return {
        "own": ok,
        "other": other if other is not None else (404 if by_id else ok),
        "none": 401,
        "malformed": 401,
        "revoked": 401,
        "readonly": ok if perm == "read" else 403,
        "admin": ok,
    }


# --- MCP over Streamable HTTP: one row per tool ---------------------------------------------

MCP_ACCEPT = "application/json, text/event-stream"


def _jsonrpc_reply(text: str) -> dict[str, Any]:
    """The JSON-RPC message of a Streamable HTTP reply (plain JSON or one SSE event)."""
    if text.lstrip().startswith("{"):
        return dict(orjson.loads(text))
    for line in text.splitlines():
        if line.startswith("data:"):
            return dict(orjson.loads(line.removeprefix("data:").strip()))
    raise AssertionError(f"no JSON-RPC message in {text[:200]!r}")


def _tool_error_status(message: str) -> int:
    """The REST status a tool error corresponds to (tools report errors as text)."""
    lowered = message.lower()
    if "api key" in lowered and "lacks" not in lowered:
        return 401
    if "lacks" in lowered or "permission" in lowered:
        return 403
    if "not found" in lowered:
        return 404
    return 400


def mcp_tool(tool: str, perm: str, arguments: dict[str, Any], *, other: int = 200) -> Row:
    """An MCP tool called with a raw JSON-RPC ``tools/call`` on ``/mcp`` (stateless), its
    outcome mapped to the status REST would give; ``other`` is the status with org B's ids
    (404 for memtrace_forget: another org's memory does not exist for this key)."""

    async def call(client: httpx.AsyncClient, world: World) -> tuple[int, str]:
        request = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": tool, "arguments": _fill(arguments, world.ids)},
        }
        headers = {**_headers(world.key), "accept": MCP_ACCEPT}
        response = await client.post("/mcp", json=request, headers=headers)
        if response.status_code != 200:
            return response.status_code, response.text
        reply = _jsonrpc_reply(response.text)
        if "error" in reply:
            return 400, response.text
        result = reply["result"]
        if result.get("isError"):
            text = "".join(block.get("text", "") for block in result.get("content", []))
            return _tool_error_status(text), response.text
        return 200, response.text

    expect = _keyed(perm, 200, other, by_id=False)
    return Row(f"mcp:{tool}", call, expect, route=MCP_ROUTE, json_errors=False)


async def _sse_open(client: httpx.AsyncClient, world: World) -> tuple[int, str]:
    """Open the legacy SSE stream and hang up after the status line."""
    async with client.stream("GET", "/sse", headers=_headers(world.key)) as response:
        if response.status_code != 200:
            await response.aread()
            return response.status_code, response.text
        return 200, ""


async def _sse_post(client: httpx.AsyncClient, world: World) -> tuple[int, str]:
    """A message for an SSE session that does not exist: the key gate answers first."""
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    response = await client.post(
        "/messages/",
        params={"session_id": "0123456789abcdef0123456789abcdef"},
        json=ping,
        headers=_headers(world.key),
    )
    return response.status_code, response.text


async def _stream_open(client: httpx.AsyncClient, world: World) -> tuple[int, str]:
    """Open the live stream (``GET /api/v1/stream``) and hang up after the status line."""
    async with client.stream("GET", "/api/v1/stream", headers=_headers(world.key)) as response:
        if response.status_code != 200:
            await response.aread()
            return response.status_code, response.text
        return 200, ""


MCP_ROUTE = "ANY /mcp"
MCP_ROWS: list[Row] = [
    mcp_tool(
        "memtrace_remember",
        "write",
        {"agent_id": "{agent_id}", "session_id": "{session_id}", "content": "mcp note"},
    ),
    mcp_tool("memtrace_recall", "read", {"agent_id": "{agent_id}", "since": "1h"}),
    # the feed argument (docs/feed.md): moves the calling agent's cursor, with `read`
    replace(
        mcp_tool("memtrace_recall", "read", {"agent_id": "{agent_id}", "new_only": True}),
        name="mcp:memtrace_recall new_only",
    ),
    mcp_tool("memtrace_search", "read", {"session_id": "{session_id}"}),
    mcp_tool(
        "memtrace_decide", "write", {"agent_id": "{agent_id}", "decision": "d", "reasoning": "r"}
    ),
    mcp_tool("memtrace_session_create", "write", {"agent_id": "{agent_id}"}),
    mcp_tool("memtrace_session_context", "read", {"session_id": "{session_id}"}),
    mcp_tool("memtrace_agent_register", "write", {"name": "brand_new_mcp_agent"}),
    mcp_tool("memtrace_forget", "write", {"memory_id": "{memory_id}"}, other=404),
    mcp_tool("memtrace_timeline", "read", {"since": "1h", "group_by": "agent_id"}),
    mcp_tool(
        "memtrace_outcome",
        "write",
        {"decision_id": "{decision_id}", "outcome": "success", "content": "it worked"},
        other=404,
    ),
    Row("GET /sse", _sse_open, _keyed("read", 200, 200, by_id=False) | {"readonly": 200}),
    Row(
        "MOUNT /messages",
        _sse_post,
        _keyed("read", 404, 404, by_id=False),
        json_errors=False,
    ),
]


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
    # The operator page's files hold no data; the page sends the key with each call (docs/ui.md).
    rest("GET", "/ui", "none", 200),
    rest("GET", "/ui/app.js", "none", 200),
    rest("GET", "/ui/app.css", "none", 200),
    rest(
        "POST",
        "/api/v1/memories",
        "write",
        201,
        json={"agent_id": "{agent_id}", "session_id": "{session_id}", "content": "new note"},
    ),
    rest("GET", "/api/v1/memories", "read", 200, params={"agent_id": "{agent_id}"}),
    rest("GET", "/api/v1/memories/{memory_id}", "read", 200),
    rest("DELETE", "/api/v1/memories/{memory_id}", "write", 204),
    rest("POST", "/api/v1/memories/forget", "admin", 200, json={"agent_id": "{agent_id}"}),
    rest("GET", "/api/v1/export", "read", 200),
    rest("POST", "/api/v1/search", "read", 200, json={"session_id": "{session_id}"}),
    # the caller's own org's counts, whoever's filters it sends (org B's agent: all zero)
    rest("GET", "/api/v1/timeline", "read", 200, params={"agent_id": "{agent_id}"}),
    rest(
        "POST",
        "/api/v1/memories/{decision_id}/outcome",
        "write",
        201,
        json={"outcome": "success", "content": "it worked", "metrics": {"latency_ms": 12}},
    ),
    rest("POST", "/api/v1/agents", "write", 201, json={"name": "brand_new_agent"}),
    rest("GET", "/api/v1/agents", "read", 200),
    rest("GET", A, "read", 200),
    # Memories, stats and context of an agent or session answer from the caller's own org's
    # memories carrying that id, registered or not (as the Go memtrace did, docs/api.md): with
    # org B's ids they answer 200 with nothing in them (the leak checks below hold).
    rest("GET", A + "/stats", "read", 200, other=200),
    rest("GET", A + "/memories", "read", 200, other=200),
    rest("POST", A + "/context", "read", 200, json={}, other=200),
    rest("DELETE", A, "write", 204),
    rest("POST", "/api/v1/sessions", "write", 201, json={"agent_id": "{agent_id}"}),
    rest("GET", "/api/v1/sessions", "read", 200, params={"agent_id": "{agent_id}"}),
    rest("GET", S, "read", 200),
    rest("PUT", S, "write", 200, json={"status": "closed"}),
    rest("GET", S + "/memories", "read", 200, other=200),
    rest("POST", S + "/context", "read", 200, json={}, other=200),
    # The feed and the live stream (docs/feed.md): a reader's cursor is its own state, so a
    # read-only key reads, confirms and streams; another org's agent id as the reader reads
    # the caller's own org (nothing of org B: the leak checks below hold).
    rest("GET", "/api/v1/feed", "read", 200, params={"reader": "{agent_id}"}),
    rest(
        "POST",
        "/api/v1/feed/confirm",
        "read",
        200,
        json={"reader": "{agent_id}", "cursor": encode_position(0)},
    ),
    rest("GET", "/api/v1/feed/cursor", "read", 200, params={"reader": "{agent_id}"}),
    Row("GET /api/v1/stream", _stream_open, _keyed("read", 200, 200, by_id=False)),
]
if McpHttpAddon is not None:  # the MCP transports are served by this build
    MATRIX += MCP_ROWS


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
        if not methods:  # a raw ASGI endpoint (the MCP transport) takes every method
            names.add(f"ANY {route.path}")
            continue
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


async def _seed(runtime: Runtime, org_id: str, agent: str, content: str) -> dict[str, str]:
    """An agent, a session and a memory in ``org_id`` (through the service: setup, not a cell)."""
    service = await runtime.service(org_id)
    session = await service.create_session(SessionCreate(agent_id=agent))
    memory = await service.remember(
        MemoryCreate(agent_id=agent, session_id=session.id, content=content)
    )
    decision = await service.remember(
        MemoryCreate(
            agent_id=agent, session_id=session.id, content="a decision", memory_type="decision"
        )
    )
    ids = {"agent_id": agent, "session_id": session.id, "memory_id": memory.id}
    return ids | {"decision_id": decision.id}


def _new_key(org_id: str, column: str, permissions: str) -> tuple[ApiKeyRecord, str]:
    return new_api_key(org_id, column, parse_permissions(permissions), rounds=4, now=now_us())


async def _world(runtime: Runtime, column: str) -> World:
    """Two fresh orgs with an agent, a session and a memory each, and the column's key: one
    metadata write and one reload (three per cell took most of this test's time)."""
    org_a, org_b = new_org_id(), new_org_id()
    record_a, key_a = _new_key(org_a, "a", "read,write")
    record_b, key_b = _new_key(org_b, "b", "read,write")
    permissions = {"revoked": "read,write", "readonly": "read", "admin": "admin"}.get(column)
    extra = _new_key(org_a, column, permissions) if permissions else None

    def write(conn: Any) -> None:
        now = now_us()
        for org_id, record in ((org_a, record_a), (org_b, record_b)):
            # named after the fresh org id, as create_org_key does (a name cannot be an id)
            md.insert_org(conn, org_id, "test-" + org_id.removeprefix("org_"), now)
            md.insert_key(conn, record)
        if extra is not None:
            md.insert_key(conn, extra[0])
            if column == "revoked":
                md.revoke_key(conn, extra[0].id, now)

    await runtime.catalog.db.write(write)
    await runtime.reload()
    own_ids = await _seed(runtime, org_a, "mine", "org-a note")
    other_ids = await _seed(runtime, org_b, "theirs", SECRET)
    key = {"none": None, "malformed": "mtk_not-a-real-key"}.get(column, key_a)
    if extra is not None:
        key = extra[1]
    ids = other_ids if column == "other" else own_ids
    return World(ids, key, key_b, other_ids)


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
    seeded = {world.other_ids["memory_id"], world.other_ids["decision_id"]}
    if {m["id"] for m in listed.json()["memories"]} != seeded or len(seeded) != 2:
        problems.append("org B's memories changed")
    return problems


def _is_error_body(text: str) -> bool:
    try:
        return "error" in orjson.loads(text)
    except orjson.JSONDecodeError:
        return False


def build_app(runtime: Runtime) -> Any:
    """The app as ``memtrace serve`` builds it (with the MCP transports when present)."""
    if McpHttpAddon is None:
        return create_app(runtime, manage_runtime=False)
    return create_app(runtime, manage_runtime=False, addons=[McpHttpAddon(runtime)])


@pytest.fixture
async def matrix_url(matrix_runtime: Runtime) -> AsyncIterator[str]:
    """A real uvicorn server on 127.0.0.1 serving the app (streams need a real socket)."""
    port = free_port()
    config = uvicorn.Config(
        build_app(matrix_runtime), host="127.0.0.1", port=port, log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(600):  # poll for start-up (at most 30 s)
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_every_route_and_tool_has_a_row(matrix_runtime: Runtime) -> None:
    app = build_app(matrix_runtime)
    names = [row.name for row in MATRIX]
    assert len(names) == len(set(names)), "duplicate row"
    covered = {row.covers for row in MATRIX}
    routes = route_names(app.routes)
    assert routes - covered == set(), "routes without a row in MATRIX"
    assert covered - routes == set(), "rows for routes that do not exist"
    assert all(set(row.expect) == set(COLUMNS) for row in MATRIX)
    if MCP_ROUTE in routes:  # every tool the MCP server offers has its own row
        assert {f"mcp:{t.name}" for t in tools.TOOLS} <= set(names)
        assert "mcp:memtrace_recall new_only" in names


@pytest.mark.slow  # a real server socket and ~230 fresh worlds: ~5 s of CPU
async def test_access_control_matrix(matrix_runtime: Runtime, matrix_url: str) -> None:
    mismatches: list[str] = []
    async with httpx.AsyncClient(base_url=matrix_url, timeout=30) as client:
        for row in MATRIX:
            for column in COLUMNS:
                world = await _world(matrix_runtime, column)
                status, text = await row.call(client, world)
                expected = row.expect[column]
                if status != expected:
                    mismatches.append(
                        f"{row.name} [{column}]: expected {expected}, got {status} {text[:160]}"
                    )
                if status >= 400 and row.json_errors and not _is_error_body(text):
                    mismatches.append(f"{row.name} [{column}]: error without an 'error' field")
                if column != "own" and SECRET in text:
                    mismatches.append(f"{row.name} [{column}]: org B's content leaked")
                if column != "other" and world.other_ids["memory_id"] in text:
                    mismatches.append(f"{row.name} [{column}]: org B's memory id leaked")
                if column == "other":
                    mismatches += [
                        f"{row.name} [other]: {p}" for p in await _org_b_intact(client, world)
                    ]
    assert not mismatches, "\n".join(mismatches)
