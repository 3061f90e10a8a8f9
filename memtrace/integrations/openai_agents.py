"""memtrace for the OpenAI Agents SDK (``pip install 'memtrace-server[openai-agents]'``).

- :func:`create_memtrace_tools`: the remember/recall/search/decide tools of
  :mod:`memtrace.tools` as Agents SDK ``FunctionTool`` s (same names, descriptions and schemas).
- :class:`MemtraceSession`: a persistent Agents SDK ``Session`` whose items are memories, so a
  restarted process continues the conversation; ``pop_item`` and ``clear_session`` append
  markers instead of deleting history.
- :func:`memtrace_instructions`: instructions that carry the agent's prior context (across
  sessions) into every run.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agents import FunctionTool
from agents.items import TResponseInputItem
from agents.tool_context import ToolContext

from memtrace.client import AsyncMemtrace
from memtrace.client.models import (
    AddMemoryRequest,
    ContextOptions,
    CreateSessionRequest,
    ListOptions,
    Memory,
)
from memtrace.client.ops import ClientOps
from memtrace.domain.errors import MemtraceError, NotFound
from memtrace.domain.models import MAX_LIMIT
from memtrace.tools import TOOLS_BY_NAME, Json, ToolSpec, call_tool

AGENT_TOOLS = ("memtrace_remember", "memtrace_recall", "memtrace_search", "memtrace_decide")
# Tools whose agent (and session, when given) is fixed by the integration, not by the model.
_SCOPED = {"memtrace_remember", "memtrace_recall", "memtrace_decide"}

ITEM_EVENT = "conversation_item"
POP_EVENT = "conversation_pop"
CLEAR_EVENT = "conversation_clear"
_SESSION_EVENTS = (ITEM_EVENT, POP_EVENT, CLEAR_EVENT)
# Prior context for instructions leaves out memory_type "session": that is where conversation
# items and per-task notes live, and the session itself already replays them.
PRIOR_CONTEXT_TYPES = ["episodic", "decision", "entity"]


# --- tools ----------------------------------------------------------------------------------


def _schema(spec: ToolSpec, fixed: Json) -> Json:
    """The tool's JSON schema from :mod:`memtrace.tools`, minus the arguments fixed for it."""
    schema = spec.input_schema()
    for name in fixed:
        schema.get("properties", {}).pop(name, None)
    schema["required"] = [n for n in schema.get("required", []) if n not in fixed]
    return schema


def _error_text(exc: Exception) -> str:
    text = f"memtrace error: {exc.message if isinstance(exc, MemtraceError) else exc}"
    if isinstance(exc, MemtraceError) and exc.hint:
        text += f" (hint: {exc.hint})"
    return text


def _function_tool(spec: ToolSpec, ops: ClientOps, fixed: Json) -> FunctionTool:
    async def invoke(ctx: ToolContext[Any], raw: str) -> str:
        try:
            arguments = json.loads(raw or "{}")
            if not isinstance(arguments, dict):
                raise ValueError("tool arguments must be a JSON object")
            result = await call_tool(spec.name, {**arguments, **fixed}, ops)
        except (MemtraceError, ValueError) as exc:
            # The model reads the failure and can correct itself; the run goes on.
            return _error_text(exc)
        return result.text

    return FunctionTool(
        name=spec.name,
        description=spec.description,
        params_json_schema=_schema(spec, fixed),
        on_invoke_tool=invoke,
        strict_json_schema=False,
    )


def create_memtrace_tools(
    client: AsyncMemtrace,
    agent_id: str,
    session_id: str | None = None,
    *,
    names: Sequence[str] = AGENT_TOOLS,
) -> list[FunctionTool]:
    """The memtrace tools for an Agents SDK ``Agent(tools=...)``.

    Args:
        client: The async client the tools call.
        agent_id: The agent the memories belong to (the model cannot change it).
        session_id: When given, remember/decide write into this session and recall reads from
            it; search stays organisation-wide (finding teammates' work is its purpose).
        names: Which of the seven tools (default: remember, recall, search, decide).

    Returns:
        One ``FunctionTool`` per name; a failing call returns an error text to the model.
    """
    ops = ClientOps(client)
    tools = []
    for name in names:
        spec = TOOLS_BY_NAME[name]
        fixed: Json = {}
        if name in _SCOPED:
            fixed["agent_id"] = agent_id
            if session_id:
                fixed["session_id"] = session_id
        tools.append(_function_tool(spec, ops, fixed))
    return tools


# --- instructions ---------------------------------------------------------------------------

Instructions = Callable[[Any, Any], Awaitable[str]]


def memtrace_instructions(
    client: AsyncMemtrace,
    agent_id: str,
    base: str,
    *,
    since: str = "7d",
    max_tokens: int = 1500,
) -> Instructions:
    """Dynamic ``Agent(instructions=...)``: ``base`` plus the agent's prior context.

    The context is fetched on every run (``POST /agents/{id}/context``); if memtrace is
    unreachable the agent still runs, with ``base`` alone.
    """
    options = ContextOptions(since=since, max_tokens=max_tokens, include_types=PRIOR_CONTEXT_TYPES)

    async def instructions(run_context: Any, agent: Any) -> str:
        try:
            context = await client.get_agent_context(agent_id, options)
        except MemtraceError:
            return base
        if context.memory_count == 0:
            return base
        return f"{base}\n\n# What you remember from earlier work\n\n{context.context}"

    return instructions


