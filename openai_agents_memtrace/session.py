"""``MemtraceSession`` of ``openai-agents-memtrace`` 0.2: the conversation in memory, user (and,
if asked, assistant) messages persisted as memtrace memories."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from agents.memory.session import SessionABC

from memtrace.client import AddMemoryRequest, AsyncMemtrace, ContextOptions, CreateSessionRequest

CONTEXT_PREFIX = "[System: Prior memory context for this agent]\n\n"


class MemtraceSession(SessionABC):
    """An Agents SDK session whose items live in this process; the messages it is told to
    persist become memories (``memory_type="session"``, ``event_type`` ``user_message`` or
    ``assistant_message``) of a server-side memtrace session.

    Start one with ``await MemtraceSession.create(client, agent_id=...)``.
    """

    def __init__(
        self,
        client: AsyncMemtrace,
        agent_id: str,
        memtrace_session_id: str,
        *,
        persist_user_messages: bool = True,
        persist_assistant_messages: bool = False,
    ) -> None:
        self._client = client
        self._agent_id = agent_id
        self._session_id = memtrace_session_id
        self._items: list[Any] = []
        self._lock = asyncio.Lock()
        self._persist = {"user": persist_user_messages, "assistant": persist_assistant_messages}

    @classmethod
    async def create(
        cls,
        client: AsyncMemtrace,
        agent_id: str,
        *,
        metadata: dict[str, Any] | None = None,
        inject_context: bool = True,
        context_since: str | None = None,
        context_max_tokens: int | None = None,
        persist_user_messages: bool = True,
        persist_assistant_messages: bool = False,
    ) -> MemtraceSession:
        """A new server-side session; with ``inject_context``, its prior context (if any) is
        the first conversation item."""
        created = await client.create_session(
            CreateSessionRequest(agent_id=agent_id, metadata=metadata)
        )
        session = cls(
            client,
            agent_id,
            created.id,
            persist_user_messages=persist_user_messages,
            persist_assistant_messages=persist_assistant_messages,
        )
        if inject_context:
            # None means the server's default (the client model drops None fields)
            options = ContextOptions.model_validate(
                {"since": context_since, "max_tokens": context_max_tokens}
            )
            context = await client.get_session_context(created.id, options)
            if context.context and context.memory_count > 0:
                session._items.append({"role": "user", "content": CONTEXT_PREFIX + context.context})
        return session

    @property
    def session_id(self) -> str:  # type: ignore[override]
        """The memtrace session id."""
        return self._session_id

    async def get_items(self, limit: int | None = None) -> list[Any]:
        async with self._lock:
            return list(self._items[-limit:] if limit is not None else self._items)

    async def add_items(self, items: list[Any]) -> None:
        if not items:
            return
        async with self._lock:
            self._items.extend(items)
        for item in items:
            await self._maybe_persist(item)

    async def pop_item(self) -> Any | None:
        async with self._lock:
            return self._items.pop() if self._items else None

    async def clear_session(self) -> None:
        async with self._lock:
            self._items.clear()

    async def close(self) -> None:
        """Close the server-side session."""
        await self._client.close_session(self._session_id)

    async def _maybe_persist(self, item: Any) -> None:
        """A message to persist becomes a memory; failures never break the agent's loop."""
        role = item.get("role") if isinstance(item, dict) else None
        content = item.get("content") if isinstance(item, dict) else None
        if not isinstance(content, str) or not content or not self._persist.get(str(role)):
            return
        with contextlib.suppress(Exception):
            await self._client.add_memory(
                AddMemoryRequest(
                    agent_id=self._agent_id,
                    session_id=self._session_id,
                    memory_type="session",
                    event_type=f"{role}_message",
                    content=content,
                )
            )
