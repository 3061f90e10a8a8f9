"""MCP over Streamable HTTP (/mcp) and SSE (/sse) on a real ``memtrace serve`` process:
the API key decides the org, missing or revoked keys are refused, permissions hold, and MCP
and REST see the same memories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from memtrace.tools import TOOLS
from tests.helpers import ServerProcess, admin, new_tenant, wait_until
from tests.mcp_helpers import TRANSPORTS, data, http_client, text

pytestmark = pytest.mark.slow  # starts processes or servers (docs/testing.md)


class Deployment:
    """One server with two orgs: read+write keys for each, a read-only and a revoked key."""

    def __init__(self, root: Path) -> None:
        self.server = ServerProcess(root / "data").start()
        self.http = httpx.Client(base_url=self.server.url)  # one client for the polls
        data_dir = self.server.data_dir
        self.keys: dict[str, str] = {}
        # Admin changes made with the CLI (in this process) reach the running server through
        # its metadata watcher.
        for org in ("acme", "globex"):
            _, self.keys[org] = new_tenant(data_dir, org)
        self.keys["reader"] = admin(
            data_dir, "key", "create", "--org", "acme", "--name", "ro", "--permissions", "read"
        )
        self.keys["revoked"] = admin(data_dir, "key", "create", "--org", "acme", "--name", "gone")
        revoke(data_dir, "gone")
        wait_until(lambda: self.status("/mcp", self.keys["globex"]) != 401)
        wait_until(lambda: self.status("/mcp", self.keys["revoked"]) == 401)

    def status(self, path: str, key: str | None) -> int:
        headers = {"x-api-key": key} if key else {}
        body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        headers["accept"] = "application/json, text/event-stream"
        return self.http.post(path, json=body, headers=headers).status_code


def revoke(data_dir: Path, name: str) -> None:
    """Revoke acme's key called ``name`` with the CLI (in this process)."""
    listing = admin(data_dir, "key", "list", "--org", "acme")
    admin(data_dir, "key", "revoke", next(
        line.split("\t")[0] for line in listing.splitlines() if f"\t{name}\t" in line
    ))  # fmt: skip


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    dep = Deployment(tmp_path_factory.mktemp("mcp-http"))
    yield dep
    dep.http.close()
    dep.server.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_each_org_sees_only_its_own_memories(deployment: Deployment, transport: str) -> None:
    url = deployment.server.url
    marker = f"isolation-{transport}"
    async with http_client(transport, url, deployment.keys["acme"]) as acme:
        tools = await acme.list_tools()
        assert len(tools.tools) == len(TOOLS)
        stored = await acme.call_tool(
            "memtrace_remember", {"agent_id": "spy", "content": f"{marker} acme plans"}
        )
        assert not stored.is_error, text(stored)
    async with http_client(transport, url, deployment.keys["globex"]) as globex:
        await globex.call_tool(
            "memtrace_remember", {"agent_id": "spy", "content": f"{marker} globex plans"}
        )
        found = await globex.call_tool("memtrace_search", {"content_contains": marker})
        assert [m["content"] for m in data(found)["results"]] == [f"{marker} globex plans"]
        recalled = await globex.call_tool("memtrace_recall", {"agent_id": "spy", "since": "1h"})
        assert "acme" not in text(recalled)
    async with http_client(transport, url, deployment.keys["acme"]) as acme:
        found = await acme.call_tool("memtrace_search", {"content_contains": marker})
        assert [m["content"] for m in data(found)["results"]] == [f"{marker} acme plans"]


