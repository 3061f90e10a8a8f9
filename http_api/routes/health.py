"""Liveness, readiness and Prometheus metrics (no API key needed).

All three answer from state the runtime keeps current in the background (memtrace/health.py):
they never wait on a store, a backend or the metadata DB.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from http_api.deps import get_runtime, json_response

router = APIRouter(tags=["health"])


@router.get("/health", summary="Service status and each open store's health")
async def health(request: Request) -> dict[str, Any]:
    _, body = get_runtime(request).health()
    return body


@router.get(
    "/ready",
    summary="200 while this process can serve: the metadata DB answers and the data directory "
    "takes writes (one org's backend being down does not count)",
)
async def ready(request: Request) -> Response:
    ok, body = get_runtime(request).health()
    return json_response(body, 200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    runtime = get_runtime(request)
    return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4")
