"""The few ASGI pieces the Arc emulator needs, so ``memtrace/`` stays free of web frameworks
(docs/architecture.md): a request with headers and body, a response, and a method+path router.
uvicorn serves :class:`Router` like any ASGI app; httpx's ASGITransport can drive it in process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]


class Request:
    def __init__(
        self, scope: Scope, receive: Receive, path_params: Mapping[str, str] | None = None
    ) -> None:
        self.headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        self.path_params = dict(path_params or {})
        self._receive = receive

    async def body(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            message = await self._receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)


class Response:
    def __init__(
        self, content: bytes = b"", status_code: int = 200, media_type: str | None = None
    ) -> None:
        self.body = content
        self.status_code = status_code
        self.media_type = media_type

    async def send(self, send: Send) -> None:
        headers = [(b"content-length", str(len(self.body)).encode())]
        if self.media_type:
            headers.append((b"content-type", self.media_type.encode()))
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


class JSONResponse(Response):
    def __init__(self, content: Any, status_code: int = 200) -> None:
        super().__init__(orjson.dumps(content), status_code, "application/json")


Handler = Callable[[Request], Awaitable[Response]]


class Router:
    """Dispatch on (method, path); 404 and 405 as JSON. Lifespan events are acknowledged.

    A path segment written ``{name}`` matches any one segment, passed in
    ``request.path_params``."""

    def __init__(self, routes: Mapping[tuple[str, str], Handler]) -> None:
        self.routes = dict(routes)

    def _match(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], bool]:
        """(handler, path params, whether the path exists for another method)."""
        handler = self.routes.get((method, path))
        if handler is not None:
            return handler, {}, True
        parts = path.split("/")
        exists = False
        for (route_method, template), candidate in self.routes.items():
            pattern = template.split("/")
            if len(pattern) != len(parts):
                continue
            params: dict[str, str] = {}
            for want, got in zip(pattern, parts, strict=True):
                if want.startswith("{") and want.endswith("}") and got:
                    params[want[1:-1]] = got
                elif want != got:
                    break
            else:
                if route_method == method:
                    return candidate, params, True
                exists = True
        return None, {}, exists

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        handler, params, exists = self._match(scope["method"], scope["path"])
        if handler is not None:
            response = await handler(Request(scope, receive, params))
        elif exists:
            response = JSONResponse({"success": False, "error": "method not allowed"}, 405)
        else:
            response = JSONResponse({"success": False, "error": "not found"}, 404)
        await response.send(send)
