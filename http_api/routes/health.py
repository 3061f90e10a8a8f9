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


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration`` text: ``2h30m15.5s``, ``1m0.25s``, ``812.345ms``, ``0s``."""
    ns = round(seconds * 1e9)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size or unit == "ns":
                return f"{ns / size:.9f}".rstrip("0").rstrip(".") + unit if ns else "0s"
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    secs = f"{rest / 1e9:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    return f"{minutes}m{secs}" if minutes else secs


def _with_go_fields(body: dict[str, Any]) -> dict[str, Any]:
    """Our body plus what the Go memtrace's answered (``arc``: each Arc-backed org's health,
    ``uptime``), so monitoring keyed on either keeps working (docs/api.md)."""
    arc = {org: s["healthy"] for org, s in body["stores"].items() if s["backend"] == "arc"}
    return {**body, "arc": arc, "uptime": go_duration(body["uptime_s"])}


@router.get("/health", summary="Service status and each open store's health")
async def health(request: Request) -> dict[str, Any]:
    _, body = get_runtime(request).health()
    return _with_go_fields(body)


@router.get(
    "/ready",
    summary="200 while this process can serve: the metadata DB answers and the data directory "
    "takes writes (one org's backend being down does not count)",
)
async def ready(request: Request) -> Response:
    ok, body = get_runtime(request).health()
    body = {**_with_go_fields(body), "status": "ready" if ok else "not ready"}
    return json_response(body, 200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    runtime = get_runtime(request)
    return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4")
