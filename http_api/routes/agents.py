"""Agents: the agent's id is its name; writing a memory registers an unknown agent."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from http_api.deps import JsonRoute, ReadService, WriteService
from http_api.routes.memories import page_response
from memtrace.domain.models import (
    Agent,
    AgentContext,
    AgentCreate,
    AgentList,
    AgentMemoryParams,
    AgentStats,
    ContextRequest,
    MemoryList,
    PageParams,
)

router = APIRouter(prefix="/api/v1/agents", tags=["agents"], route_class=JsonRoute)


@router.post("", status_code=201, response_model_exclude_none=True)
async def register_agent(body: AgentCreate, service: WriteService) -> Agent:
    return await service.register_agent(body)


@router.get("", response_model_exclude_none=True)
async def list_agents(service: ReadService, page: Annotated[PageParams, Query()]) -> AgentList:
    agents, has_more = await service.list_agents(page.limit, page.offset)
    return AgentList(agents=agents, count=len(agents), has_more=has_more)


@router.get("/{agent_id}", response_model_exclude_none=True)
async def get_agent(agent_id: str, service: ReadService) -> Agent:
    return await service.get_agent(agent_id)


@router.get("/{agent_id}/stats", response_model_exclude_none=True)
async def agent_stats(agent_id: str, service: ReadService) -> AgentStats:
    return await service.agent_stats(agent_id)


@router.get("/{agent_id}/memories", response_model=MemoryList)
async def agent_memories(
    agent_id: str, service: ReadService, params: Annotated[AgentMemoryParams, Query()]
) -> Response:
    return page_response(await service.list_memories(params, agent_id=agent_id))


@router.post("/{agent_id}/context", summary="Markdown context across the agent's sessions")
async def agent_context(
    agent_id: str, service: ReadService, body: ContextRequest | None = None
) -> AgentContext:
    return await service.agent_context(agent_id, body or ContextRequest())


@router.delete("/{agent_id}", status_code=204, response_class=Response)
async def delete_agent(agent_id: str, service: WriteService) -> Response:
    await service.delete_agent(agent_id)
    return Response(status_code=204)
