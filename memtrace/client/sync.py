"""Synchronous memtrace client: :class:`Memtrace` (the same calls as :class:`AsyncMemtrace`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from tenacity import Retrying

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
from memtrace.client.streaming import DEFAULT_READ_TIMEOUT, MemoryStream
from memtrace.domain.models import JsonObject


class Memtrace:
    """Synchronous client for the memtrace REST API (drop-in for ``memtrace-sdk`` 0.2.0).

    Usage::

        with Memtrace("http://localhost:9100", "mtk_...") as client:
            client.remember("agent_1", "User prefers dark mode")

    Args:
        base_url: Server URL; default ``MEMTRACE_URL`` or ``http://localhost:9100``.
        api_key: API key; default ``MEMTRACE_API_KEY``.
        timeout: Seconds per request.
        max_retries: Retries after the first attempt on connection errors, 429 and 503.
        backoff: Base of the jittered exponential pause between retries, in seconds.
        transport: An ``httpx.BaseTransport`` (e.g. ``httpx.MockTransport(handler)``).

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
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url, key = resolve_config(base_url, api_key)
        self.base_url = url
        self.max_retries = max_retries
        self.backoff = backoff
        self._client = httpx.Client(
            base_url=url, headers=build_headers(key), timeout=timeout, transport=transport
        )

    def close(self) -> None:
        """Close the underlying HTTP client."""
        self._client.close()

    def __enter__(self) -> Memtrace:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def request(self, call: Call) -> Any:
        """Send one call with retries; return its decoded JSON (``None`` for no content).

        Raises:
            MemtraceError: the mapped error response, or ``MemtraceConnectionError``.
        """
        for attempt in Retrying(**retry_options(call, self.max_retries, self.backoff)):
            with attempt:
                return self._send_once(call)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def _send_once(self, call: Call) -> Any:
        try:
            response = self._client.send(build_request(self._client, call))
            response.read()
        except httpx.TransportError as exc:
            raise wrap_transport_error(exc) from exc
        return decode(response, call)

    # --- convenience ------------------------------------------------------------------------

    def remember(
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
        return self.add_memory(
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

    def recall(
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
        return self.list_memories(opts)

    def decide(
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
        return self.add_memory(
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

    def add_memory(self, req: AddMemoryRequest) -> Memory:
        """Store one memory."""
        return parse(Memory, self.request(ep.add_memory(req)))

    def add_memories(self, memories: list[AddMemoryRequest]) -> list[Memory]:
        """Store a batch all-or-nothing; duplicates are skipped (see :meth:`add_memories_batch`)."""
        return (self.add_memories_batch(memories)).memories

    def add_memories_batch(self, memories: Sequence[AddMemoryRequest]) -> MemoryBatchResult:
        """Store a batch; the result also lists the duplicates it skipped."""
        return parse(MemoryBatchResult, self.request(ep.add_memories(memories)))

    def get_memory(self, memory_id: str) -> Memory:
        """One memory by id."""
        return parse(Memory, self.request(ep.get_memory(memory_id)))

    # --- the feed and the live stream (docs/feed.md) -------------------------------------------

    def feed(
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
        return ep.feed_page(self.request(ep.read_feed(params)))

    def confirm_feed(self, reader: str, cursor: str) -> FeedCursor:
        """Move ``reader``'s cursor up to ``cursor`` (a feed page's, or a stream event id)."""
        return ep.cursor_state(self.request(ep.confirm_feed(reader, cursor)))

    def feed_cursor(self, reader: str) -> FeedCursor:
        """``reader``'s confirmed cursor, and the org's head."""
        return ep.cursor_state(self.request(ep.feed_cursor(reader)))

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
    ) -> MemoryStream:
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
        return MemoryStream(
            self._client,
            params,
            last_event_id=last_event_id,
            max_retries=max_retries,
            read_timeout=read_timeout,
        )

    def list_memories(self, opts: ListOptions | None = None) -> MemoryList:
        """One page of memories matching the filters."""
        return parse(MemoryList, self.request(ep.list_memories(opts)))

    def iter_memories(self, opts: ListOptions | None = None) -> Iterator[Memory]:
        """Every memory matching the filters, page after page (``opts.limit`` per page), each
        page continuing at the previous one's cursor: no skips or repeats, however many."""
        next_opts: ListOptions | None = opts
        while True:
            page = self.list_memories(next_opts)
            yield from page.memories
            next_opts = ep.next_list_page(next_opts, page)
            if next_opts is None:
                return

    def search_memories(self, query: SearchQuery | None = None) -> SearchResult:
        """One page of search results."""
        return parse(SearchResult, self.request(ep.search_memories(query)))

    def iter_search(self, query: SearchQuery | None = None) -> Iterator[Memory]:
        """Every search result, page after page (``query.limit`` per page), by cursor."""
        next_query: SearchQuery | None = query or SearchQuery()
        while next_query is not None:
            page = self.search_memories(next_query)
            yield from page.results
            next_query = ep.next_search_page(next_query, page)

    # --- timelines and decision outcomes ---------------------------------------------------

    def timeline(self, opts: TimelineOptions | None = None, **filters: Any) -> Timeline:
        """Memories per time bucket, counted by the server: ``timeline(since="7d",
        bucket="1h", group_by="event_type", event_type="error")`` or ``timeline(TimelineOptions)``.
        """
        req = opts or TimelineOptions.model_validate(filters)
        return parse(Timeline, self.request(ep.timeline(req)))

    def record_outcome(
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
        return parse(Memory, self.request(ep.record_outcome(decision_id, req)))

    # --- data lifecycle ---------------------------------------------------------------------

    def delete_memory(self, memory_id: str) -> None:
        """Erase one memory for good (``NotFound`` if the org has none with this id)."""
        self.request(ep.delete_memory(memory_id))

    def forget(self, request: ForgetRequest | None = None, **filters: Any) -> ForgetResult:
        """Erase every memory matching the filters (an admin key; ``dry_run=True`` only
        counts): ``forget(agent_id="alice", delete_agent=True)`` or ``forget(ForgetRequest)``."""
        req = request or ForgetRequest.model_validate(filters)
        return parse(ForgetResult, self.request(ep.forget(req)))

    def export(self, params: ExportParams | None = None) -> Iterator[Memory]:
        """Stream the org's memories (oldest first) as the server sends them, in constant
        memory; keep the lines with :meth:`export_to`."""
        for line in self._export_lines(params):
            memory = ep.export_line(line)
            if memory is not None:
                yield memory

    def export_to(self, path: str | Path, params: ExportParams | None = None) -> int:
        """Write the export to an NDJSON file as received (what ``memtrace import`` reads);
        returns the number of memories."""
        count = 0
        with Path(path).open("wb") as out:
            for line in self._export_lines(params):
                ep.export_line(line)  # raises on the server's error line
                out.write(line + b"\n")
                count += 1
        return count

    def _export_lines(self, params: ExportParams | None) -> Iterator[bytes]:
        call = ep.export(params)
        try:
            with self._client.stream("GET", call.path, params=call.params) as response:
                if response.status_code >= 400:
                    response.read()
                    decode(response, call)
                for line in response.iter_lines():
                    if line.strip():
                        yield line.encode()
        except httpx.TransportError as exc:
            raise wrap_transport_error(exc) from exc

    # --- agents -----------------------------------------------------------------------------

    def register_agent(self, req: RegisterAgentRequest) -> Agent:
        """Register an agent (409 ``ConflictError`` if the name exists)."""
        return parse(Agent, self.request(ep.register_agent(req)))

    def list_agents(self, *, limit: int | None = None, offset: int | None = None) -> AgentList:
        """The org's agents."""
        return parse(AgentList, self.request(ep.list_agents(limit, offset)))

    def get_agent(self, agent_id: str) -> Agent:
        return parse(Agent, self.request(ep.get_agent(agent_id)))

    def get_agent_stats(self, agent_id: str) -> AgentStats:
        return parse(AgentStats, self.request(ep.get_agent_stats(agent_id)))

    def get_agent_memories(self, agent_id: str, opts: ListOptions | None = None) -> MemoryList:
        return parse(MemoryList, self.request(ep.get_agent_memories(agent_id, opts)))

    def get_agent_context(self, agent_id: str, opts: ContextOptions | None = None) -> AgentContext:
        """Markdown context over the agent's memories across sessions (default: last 24h)."""
        return parse(AgentContext, self.request(ep.get_agent_context(agent_id, opts)))

    def delete_agent(self, agent_id: str) -> None:
        """Delete an agent and its sessions (its memories stay)."""
        self.request(ep.delete_agent(agent_id))

    # --- sessions ---------------------------------------------------------------------------

    def create_session(self, req: CreateSessionRequest) -> Session:
        return parse(Session, self.request(ep.create_session(req)))

    def get_session(self, session_id: str) -> Session:
        return parse(Session, self.request(ep.get_session(session_id)))

    def get_session_context(
        self, session_id: str, opts: ContextOptions | None = None
    ) -> SessionContext:
        """LLM-ready markdown of the session."""
        call = ep.get_session_context(session_id, opts)
        return parse(SessionContext, self.request(call))

    def get_session_memories(self, session_id: str, opts: ListOptions | None = None) -> MemoryList:
        call = ep.get_session_memories(session_id, opts)
        return parse(MemoryList, self.request(call))

    def list_sessions(
        self,
        agent_id: str | None = None,
        *,
        status: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> SessionList:
        call = ep.list_sessions(agent_id, status=status, limit=limit, offset=offset)
        return parse(SessionList, self.request(call))

    def update_session(
        self, session_id: str, *, status: str | None = None, metadata: JsonObject = None
    ) -> Session:
        """Change a session's status and/or replace its metadata."""
        req = UpdateSessionRequest.model_validate({"status": status, "metadata": metadata})
        return parse(Session, self.request(ep.update_session(session_id, req)))

    def close_session(self, session_id: str) -> Session:
        return self.update_session(session_id, status="closed")
