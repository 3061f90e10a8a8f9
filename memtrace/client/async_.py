"""Asynchronous memtrace client: :class:`AsyncMemtrace`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
from tenacity import AsyncRetrying

from memtrace.client import _endpoints as ep
from memtrace.client._base import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    Call,
    build_headers,
    build_request,
    decode,
    parse,
    resolve_config,
    retry_options,
    wrap_transport_error,
)
from memtrace.client.models import (
    AddMemoryRequest,
    Agent,
    AgentContext,
    AgentList,
    AgentStats,
    ContextOptions,
    CreateSessionRequest,
    ExportParams,
    FeedCursor,
    FeedPage,
    ForgetRequest,
    ForgetResult,
    ListOptions,
    Memory,
    MemoryBatchResult,
    MemoryList,
    RegisterAgentRequest,
    SearchQuery,
    SearchResult,
    Session,
    SessionContext,
    SessionList,
    Timeline,
    TimelineOptions,
    UpdateSessionRequest,
)
from memtrace.client.streaming import DEFAULT_READ_TIMEOUT, AsyncMemoryStream
from memtrace.domain.models import JsonObject


class AsyncMemtrace:
    """Asynchronous client for the memtrace REST API (drop-in for ``memtrace-sdk`` 0.2.0).

    Usage::

        async with AsyncMemtrace("http://localhost:9100", "mtk_...") as client:
            await client.remember("agent_1", "User prefers dark mode")

    Args:
        base_url: Server URL; default ``MEMTRACE_URL`` or ``http://localhost:9100``.
        api_key: API key; default ``MEMTRACE_API_KEY``.
        timeout: Seconds per request.
        max_retries: Retries after the first attempt on connection errors, 429 and 503.
        backoff: Base of the jittered exponential pause between retries, in seconds.
        transport: An ``httpx.AsyncBaseTransport`` (e.g. ``httpx.ASGITransport(app)``).

    Raises:
        ConfigError: no API key was given or found in the environment.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        url, key = resolve_config(base_url, api_key)
        self.base_url = url
        self.max_retries = max_retries
        self.backoff = backoff
        self._client = httpx.AsyncClient(
            base_url=url, headers=build_headers(key), timeout=timeout, transport=transport
        )

    async def close(self) -> None:
        """Close the underlying HTTP client."""
        await self._client.aclose()

    async def __aenter__(self) -> AsyncMemtrace:
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.close()

    async def request(self, call: Call) -> Any:
        """Send one call with retries; return its decoded JSON (``None`` for no content).

        Raises:
            MemtraceError: the mapped error response, or ``MemtraceConnectionError``.
        """
        async for attempt in AsyncRetrying(**retry_options(call, self.max_retries, self.backoff)):
            with attempt:
                return await self._send_once(call)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _send_once(self, call: Call) -> Any:
        try:
            response = await self._client.send(build_request(self._client, call))
            await response.aread()
        except httpx.TransportError as exc:
            raise wrap_transport_error(exc) from exc
        return decode(response, call)

    # --- convenience ------------------------------------------------------------------------

    async def remember(
        self,
        agent_id: str,
        content: str,
        *,
        memory_type: str = "episodic",
        event_type: str = "general",
        session_id: str | None = None,
        tags: Sequence[str] | None = None,
        importance: float | None = None,
        metadata: JsonObject = None,
        dedup_key: str | None = None,
        parent_id: str | None = None,
    ) -> Memory:
        """Store a memory (episodic/general unless told otherwise).

        Raises:
            DuplicateMemory: the same memory exists in the dedup window (``existing_id``).
        """
        return await self.add_memory(
            ep.memory_request(
                agent_id,
                content,
                memory_type=memory_type,
                event_type=event_type,
                session_id=session_id,
                tags=tags,
                importance=importance,
                metadata=metadata,
                dedup_key=dedup_key,
                parent_id=parent_id,
            )
        )

    async def recall(
        self,
        agent_id: str,
        since: str = "24h",
        *,
        until: str | None = None,
        session_id: str | None = None,
        memory_type: str | None = None,
        event_type: str | None = None,
        tags: Sequence[str] | None = None,
        limit: int = 100,
    ) -> MemoryList:
        """An agent's memories in a time window, newest first."""
        opts = ep.recall_options(
            agent_id,
            since,
            until=until,
            session_id=session_id,
            memory_type=memory_type,
            event_type=event_type,
            tags=tags,
            limit=limit,
        )
        return await self.list_memories(opts)

    async def decide(
        self,
        agent_id: str,
        decision: str,
        reasoning: str,
        *,
        session_id: str | None = None,
        tags: Sequence[str] | None = None,
        importance: float | None = None,
        metadata: JsonObject = None,
        event_type: str = "decision",
    ) -> Memory:
        """Record a decision; the reasoning is stored in ``metadata.reasoning``."""
        return await self.add_memory(
            ep.decision_request(
                agent_id,
                decision,
                reasoning,
                session_id=session_id,
                tags=tags,
                importance=importance,
                metadata=metadata,
                event_type=event_type,
            )
        )

    # --- memories ---------------------------------------------------------------------------

    async def add_memory(self, req: AddMemoryRequest) -> Memory:
        """Store one memory."""
        return parse(Memory, await self.request(ep.add_memory(req)))

    async def add_memories(self, memories: list[AddMemoryRequest]) -> list[Memory]:
        """Store a batch all-or-nothing; duplicates are skipped (see :meth:`add_memories_batch`)."""
        return (await self.add_memories_batch(memories)).memories

    async def add_memories_batch(self, memories: Sequence[AddMemoryRequest]) -> MemoryBatchResult:
        """Store a batch; the result also lists the duplicates it skipped."""
        return parse(MemoryBatchResult, await self.request(ep.add_memories(memories)))

    async def get_memory(self, memory_id: str) -> Memory:
        """One memory by id."""
        return parse(Memory, await self.request(ep.get_memory(memory_id)))

    # --- the feed and the live stream (docs/feed.md) -------------------------------------------

    async def feed(
        self,
        reader: str,
        *,
        limit: int | None = None,
        auto_advance: bool = False,
        include_own: bool = False,
        agent_id: str | None = None,
        session_id: str | None = None,
        memory_type: str | None = None,
        event_type: str | None = None,
        tags: Sequence[str] | None = None,
        min_importance: float | None = None,
        content_contains: str | None = None,
    ) -> FeedPage:
        """What other agents wrote since ``reader`` last confirmed, in commit order. Confirm
        the page's ``cursor`` with :meth:`confirm_feed` once handled, or read with
        ``auto_advance=True`` (the cursor moves now; a lost page is not read again)."""
        params = ep.feed_params(
            reader,
            limit=limit,
            auto_advance=auto_advance,
            include_own=include_own,
            agent_id=agent_id,
            session_id=session_id,
            memory_type=memory_type,
            event_type=event_type,
            tags=",".join(tags) if tags else None,
            min_importance=min_importance,
            content_contains=content_contains,
        )
        return ep.feed_page(await self.request(ep.read_feed(params)))

    async def confirm_feed(self, reader: str, cursor: str) -> FeedCursor:
        """Move ``reader``'s cursor up to ``cursor`` (a feed page's, or a stream event id)."""
        return ep.cursor_state(await self.request(ep.confirm_feed(reader, cursor)))

    async def feed_cursor(self, reader: str) -> FeedCursor:
        """``reader``'s confirmed cursor, and the org's head."""
        return ep.cursor_state(await self.request(ep.feed_cursor(reader)))

    def stream(
        self,
        *,
        agent_id: str | None = None,
        session_id: str | None = None,
        memory_type: str | None = None,
        event_type: str | None = None,
        tags: Sequence[str] | None = None,
        min_importance: float | None = None,
        content_contains: str | None = None,
        after: str | None = None,
        last_event_id: str | None = None,
        max_retries: int = 5,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> AsyncMemoryStream:
        """The org's new memories matching the filters, live, in commit order (from now, or
        after ``last_event_id``/``after``); reconnects and resumes by itself."""
        params = ep.stream_params(
            agent_id=agent_id,
            session_id=session_id,
            memory_type=memory_type,
            event_type=event_type,
            tags=",".join(tags) if tags else None,
            min_importance=min_importance,
            content_contains=content_contains,
            after=after,
        )
        return AsyncMemoryStream(
            self._client,
            params,
            last_event_id=last_event_id,
            max_retries=max_retries,
            read_timeout=read_timeout,
        )

    async def list_memories(self, opts: ListOptions | None = None) -> MemoryList:
        """One page of memories matching the filters."""
        return parse(MemoryList, await self.request(ep.list_memories(opts)))

    async def iter_memories(self, opts: ListOptions | None = None) -> AsyncIterator[Memory]:
        """Every memory matching the filters, page after page (``opts.limit`` per page), each
        page continuing at the previous one's cursor: no skips or repeats, however many."""
        next_opts: ListOptions | None = opts
        while True:
            page = await self.list_memories(next_opts)
            for memory in page.memories:
                yield memory
            next_opts = ep.next_list_page(next_opts, page)
            if next_opts is None:
                return

    async def search_memories(self, query: SearchQuery | None = None) -> SearchResult:
        """One page of search results."""
        return parse(SearchResult, await self.request(ep.search_memories(query)))

    async def iter_search(self, query: SearchQuery | None = None) -> AsyncIterator[Memory]:
        """Every search result, page after page (``query.limit`` per page), by cursor."""
        next_query: SearchQuery | None = query or SearchQuery()
        while next_query is not None:
            page = await self.search_memories(next_query)
            for memory in page.results:
                yield memory
            next_query = ep.next_search_page(next_query, page)

    # --- timelines and decision outcomes ---------------------------------------------------

    async def timeline(self, opts: TimelineOptions | None = None, **filters: Any) -> Timeline:
        """Memories per time bucket, counted by the server: ``timeline(since="7d",
        bucket="1h", group_by="event_type", event_type="error")`` or ``timeline(TimelineOptions)``.
        """
        req = opts or TimelineOptions.model_validate(filters)
        return parse(Timeline, await self.request(ep.timeline(req)))

    async def record_outcome(
        self,
        decision_id: str,
        outcome: str,
        content: str,
        *,
        metrics: dict[str, float] | None = None,
        agent_id: str | None = None,
    ) -> Memory:
        """Record how a decision turned out (``success``, ``failure`` or ``partial``): an
        outcome memory linked to the decision by ``parent_id``.

        Raises:
            NotFound: no such memory in the org.  InvalidInput: it is not a decision.
            DuplicateMemory: this outcome is already recorded (``existing_id``).
        """
        req = ep.outcome_request(outcome, content, metrics=metrics, agent_id=agent_id)
        return parse(Memory, await self.request(ep.record_outcome(decision_id, req)))

    # --- data lifecycle ---------------------------------------------------------------------

    async def delete_memory(self, memory_id: str) -> None:
        """Erase one memory for good (``NotFound`` if the org has none with this id)."""
        await self.request(ep.delete_memory(memory_id))

    async def forget(self, request: ForgetRequest | None = None, **filters: Any) -> ForgetResult:
        """Erase every memory matching the filters (an admin key; ``dry_run=True`` only
        counts): ``forget(agent_id="alice", delete_agent=True)`` or ``forget(ForgetRequest)``."""
        req = request or ForgetRequest.model_validate(filters)
        return parse(ForgetResult, await self.request(ep.forget(req)))

    async def export(self, params: ExportParams | None = None) -> AsyncIterator[Memory]:
        """Stream the org's memories (oldest first) as the server sends them, in constant
        memory."""
        call = ep.export(params)
        try:
            async with self._client.stream("GET", call.path, params=call.params) as response:
                if response.status_code >= 400:
                    await response.aread()
                    decode(response, call)
                async for line in response.aiter_lines():
                    memory = ep.export_line(line)
                    if memory is not None:
                        yield memory
        except httpx.TransportError as exc:
            raise wrap_transport_error(exc) from exc

    # --- agents -----------------------------------------------------------------------------

    async def register_agent(self, req: RegisterAgentRequest) -> Agent:
        """Register an agent (409 ``ConflictError`` if the name exists)."""
        return parse(Agent, await self.request(ep.register_agent(req)))

    async def list_agents(
        self, *, limit: int | None = None, offset: int | None = None
    ) -> AgentList:
        """The org's agents."""
        return parse(AgentList, await self.request(ep.list_agents(limit, offset)))

    async def get_agent(self, agent_id: str) -> Agent:
        return parse(Agent, await self.request(ep.get_agent(agent_id)))

    async def get_agent_stats(self, agent_id: str) -> AgentStats:
        return parse(AgentStats, await self.request(ep.get_agent_stats(agent_id)))

    async def get_agent_memories(
        self, agent_id: str, opts: ListOptions | None = None
    ) -> MemoryList:
        return parse(MemoryList, await self.request(ep.get_agent_memories(agent_id, opts)))

    async def get_agent_context(
        self, agent_id: str, opts: ContextOptions | None = None
    ) -> AgentContext:
        """Markdown context over the agent's memories across sessions (default: last 24h)."""
        return parse(AgentContext, await self.request(ep.get_agent_context(agent_id, opts)))

    async def delete_agent(self, agent_id: str) -> None:
        """Delete an agent and its sessions (its memories stay)."""
        await self.request(ep.delete_agent(agent_id))

    # --- sessions ---------------------------------------------------------------------------

    async def create_session(self, req: CreateSessionRequest) -> Session:
        return parse(Session, await self.request(ep.create_session(req)))

    async def get_session(self, session_id: str) -> Session:
        return parse(Session, await self.request(ep.get_session(session_id)))

    async def get_session_context(
        self, session_id: str, opts: ContextOptions | None = None
    ) -> SessionContext:
        """LLM-ready markdown of the session."""
        call = ep.get_session_context(session_id, opts)
        return parse(SessionContext, await self.request(call))

    async def get_session_memories(
        self, session_id: str, opts: ListOptions | None = None
    ) -> MemoryList:
        call = ep.get_session_memories(session_id, opts)
        return parse(MemoryList, await self.request(call))

    async def list_sessions(
        self,
        agent_id: str | None = None,
        *,
        status: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> SessionList:
        call = ep.list_sessions(agent_id, status=status, limit=limit, offset=offset)
        return parse(SessionList, await self.request(call))

    async def update_session(
        self, session_id: str, *, status: str | None = None, metadata: JsonObject = None
    ) -> Session:
        """Change a session's status and/or replace its metadata."""
        req = UpdateSessionRequest.model_validate({"status": status, "metadata": metadata})
        return parse(Session, await self.request(ep.update_session(session_id, req)))

    async def close_session(self, session_id: str) -> Session:
        return await self.update_session(session_id, status="closed")
