"""Every REST call of the SDK as a :class:`Call` (no I/O): one place for paths and bodies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memtrace.client._base import Call, dump, path, query
from memtrace.client.models import (
    AddMemoryRequest,
    ContextOptions,
    CreateSessionRequest,
    ListOptions,
    RegisterAgentRequest,
    SearchQuery,
    UpdateSessionRequest,
)
from memtrace.domain.errors import AgentExists, DuplicateMemory
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


def next_page(opts: ListOptions | SearchQuery | None, model: type[Any], got: int) -> Any:
    """The options of the following page (offset moved past the ``got`` items just read)."""
    current = opts if opts is not None else model()
    return current.model_copy(update={"offset": current.offset + got})
