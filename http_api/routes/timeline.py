"""Temporal views: the timeline (memories per time bucket) and decision outcomes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from http_api.deps import JsonRoute, ReadService, WriteService, json_response
from memtrace.domain.models import Memory, OutcomeCreate, Timeline, TimelineParams

router = APIRouter(prefix="/api/v1", tags=["timeline"], route_class=JsonRoute)


@router.get(
    "/timeline",
    response_model=Timeline,
    summary="Memories per time bucket (e.g. hourly), optionally grouped, counted by the store",
)
async def timeline(service: ReadService, params: Annotated[TimelineParams, Query()]) -> Response:
    return json_response(await service.timeline(params))


@router.post(
    "/memories/{decision_id}/outcome",
    status_code=201,
    response_model=Memory,
    summary="Record how a decision turned out (success, failure, partial)",
    responses={409: {"description": "The same outcome of this decision was already recorded"}},
)
async def record_outcome(decision_id: str, body: OutcomeCreate, service: WriteService) -> Response:
    record = await service.record_outcome(decision_id, body)
    return json_response(record.to_wire(), 201)
