"""``POST /api/v1/memories`` as plain ASGI: the hottest route, without FastAPI's per-request work.

Routing, dependency solving and the response machinery cost FastAPI ~200 us per request, more
than the write itself (bench/README.md, "Single remember"). This middleware, installed inside
every other middleware of the app (body limits, deadlines, rate limits, metrics see it as any
route), answers the write route directly: the same checks in the same order as the FastAPI
route (the key, the ``write`` permission, the body, validation), the same service call
(:func:`http_api.routes.memories.write_memories`) and the same error mapping
(:func:`http_api.errors.error_response`). The FastAPI route stays registered for the OpenAPI
document and for requests this middleware does not take.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from http_api.errors import error_response
from http_api.guard import PRINCIPAL
from http_api.routes.memories import WRITE_PATH, write_memories
from memtrace.auth.keys import Principal, presented_key
from memtrace.domain.jsonbody import parse_json
from memtrace.runtime import Runtime

_JSON = (b"content-type", b"application/json")


async def send_json(send: Send, status: int, body: bytes) -> None:
    """A complete JSON response in two messages."""
    headers = [_JSON, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive) -> bytes:
    """The whole request body."""
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class MemoryWritePath:
    """Serves ``POST /api/v1/memories``; passes every other request to ``app``.

    Args:
        route: the FastAPI route of the same path and method, left in ``scope["route"]`` like
            the router does (metrics label requests by its path template).
    """

    def __init__(self, app: ASGIApp, runtime: Runtime, route: BaseRoute | None) -> None:
        self.app = app
        self.runtime = runtime
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != WRITE_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if self.route is not None:
            scope["route"] = self.route
        try:
            principal = scope.get("state", {}).get(PRINCIPAL)  # from http_api.guard.AuthGate
            if not isinstance(principal, Principal):
                principal = await self.runtime.authenticate(presented_key(scope["headers"]))
            principal.require("write")
            service = await self.runtime.service(principal.org_id)
            payload = parse_json(await read_body(receive))
            status, content = await write_memories(service, payload)
        except Exception as exc:
            response = await error_response(Request(scope), exc)
            if response is None:
                raise
            await response(scope, receive, send)
            return
        await send_json(send, status, orjson.dumps(content))