@pytest.mark.parametrize("path", ["/mcp", "/sse", "/messages/?session_id=x"])
def test_missing_or_revoked_key_is_refused(deployment: Deployment, path: str) -> None:
    for key in (None, deployment.keys["revoked"], "mtk_" + "A" * 43, "not-a-key"):
        headers = {"x-api-key": key} if key else {}
        if path == "/sse":
            response = httpx.get(f"{deployment.server.url}{path}", headers=headers)
        else:
            response = httpx.post(f"{deployment.server.url}{path}", json={}, headers=headers)
        assert response.status_code == 401, (path, key)
        assert "API key" in response.json()["error"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_revoked_key_cannot_connect(deployment: Deployment, transport: str) -> None:
    with pytest.raises(Exception):
        async with http_client(transport, deployment.server.url, deployment.keys["revoked"]) as c:
            await c.list_tools()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_read_only_key_can_read_but_not_remember(
    deployment: Deployment, transport: str
) -> None:
    async with http_client(transport, deployment.server.url, deployment.keys["reader"]) as reader:
        refused = await reader.call_tool(
            "memtrace_remember", {"agent_id": "ro", "content": "should not be stored"}
        )
        assert refused.is_error
        assert "'write' permission" in text(refused)
        decided = await reader.call_tool(
            "memtrace_decide", {"agent_id": "ro", "decision": "x", "reasoning": "y"}
        )
        assert decided.is_error
        allowed = await reader.call_tool("memtrace_recall", {"agent_id": "ro", "since": "1h"})
        assert not allowed.is_error
        assert data(allowed)["memories"] == []


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_mcp_and_rest_see_the_same_memories(deployment: Deployment, transport: str) -> None:
    key = deployment.keys["globex"]
    rest = httpx.Client(base_url=deployment.server.url, headers={"x-api-key": key})
    agent = f"bridge_{transport.replace('-', '_')}"
    async with http_client(transport, deployment.server.url, key) as mcp:
        stored = await mcp.call_tool(
            "memtrace_remember", {"agent_id": agent, "content": "written over MCP"}
        )
        memory_id = data(stored)["id"]
        fetched = rest.get(f"/api/v1/memories/{memory_id}")
        assert fetched.status_code == 200
        assert fetched.json()["content"] == "written over MCP"

        created = rest.post(
            "/api/v1/memories", json={"agent_id": agent, "content": "written over REST"}
        )
        assert created.status_code == 201
        recalled = await mcp.call_tool("memtrace_recall", {"agent_id": agent, "since": "1h"})
        assert [m["content"] for m in data(recalled)["memories"]] == [
            "written over REST",
            "written over MCP",
        ]
        assert created.json()["id"] in text(recalled)
    rest.close()


async def test_a_key_revoked_during_a_session_stops_working(deployment: Deployment) -> None:
    data_dir = deployment.server.data_dir
    plain = admin(data_dir, "key", "create", "--org", "acme", "--name", "brief")
    wait_until(lambda: deployment.status("/mcp", plain) != 401)
    async with http_client("streamable-http", deployment.server.url, plain) as client:
        first = await client.call_tool("memtrace_recall", {"agent_id": "bot", "since": "1h"})
        assert not first.is_error
        revoke(data_dir, "brief")
        wait_until(lambda: deployment.status("/mcp", plain) == 401)
        try:
            refused = await client.call_tool(
                "memtrace_remember", {"agent_id": "bot", "content": "after revocation"}
            )
        except Exception:
            pass  # the SDK raises for the 401 of the call's POST
        else:
            assert refused.is_error, text(refused)
    rest = httpx.get(
        f"{deployment.server.url}/api/v1/memories",
        params={"agent_id": "bot", "since": "1h"},
        headers={"x-api-key": deployment.keys["acme"]},
    )
    assert "after revocation" not in rest.text


def test_an_sse_session_takes_messages_only_from_the_key_that_opened_it(
    deployment: Deployment,
) -> None:
    # Found by adversarial testing: a session opened with acme's key accepted POST /messages/
    # with globex's key, and globex's results were pushed into acme's stream.
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    acme, globex = deployment.keys["acme"], deployment.keys["globex"]
    with (
        httpx.Client(base_url=deployment.server.url, timeout=30) as http,
        http.stream("GET", "/sse", headers={"x-api-key": acme}) as stream,
    ):
        assert stream.status_code == 200
        lines = stream.iter_lines()
        endpoint = next(line for line in lines if line.startswith("data:"))[5:].strip()
        assert "session_id=" in endpoint
        for key in (globex, deployment.keys["reader"]):  # another org; another key of acme
            stolen = http.post(endpoint, json=ping, headers={"x-api-key": key})
            assert stolen.status_code == 404, stolen.text
        own = http.post(endpoint, json=ping, headers={"x-api-key": acme})
        assert own.status_code == 202
        reply = next(line for line in lines if line.startswith("data:"))
        assert '"id":1' in reply.replace(" ", "")