# --- session --------------------------------------------------------------------------------


class MemtraceSession:
    """An Agents SDK ``Session`` stored in memtrace, so conversations survive restarts.

    Each item is one memory (``memory_type="session"``, ``event_type="conversation_item"``,
    the item's JSON as content) in the session. ``pop_item`` and ``clear_session`` append
    marker memories; :meth:`get_items` replays items and markers in order. Nothing is deleted.

    Use :meth:`create` to start a new session or attach to an existing one.
    """

    def __init__(
        self,
        client: AsyncMemtrace,
        agent_id: str,
        session_id: str,
        *,
        session_settings: Any = None,
    ) -> None:
        self.client = client
        self.agent_id = agent_id
        self.session_id = session_id
        # An agents ``SessionSettings``: its ``limit`` applies when get_items gets none.
        self.session_settings = session_settings

    @classmethod
    async def create(
        cls,
        client: AsyncMemtrace,
        agent_id: str,
        session_id: str | None = None,
        *,
        session_settings: Any = None,
    ) -> MemtraceSession:
        """A new server session, or (given an id) the existing conversation with that id.

        An id the server does not know as a session (e.g. your own ``"user_42"``) is fine:
        memories may name any session id.
        """
        if session_id is None:
            created = await client.create_session(
                CreateSessionRequest(agent_id=agent_id, metadata={"source": "openai-agents"})
            )
            return cls(client, agent_id, created.id, session_settings=session_settings)
        with contextlib.suppress(NotFound):  # fails early on a bad key or an unreachable server
            await client.get_session(session_id)
        return cls(client, agent_id, session_id, session_settings=session_settings)

    def instructions(self, base: str, *, since: str = "7d", max_tokens: int = 1500) -> Instructions:
        """Instructions with the agent's prior context (see :func:`memtrace_instructions`)."""
        return memtrace_instructions(
            self.client, self.agent_id, base, since=since, max_tokens=max_tokens
        )

    def tools(self, names: Sequence[str] = AGENT_TOOLS) -> list[FunctionTool]:
        """The memtrace tools scoped to this agent and session."""
        return create_memtrace_tools(self.client, self.agent_id, self.session_id, names=names)

    def _memory(
        self, event_type: str, content: str, metadata: Json | None = None
    ) -> AddMemoryRequest:
        # A unique dedup key: saying "yes" twice is two items, not a duplicate.
        return AddMemoryRequest(
            agent_id=self.agent_id,
            session_id=self.session_id,
            memory_type="session",
            event_type=event_type,
            content=content,
            metadata=metadata,
            dedup_key=f"oai-session:{uuid.uuid4().hex}",
        )

    async def _history(self) -> list[Memory]:
        options = ListOptions(
            session_id=self.session_id, memory_type="session", order="asc", limit=MAX_LIMIT
        )
        return [
            m
            async for m in self.client.iter_memories(options)
            if m.event_type in _SESSION_EVENTS and m.agent_id == self.agent_id
        ]

    async def _visible(self) -> list[tuple[str, TResponseInputItem]]:
        """Replay items and markers: the items still in the conversation, oldest first."""
        visible: list[tuple[str, TResponseInputItem]] = []
        for memory in await self._history():
            if memory.event_type == ITEM_EVENT:
                visible.append((memory.id, json.loads(memory.content)))
            elif memory.event_type == CLEAR_EVENT:
                visible = []
            elif memory.event_type == POP_EVENT:
                target = (memory.metadata or {}).get("target")
                visible = [(mid, item) for mid, item in visible if mid != target]
        return visible

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The conversation, oldest first; with ``limit``, its latest ``limit`` items."""
        if limit is None and self.session_settings is not None:
            limit = getattr(self.session_settings, "limit", None)
        items = [item for _, item in await self._visible()]
        if limit is None:
            return items
        return items[-limit:] if limit > 0 else []

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append items (one all-or-nothing batch)."""
        if not items:
            return
        await self.client.add_memories_batch(
            [self._memory(ITEM_EVENT, json.dumps(item, separators=(",", ":"))) for item in items]
        )

    async def pop_item(self) -> TResponseInputItem | None:
        """Take the latest item out of the conversation (a marker; history is kept)."""
        visible = await self._visible()
        if not visible:
            return None
        memory_id, item = visible[-1]
        await self.client.add_memory(
            self._memory(
                POP_EVENT, f"removed {memory_id} from the conversation", {"target": memory_id}
            )
        )
        return item

    async def clear_session(self) -> None:
        """Start the conversation afresh (a marker; earlier items stay in memtrace)."""
        await self.client.add_memory(self._memory(CLEAR_EVENT, "conversation cleared"))
