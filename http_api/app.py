"""The REST application: ``create_app(runtime)`` wires routes, errors and middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, Protocol

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute

from http_api.abuse import install_abuse_limits
from http_api.errors import install_error_handlers
from http_api.guard import AuthGate, HostPolicy, RequestGuard
from http_api.middleware import BodyLimitMiddleware, MetricsMiddleware
from http_api.routes import agents, feed, health, lifecycle, memories, sessions, timeline, ui
from http_api.routes.memories import WRITE_PATH
from http_api.writepath import MemoryWritePath
from memtrace import __version__
from memtrace.domain.models import ErrorBody
from memtrace.runtime import Runtime


class AppAddon(Protocol):
    """Something served beside the REST API (e.g. the MCP transports), without this package
    depending on it: it adds its routes, and runs its lifespan inside the app's, once the
    runtime is up."""

    def install(self, app: FastAPI) -> None: ...

    def lifespan(self) -> AbstractAsyncContextManager[None]: ...


def create_app(
    runtime: Runtime,
    *,
    bootstrap_key: bool = False,
    on_started: Callable[[str | None], None] | None = None,
    manage_runtime: bool = True,
    addons: Sequence[AppAddon] = (),
) -> FastAPI:
    """Build the REST app around a runtime.

    Args:
        runtime: the process's runtime (one per app).
        bootstrap_key: create and report an admin key on a deployment without keys.
        on_started: called with that key (or ``None``) once the runtime is up.
        manage_runtime: start and stop the runtime with the app's lifespan; tests that drive
            the app through ``httpx.ASGITransport`` (which has no lifespan) start it themselves.
        addons: served beside the REST routes (``memtrace serve`` adds the MCP transports).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_runtime:
            key = await runtime.start(bootstrap_key=bootstrap_key)
            if on_started is not None:
                on_started(key)
        try:
            async with AsyncExitStack() as stack:
                for addon in addons:
                    await stack.enter_async_context(addon.lifespan())
                yield
        finally:
            if manage_runtime:
                await runtime.close()

    app = FastAPI(
        title="memtrace",
        version=__version__,
        summary="Temporal memory for fleets of AI agents",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    for router in (
        health.router,
        lifecycle.router,
        memories.router,
        agents.router,
        sessions.router,
        feed.router,
        timeline.router,
        ui.router,
    ):
        app.include_router(router)
    for addon in addons:
        addon.install(app)
    install_error_handlers(app)
    settings = runtime.settings
    # Added innermost first: rate limit → body deadline → metrics → Host/Origin/JSON guard →
    # key check (before any body is read) → body size → the write route (POST /memories
    # without FastAPI's per-request work) → routes (REST and the addons').
    route = _route(memories.router.routes, "POST", WRITE_PATH)
    app.add_middleware(MemoryWritePath, runtime=runtime, route=route)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.limits.max_body_bytes)
    app.add_middleware(AuthGate, runtime=runtime)
    app.add_middleware(RequestGuard, policy=HostPolicy.from_settings(settings.server))
    app.add_middleware(MetricsMiddleware, metrics=runtime.metrics)
    install_abuse_limits(
        app,
        settings,
        limiter=runtime.limiter,
        org_limiter=runtime.org_limiter,
        org_of=runtime.auth.known_org,
        metrics=runtime.metrics,
    )
    if settings.server.cors_origins:  # outermost: it answers preflights itself
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.server.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_RESPONSE_HEADERS,
            max_age=600,
        )
    _document_extra_schemas(app)
    return app


def _route(routes: Sequence[BaseRoute], method: str, path: str) -> BaseRoute | None:
    for route in routes:
        if getattr(route, "path", None) == path and method in getattr(route, "methods", ()):
            return route
    return None


# What browser clients (the TypeScript SDK, MCP clients) send and need to read.
CORS_REQUEST_HEADERS = [
    "authorization",
    "content-type",
    "x-api-key",
    "mcp-protocol-version",
    "mcp-session-id",
    "last-event-id",
]
CORS_RESPONSE_HEADERS = ["retry-after", "www-authenticate", "mcp-session-id"]


_API_ERRORS = {
    "400": "Invalid input; `error` names the field",
    "401": "Missing, malformed, unknown or revoked API key",
    "403": "The API key lacks the permission",
    "404": "Not found (also for other orgs' objects)",
    "409": "Conflict or duplicate",
    "408": "Request body not received in time",
    "413": "Request body too large",
    "415": "Request body is not JSON",
    "421": "Host not in server.allowed_hosts",
    "429": "Rate limited",
    "503": "Storage unavailable",
}


def _document_extra_schemas(app: FastAPI) -> None:
    """Finish the OpenAPI schema: models that routes parse by hand (single-or-batch writes),
    and the real error responses (400 with ``{"error"}``, never FastAPI's default 422)."""
    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = base_openapi()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (*memories.EXTRA_SCHEMAS, ErrorBody):
                definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, sub in definition.pop("$defs", {}).items():
                    components.setdefault(name, sub)
                components.setdefault(model.__name__, definition)
            for name in ("HTTPValidationError", "ValidationError"):
                components.pop(name, None)
            error_ref = {"$ref": "#/components/schemas/ErrorBody"}
            for path, operations in schema["paths"].items():
                for operation in operations.values():
                    responses = operation.setdefault("responses", {})
                    responses.pop("422", None)
                    if not path.startswith("/api/"):
                        continue
                    for status, description in _API_ERRORS.items():
                        responses.setdefault(status, {"description": description})
                        responses[status]["content"] = {"application/json": {"schema": error_ref}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
