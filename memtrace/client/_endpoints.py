"""Every REST call of the SDK as a :class:`Call` (no I/O): one place for paths and bodies."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from memtrace.client._base import Call, dump, parse, path, query
from memtrace.client.models import (
    AddMemoryRequest,
    ContextOptions,
    CreateSessionRequest,
    ExportParams,
    FeedCursor,
    FeedPage,
    FeedParams,
    ForgetRequest,
    ListOptions,
    Memory,
    MemoryList,
    OutcomeRequest,
    RegisterAgentRequest,
    SearchQuery,
    SearchResult,
    StreamParams,
    TimelineOptions,
    UpdateSessionRequest,
)
from memtrace.domain.errors import AgentExists, DuplicateMemory, MemtraceError
from memtrace.domain.models import JsonObject


def memory_request(
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
) -> AddMemoryRequest:
    """The request of ``remember`` (validated here, like the server would)."""
    return AddMemoryRequest.model_validate(
        {
            "agent_id": agent_id,
            "content": content,
            "memory_type": memory_type,
            "event_type": event_type,
            "session_id": session_id,
            "tags": list(tags) if tags is not None else None,
            "importance": importance,
            "metadata": metadata,
            "dedup_key": dedup_key,
            "parent_id": parent_id,
        }
    )


def decision_request(
    agent_id: str,
    decision: str,
    reasoning: str,
    *,
    session_id: str | None = None,
    tags: Sequence[str] | None = None,
    importance: float | None = None,
    metadata: JsonObject = None,
    event_type: str = "decision",
) -> AddMemoryRequest:
    """The request of ``decide``: the reasoning is kept in ``metadata.reasoning``."""
    return memory_request(
        agent_id,
        decision,
        memory_type="decision",
        event_type=event_type,
        session_id=session_id,
        tags=tags,
        importance=importance,
        metadata={**(metadata or {}), "reasoning": reasoning},
    )


def recall_options(
    agent_id: str,
    since: str = "24h",
    *,
    until: str | None = None,
    session_id: str | None = None,
    memory_type: str | None = None,
    event_type: str | None = None,
    tags: Sequence[str] | None = None,
    limit: int = 100,
) -> ListOptions:
    return ListOptions.model_validate(
        {
            "agent_id": agent_id,
            "since": since,
            "until": until,
            "session_id": session_id,
            "memory_type": memory_type,
            "event_type": event_type,
            "tags": ",".join(tags) if tags else None,
            "limit": limit,
            "order": "desc",
        }
    )


# --- memories -------------------------------------------------------------------------------


def add_memory(req: AddMemoryRequest) -> Call:
    return Call(
        "POST", path("memories"), body=dump(req), idempotent=False, conflict=DuplicateMemory
    )


def add_memories(memories: Sequence[AddMemoryRequest]) -> Call:
    body = {"memories": [dump(m) for m in memories]}
    return Call("POST", path("memories"), body=body, idempotent=False, conflict=DuplicateMemory)


def get_memory(memory_id: str) -> Call:
    return Call("GET", path("memories", memory_id))


def list_memories(opts: ListOptions | None) -> Call:
    return Call("GET", path("memories"), params=query(opts))


def search_memories(q: SearchQuery | None) -> Call:
    return Call("POST", path("search"), body=dump(q))


# --- agents ---------------------------------------------------------------------------------


def register_agent(req: RegisterAgentRequest) -> Call:
    return Call("POST", path("agents"), body=dump(req), idempotent=False, conflict=AgentExists)


def list_agents(limit: int | None = None, offset: int | None = None) -> Call:
    params = {k: v for k, v in (("limit", limit), ("offset", offset)) if v is not None}
    return Call("GET", path("agents"), params=params)


def get_agent(agent_id: str) -> Call:
    return Call("GET", path("agents", agent_id))


def get_agent_stats(agent_id: str) -> Call:
    return Call("GET", path("agents", agent_id, "stats"))


def get_agent_memories(agent_id: str, opts: ListOptions | None) -> Call:
    # The server takes the agent from the path; a conflicting value in opts is dropped.
    return Call("GET", path("agents", agent_id, "memories"), params=query(opts, "agent_id"))


def get_agent_context(agent_id: str, opts: ContextOptions | None) -> Call:
    return Call("POST", path("agents", agent_id, "context"), body=dump(opts))


def delete_agent(agent_id: str) -> Call:
    return Call("DELETE", path("agents", agent_id), expect_body=False)


# --- sessions -------------------------------------------------------------------------------


def create_session(req: CreateSessionRequest) -> Call:
    return Call("POST", path("sessions"), body=dump(req), idempotent=False)


def get_session(session_id: str) -> Call:
    return Call("GET", path("sessions", session_id))


def get_session_context(session_id: str, opts: ContextOptions | None) -> Call:
    return Call("POST", path("sessions", session_id, "context"), body=dump(opts))


def get_session_memories(session_id: str, opts: ListOptions | None) -> Call:
    params = query(opts, "session_id")
    return Call("GET", path("sessions", session_id, "memories"), params=params)


def list_sessions(
    agent_id: str | None = None,
    *,
    status: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
) -> Call:
    pairs: tuple[tuple[str, Any], ...] = (
        ("agent_id", agent_id),
        ("status", status),
        ("limit", limit),
        ("offset", offset),
    )
    return Call("GET", path("sessions"), params={k: v for k, v in pairs if v is not None})


def update_session(session_id: str, req: UpdateSessionRequest) -> Call:
    return Call("PUT", path("sessions", session_id), body=dump(req))


# --- timelines and decision outcomes -------------------------------------------------------


def timeline(opts: TimelineOptions | None) -> Call:
    return Call("GET", path("timeline"), params=query(opts))


def outcome_request(
    outcome: str,
    content: str,
    *,
    metrics: dict[str, float] | None = None,
    agent_id: str | None = None,
) -> OutcomeRequest:
    """The request of ``record_outcome`` (validated here, like the server would)."""
    data = {"outcome": outcome, "content": content, "metrics": metrics, "agent_id": agent_id}
    return OutcomeRequest.model_validate(data)


def record_outcome(decision_id: str, req: OutcomeRequest) -> Call:
    # A resent outcome is a duplicate (409 with existing_id), never a second outcome.
    return Call(
        "POST",
        path("memories", decision_id, "outcome"),
        body=dump(req),
        idempotent=False,
        conflict=DuplicateMemory,
    )


# --- data lifecycle -------------------------------------------------------------------------


def delete_memory(memory_id: str) -> Call:
    return Call("DELETE", path("memories", memory_id), expect_body=False)


def forget(req: ForgetRequest) -> Call:
    # Not resent after a lost response: a second run would report 0 deleted.
    return Call("POST", path("memories", "forget"), body=dump(req), idempotent=False)


def export(params: ExportParams | None) -> Call:
    return Call("GET", path("export"), params=query(params))


def export_line(line: str | bytes) -> Memory | None:
    """One line of an export stream as a Memory (``None`` for a blank line).

    Raises:
        MemtraceError: the server ended the stream with an error line.
    """
    if not line.strip():
        return None
    data = orjson.loads(line)
    if isinstance(data, dict) and "error" in data and "id" not in data:
        raise MemtraceError(f"the export stopped early: {data['error']}")
    return parse(Memory, data)


# --- pages ----------------------------------------------------------------------------------


def next_list_page(opts: ListOptions | None, page: MemoryList) -> ListOptions | None:
    """The options of the page after ``page``, or ``None`` at the end (by cursor; by offset
    against a server that sends no cursor)."""
    if not page.has_more or not page.memories:
        return None
    return _advance(opts or ListOptions(), page.next_cursor, len(page.memories))


def next_search_page(q: SearchQuery, page: SearchResult) -> SearchQuery | None:
    """Like :func:`next_list_page`; a server without ``has_more`` ends with a short page."""
    if "has_more" in page.model_fields_set:
        if not page.has_more or not page.results:
            return None
    elif len(page.results) < q.limit:
        return None
    return _advance(q, page.next_cursor, len(page.results))


M = TypeVar("M", ListOptions, SearchQuery)


def _advance(current: M, cursor: str | None, got: int) -> M:
    if cursor:
        return current.model_copy(update={"cursor": cursor, "offset": 0})
    return current.model_copy(update={"offset": current.offset + got})


# --- the feed and the live stream (docs/feed.md) ---------------------------------------------


def feed_params(reader: str, **options: Any) -> FeedParams:
    """The query of a feed read (validated here, like the server would)."""
    return FeedParams.model_validate(
        {"reader": reader, **{k: v for k, v in options.items() if v is not None}}
    )


def read_feed(params: FeedParams) -> Call:
    # An auto-advancing read is not resent after a lost response: the page would be skipped.
    return Call("GET", path("feed"), params=query(params), idempotent=not params.auto_advance)


def confirm_feed(reader: str, cursor: str) -> Call:
    # Safe to resend: a confirm never moves a cursor back.
    return Call("POST", path("feed", "confirm"), body={"reader": reader, "cursor": cursor})


def feed_cursor(reader: str) -> Call:
    return Call("GET", path("feed", "cursor"), params={"reader": reader})


def feed_page(data: Any) -> FeedPage:
    return parse(FeedPage, data)


def cursor_state(data: Any) -> FeedCursor:
    return parse(FeedCursor, data)


def stream_params(**filters: Any) -> StreamParams:
    return StreamParams.model_validate({k: v for k, v in filters.items() if v is not None})


def stream_request(params: StreamParams, last_event_id: str | None) -> Call:
    """The request of ``GET /api/v1/stream``: resumes after ``last_event_id`` when set."""
    headers = {"accept": "text/event-stream"}
    if last_event_id:
        headers["last-event-id"] = last_event_id
    return Call("GET", path("stream"), params=query(params), headers=headers)


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One memory of the live stream; ``id`` is its position (resume after it)."""

    id: str
    memory: Memory


class SseParser:
    """Server-Sent Events from lines (without their line ends): ``memory`` events out, comments
    (heartbeats) and other events skipped; ``last_id`` is the id of the last event (of any
    type: the server's ``open`` event carries the stream's start), ``retry_s`` follows the
    server's ``retry:``."""

    def __init__(self) -> None:
        self.retry_s = 2.0
        self.last_id: str | None = None
        self._id: str | None = None
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> Iterator[StreamEvent]:
        if line == "":
            yield from self._dispatch()
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            self._id = value
        elif name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "retry" and value.isdigit():
            self.retry_s = int(value) / 1000

    def _dispatch(self) -> Iterator[StreamEvent]:
        event, data, event_id = self._event, "\n".join(self._data), self._id
        self._event, self._data, self._id = "message", [], None
        if event_id:
            self.last_id = event_id
        if event == "memory" and data and event_id:
            yield StreamEvent(event_id, parse(Memory, orjson.loads(data)))
