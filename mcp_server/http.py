"""MCP over HTTP beside the REST API: Streamable HTTP at ``/mcp``, legacy SSE at ``/sse``.

The API key is read from the same headers as REST (``x-api-key`` or ``Authorization:
Bearer``, by :func:`memtrace.auth.keys.presented_key`). Every HTTP request to these endpoints
is refused with 401 unless the key is valid and not revoked, and every tool call authenticates
again from its own request, so the org and the permissions always come from the key that sent
the call (a read-only key cannot remember, a key revoked mid-session stops working). A legacy
SSE session belongs to the key that opened it: a message posted with another key is answered
404, as for a session that does not exist (the SDK compares ``scope["user"]``, set here).

The Host/Origin allow-list (DNS rebinding) is the REST app's, applied to every route of the
app (``http_api.guard``), so the SDK's own copy of that check is turned off here.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import Context
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_server.server import build_server
from mcp_server.streams import limit_streams
from memtrace.auth.keys import Principal, presented_key
from memtrace.domain.errors import MemtraceError, Unauthorized
from memtrace.runtime import Runtime
from memtrace.service_ops import ServiceOps
from memtrace.tools import MemoryOps, ToolSpec

MCP_PATH = "/mcp"
SSE_PATH = "/sse"
SSE_MESSAGES_PATH = "/messages/"


class _KeyGate:
    """401 (REST's JSON error shape) for a request without a valid, unrevoked API key; else
    the key's identity as ``scope["user"]``, which the SDK binds an SSE session to."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                principal = await self.runtime.authenticate(presented_key(scope["headers"]))
            except MemtraceError as exc:
                response = JSONResponse(exc.to_body(), exc.status_code, headers=exc.headers())
                await response(scope, receive, send)
                return
            scope["user"] = _key_user(principal)
        await self.app(scope, receive, send)


def _key_user(principal: Principal) -> AuthenticatedUser:
    """The SDK's notion of who is calling: the API key (its id, never the secret)."""
    key = principal.key_id or "auth-disabled"
    token = AccessToken(
        token=key, client_id=key, subject=principal.org_id, scopes=sorted(principal.permissions)
    )
    return AuthenticatedUser(token)


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
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.server = build_server(self._ops_for_call)
        limit = runtime.settings.limits.max_body_bytes
        # The app's guard checks Host and Origin for every route (server.allowed_hosts).
        one_allow_list = TransportSecuritySettings(enable_dns_rebinding_protection=False)
        # Stateless: no per-client session state on the server, so any worker can answer any
        # call and nothing outlives a request but the memories themselves.
        streamable = self.server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            stateless_http=True,
            max_request_body_size=limit,
            transport_security=one_allow_list,
        )
        sse = self.server.sse_app(
            sse_path=SSE_PATH,
            message_path=SSE_MESSAGES_PATH,
            max_request_body_size=limit,
            transport_security=one_allow_list,
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
        principal = await self.runtime.authenticate(presented_key(request.scope["headers"]))
        principal.require(spec.permission)
        org = principal.org_id
        return ServiceOps(
            await self.runtime.service(org),
            await self.runtime.lifecycle(org, principal.key_id or "local"),
        )
