"""Request dependencies: the runtime, the caller's principal, and the org-bound service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from starlette.responses import Response

from memtrace.auth.keys import Principal, presented_key
from memtrace.domain.errors import InvalidInput
from memtrace.runtime import Runtime
from memtrace.service import MemoryService


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
    return await get_runtime(request).authenticate(presented_key(request.headers))


def _service_with(permission: str) -> Callable[..., Awaitable[MemoryService]]:
    async def dependency(
        request: Request, principal: Annotated[Principal, Depends(get_principal)]
    ) -> MemoryService:
        principal.require(permission)
        return await get_runtime(request).service(principal.org_id)

    return dependency


ReadService = Annotated[MemoryService, Depends(_service_with("read"))]
WriteService = Annotated[MemoryService, Depends(_service_with("write"))]


def parse_body(body: bytes) -> Any:
    """A request body parsed as JSON (an empty body is ``None``)."""
    if not body.strip():
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidInput("body: invalid JSON") from None


async def read_json(request: Request) -> Any:
    """The request body parsed as JSON (an empty body is ``None``)."""
    return parse_body(await request.body())
