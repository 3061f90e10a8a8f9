"""MCP over HTTP beside the REST API: Streamable HTTP at ``/mcp``, legacy SSE at ``/sse``.

The API key is read from the same headers as REST (``x-api-key`` or ``Authorization:
Bearer``). Every HTTP request to these endpoints is refused with 401 unless the key is valid
and not revoked, and every tool call authenticates again from its own request, so the org and
the permissions always come from the key that sent the call (a read-only key cannot
remember, a key revoked mid-session stops working).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from mcp.server.mcpserver import Context
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_server.server import build_server
from mcp_server.streams import limit_streams
from memtrace.auth.keys import presented_key
from memtrace.domain.errors import Unauthorized
from memtrace.runtime import Runtime
from memtrace.service_ops import ServiceOps
from memtrace.tools import MemoryOps, ToolSpec

MCP_PATH = "/mcp"
SSE_PATH = "/sse"
SSE_MESSAGES_PATH = "/messages/"


class _KeyGate:
    """401 (REST's JSON error shape) for a request without a valid, unrevoked API key."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                await self.runtime.authenticate(presented_key(Headers(scope=scope)))
            except Unauthorized as exc:
                await JSONResponse(exc.to_body(), exc.status_code)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _gated(route: BaseRoute, runtime: Runtime) -> BaseRoute:
    if isinstance(route, Route):
        return Route(route.path, _KeyGate(route.app, runtime), methods=route.methods)
    if isinstance(route, Mount):
        return Mount(route.path, app=_KeyGate(route.app, runtime))
    raise TypeError(f"unexpected MCP route {route!r}")


class McpHttpAddon:
    """The MCP transports as an addon of the REST app (see ``http_api.app.AppAddon``).

    Args:
        runtime: the server's runtime (the same one the REST routes use).
        host: the bind address; on loopback the SDK's DNS-rebinding protection is enabled.
    """

    def __init__(self, runtime: Runtime, *, host: str = "127.0.0.1") -> None:
        self.runtime = runtime
        self.server = build_server(self._ops_for_call)
        limit = runtime.settings.limits.max_body_bytes
        # Stateless: no per-client session state on the server, so any worker can answer any
        # call and nothing outlives a request but the memories themselves.
        streamable = self.server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            stateless_http=True,
            max_request_body_size=limit,
            host=host,
        )
        sse = self.server.sse_app(
            sse_path=SSE_PATH,
            message_path=SSE_MESSAGES_PATH,
            max_request_body_size=limit,
            host=host,
        )
        routes = limit_streams(
            (*streamable.routes, *sse.routes), runtime, mcp_path=MCP_PATH, sse_path=SSE_PATH
        )
        self.routes = [_gated(route, runtime) for route in routes]

    def install(self, app: FastAPI) -> None:
        app.router.routes.extend(self.routes)

    def lifespan(self) -> AbstractAsyncContextManager[None]:
        return self.server.session_manager.run()

    async def _ops_for_call(self, spec: ToolSpec, ctx: Context[Any, Any]) -> MemoryOps:
        request = ctx.request_context.request
        if not isinstance(request, Request):
            raise Unauthorized("missing API key (send x-api-key or Authorization: Bearer)")
        principal = await self.runtime.authenticate(presented_key(request.headers))
        principal.require(spec.permission)
        return ServiceOps(await self.runtime.service(principal.org_id))
