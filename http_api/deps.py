"""Request dependencies: the runtime, the caller's principal, and the org-bound service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Annotated, Any

import orjson
from fastapi import Depends, HTTPException, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from http_api.guard import PRINCIPAL
from memtrace.auth.keys import Principal, presented_key
from memtrace.domain.errors import InvalidInput
from memtrace.domain.jsonbody import parse_json
from memtrace.lifecycle.service import Lifecycle
from memtrace.runtime import Runtime
from memtrace.service import MemoryService
from memtrace.service_feed import FeedService


def json_response(
    content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response encoded with orjson (fast, and exact for floats and unicode)."""
    return Response(
        orjson.dumps(content), status_code, headers=headers, media_type="application/json"
    )


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_principal(request: Request) -> Principal:
    """The caller, as authenticated by :class:`http_api.guard.AuthGate` before the body."""
    principal = request.scope.get("state", {}).get(PRINCIPAL)
    if isinstance(principal, Principal):
        return principal
    return await get_runtime(request).authenticate(presented_key(request.scope["headers"]))


def _service_with(permission: str) -> Callable[..., Awaitable[MemoryService]]:
    async def dependency(
        request: Request, principal: Annotated[Principal, Depends(get_principal)]
    ) -> MemoryService:
        principal.require(permission)
        return await get_runtime(request).service(principal.org_id)

    return dependency


ReadService = Annotated[MemoryService, Depends(_service_with("read"))]
WriteService = Annotated[MemoryService, Depends(_service_with("write"))]


async def _feed(
    request: Request, principal: Annotated[Principal, Depends(get_principal)]
) -> FeedService:
    # A cursor is the reader's own state: reading and confirming need only `read`, so a
    # read-only key (a dashboard) can keep its place (docs/feed.md).
    principal.require("read")
    return await get_runtime(request).feed(principal.org_id)


ReadFeed = Annotated[FeedService, Depends(_feed)]


def _lifecycle_with(permission: str) -> Callable[..., Awaitable[Lifecycle]]:
    async def dependency(
        request: Request, principal: Annotated[Principal, Depends(get_principal)]
    ) -> Lifecycle:
        principal.require(permission)
        # the audit log names the key (never its secret); without auth, the local caller
        actor = principal.key_id or "local"
        return await get_runtime(request).lifecycle(principal.org_id, actor)

    return dependency


ReadLifecycle = Annotated[Lifecycle, Depends(_lifecycle_with("read"))]
WriteLifecycle = Annotated[Lifecycle, Depends(_lifecycle_with("write"))]
AdminLifecycle = Annotated[Lifecycle, Depends(_lifecycle_with("admin"))]


async def read_json(request: Request) -> Any:
    """The request body parsed by the one JSON parser of every route (an empty body is
    ``None``)."""
    return parse_json(await request.body())


class _JsonRequest(Request):
    async def json(self) -> Any:
        try:
            return parse_json(await self.body())
        except InvalidInput as exc:  # FastAPI re-raises an HTTPException from here as it is
            raise HTTPException(400, detail=exc.message) from None


class JsonRoute(APIRoute):
    """A route whose JSON body FastAPI parses with :func:`memtrace.domain.jsonbody.parse_json`
    (the same parser and rules as ``POST /memories``), not Python's lenient ``json``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def parse_with_memtrace_rules(request: Request) -> Response:
            return await handler(_JsonRequest(request.scope, request.receive))

        return parse_with_memtrace_rules
