""":class:`ClientOps`: the tools' :class:`~memtrace.tools.MemoryOps` over the REST API.

Remote mode of the MCP server and the cookbooks run the tools of
:mod:`memtrace.tools` through this, so the tools behave the same in process
(:class:`~memtrace.service_ops.ServiceOps`) and over HTTP. Results are the REST JSON shapes.
"""

from __future__ import annotations

from memtrace.client import _endpoints as ep
from memtrace.client.async_ import AsyncMemtrace
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
from memtrace.tools import Json


def _object(data: object) -> Json:
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object from the server, got {type(data).__name__}")
    return data


class ClientOps:
    """:class:`~memtrace.tools.MemoryOps` backed by an :class:`AsyncMemtrace`.

    A duplicate remember raises :class:`~memtrace.domain.errors.Conflict` (a ``DuplicateMemory``)
    carrying ``existing_id``, exactly like ``ServiceOps``.
    """

    def __init__(self, client: AsyncMemtrace) -> None:
        self.client = client

    async def remember(self, item: MemoryCreate) -> Json:
        return _object(await self.client.request(ep.add_memory(item)))

    async def list_memories(self, params: ListParams) -> Json:
        return _object(await self.client.request(ep.list_memories(params)))

    async def search(self, request: SearchRequest) -> Json:
        return _object(await self.client.request(ep.search_memories(request)))

    async def create_session(self, body: SessionCreate) -> Json:
        return _object(await self.client.request(ep.create_session(body)))

    async def session_context(self, session_id: str, request: ContextRequest) -> Json:
        return _object(await self.client.request(ep.get_session_context(session_id, request)))

    async def register_agent(self, body: AgentCreate) -> Json:
        return _object(await self.client.request(ep.register_agent(body)))

    async def delete_memory(self, memory_id: str) -> None:
        await self.client.request(ep.delete_memory(memory_id))

    async def read_feed(self, params: FeedParams) -> Json:
        return _object(await self.client.request(ep.read_feed(params)))

    async def timeline(self, params: TimelineParams) -> Json:
        return _object(await self.client.request(ep.timeline(params)))

    async def record_outcome(self, decision_id: str, body: OutcomeCreate) -> Json:
        return _object(await self.client.request(ep.record_outcome(decision_id, body)))
