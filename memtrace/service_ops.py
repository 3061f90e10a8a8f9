"""The tools' :class:`~memtrace.tools.MemoryOps` over the in-process service of one org: how the
MCP server runs tools in embedded mode and on the server's own HTTP transports (no HTTP hop)."""

from __future__ import annotations

from memtrace.domain.models import (
    AgentCreate,
    ContextRequest,
    FeedParams,
    ListParams,
    MemoryCreate,
    OutcomeCreate,
    SearchRequest,
    SessionCreate,
    TimelineParams,
)
from memtrace.lifecycle.service import Lifecycle
from memtrace.service import MemoryService
from memtrace.service_feed import FeedService
from memtrace.tools import Json


class ServiceOps:
    """:class:`MemoryOps` over the in-process service of one org (no HTTP hop)."""

    def __init__(self, service: MemoryService, lifecycle: Lifecycle) -> None:
        self.service = service
        self.lifecycle = lifecycle

    async def remember(self, item: MemoryCreate) -> Json:
        return (await self.service.remember(item)).to_wire()

    async def list_memories(self, params: ListParams) -> Json:
        return (await self.service.list_memories(params)).to_wire()

    async def search(self, request: SearchRequest) -> Json:
        return (await self.service.search(request)).to_wire()

    async def create_session(self, body: SessionCreate) -> Json:
        return (await self.service.create_session(body)).model_dump(mode="json", exclude_none=True)

    async def session_context(self, session_id: str, request: ContextRequest) -> Json:
        context = await self.service.session_context(session_id, request)
        return context.model_dump(mode="json")

    async def register_agent(self, body: AgentCreate) -> Json:
        agent = await self.service.register_agent(body)
        return agent.model_dump(mode="json", exclude_none=True)

    async def delete_memory(self, memory_id: str) -> None:
        await self.lifecycle.delete_memory(memory_id)

    async def read_feed(self, params: FeedParams) -> Json:
        return (await FeedService(self.service).read(params)).to_wire()

    async def timeline(self, params: TimelineParams) -> Json:
        return await self.service.timeline(params)

    async def record_outcome(self, decision_id: str, body: OutcomeCreate) -> Json:
        return (await self.service.record_outcome(decision_id, body)).to_wire()
