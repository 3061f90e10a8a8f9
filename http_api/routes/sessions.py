"""Sessions: bounded pieces of an agent's work, with their memories and markdown context."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from http_api.deps import JsonRoute, ReadService, WriteService
from http_api.routes.memories import page_response
from memtrace.domain.models import (
    ContextRequest,
    MemoryList,
    Session,
    SessionContext,
    SessionCreate,
    SessionList,
    SessionListParams,
    SessionMemoryParams,
    SessionUpdate,
)

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"], route_class=JsonRoute)


@router.post("", status_code=201, response_model_exclude_none=True)
async def create_session(body: SessionCreate, service: WriteService) -> Session:
    return await service.create_session(body)


@router.get("", response_model_exclude_none=True)
async def list_sessions(
    service: ReadService, params: Annotated[SessionListParams, Query()]
) -> SessionList:
    sessions, has_more = await service.list_sessions(params)
    return SessionList(sessions=sessions, count=len(sessions), has_more=has_more)


@router.get("/{session_id}", response_model_exclude_none=True)
async def get_session(session_id: str, service: ReadService) -> Session:
    return await service.get_session(session_id)


@router.put("/{session_id}", response_model_exclude_none=True)
async def update_session(session_id: str, body: SessionUpdate, service: WriteService) -> Session:
    return await service.update_session(session_id, body)


@router.get("/{session_id}/memories", response_model=MemoryList)
async def session_memories(
    session_id: str, service: ReadService, params: Annotated[SessionMemoryParams, Query()]
) -> Response:
    return page_response(await service.list_memories(params, session_id=session_id))


@router.post("/{session_id}/context", summary="LLM-ready markdown of the session")
async def session_context(
    session_id: str, service: ReadService, body: ContextRequest | None = None
) -> SessionContext:
    return await service.session_context(session_id, body or ContextRequest())
