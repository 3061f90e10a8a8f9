"""The memtrace tools, defined once: name, description for the model, argument model,
permission and handler (the seven of memtrace 0.2, then ``memtrace_forget``,
``memtrace_timeline`` and ``memtrace_outcome``).

Handlers are written against :class:`MemoryOps`, the few operations the tools need, which has
two implementations: :class:`~memtrace.service_ops.ServiceOps` (in process, bound to one org's
service) and :class:`~memtrace.client.ops.ClientOps` (over HTTP, the MCP server's remote
mode). Renderers turn the same definitions into MCP tools (``mcp_server``), Anthropic
``tools=``, OpenAI function calling and OpenAI Agents SDK tools. Nothing here depends on MCP,
any LLM SDK or the server side.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memtrace.domain.errors import Conflict, InvalidInput
from memtrace.domain.models import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_SEARCH_LIMIT,
    MAX_LIMIT,
    MAX_TOKENS,
    MEMORY_ID_PATTERN,
    AgentCreate,
    AgentId,
    ContextRequest,
    DedupKey,
    EventType,
    FeedParams,
    Importance,
    JsonObject,
    ListParams,
    MemoryCreate,
    MemoryType,
    MetricName,
    MetricValue,
    OptionalRef,
    Outcome,
    OutcomeCreate,
    RefId,
    SearchRequest,
    SessionCreate,
    TagList,
    TimelineGroupBy,
    TimelineParams,
    invalid_input,
)
from memtrace.domain.timeline import DEFAULT_BUCKET, timeline_text

Json = dict[str, Any]
CONTENT_IN_LINE = 1000


class MemoryOps(Protocol):
    """What the tools need from memtrace. Results are the REST API's JSON shapes."""

    async def remember(self, item: MemoryCreate) -> Json:
        """Store a memory; raise :class:`~memtrace.domain.errors.Conflict` (with ``existing_id``)
        for a duplicate."""
        ...

    async def list_memories(self, params: ListParams) -> Json: ...

    async def search(self, request: SearchRequest) -> Json: ...

    async def create_session(self, body: SessionCreate) -> Json: ...

    async def session_context(self, session_id: str, request: ContextRequest) -> Json: ...

    async def register_agent(self, body: AgentCreate) -> Json: ...

    async def delete_memory(self, memory_id: str) -> None:
        """Erase one memory; raise :class:`~memtrace.domain.errors.NotFound` if there is none."""
        ...

    async def read_feed(self, params: FeedParams) -> Json:
        """``GET /api/v1/feed``: other agents' memories after the reader's cursor."""
        ...

    async def timeline(self, params: TimelineParams) -> Json:
        """Memories per time bucket (the JSON of ``GET /timeline``)."""
        ...

    async def record_outcome(self, decision_id: str, body: OutcomeCreate) -> Json:
        """Store a decision's outcome; raise ``Conflict`` (with ``existing_id``) for a
        duplicate, ``NotFound`` without the decision."""
        ...


# --- argument models (descriptions are read by the model that calls the tool) ----------------


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


_AGENT = "Your agent id (letters, digits, _ or -; starts with a letter), e.g. 'researcher'."
_SESSION = "Session id (sess_…) to scope this to one task; omit for agent-wide."
_SINCE = "Start of the time window: a duration back from now (30m, 2h, 7d) or an ISO 8601 time."
_UNTIL = "End of the time window (exclusive): a duration back from now, an ISO time, or 'now'."
_TAGS = "Short labels; a memory must have all of them to match (letters, digits, _ . -)."


class RememberArgs(_Args):
    agent_id: AgentId = Field(description=_AGENT)
    content: str = Field(min_length=1, description="What happened or what you learned.")
    memory_type: MemoryType = Field(
        default="episodic",
        description="episodic = something that happened; entity = a fact about a person, "
        "company or thing; session = a note about the current task; decision = use "
        "memtrace_decide instead.",
    )
    event_type: EventType = Field(
        default="general",
        description="A short label for the kind of event, e.g. page_crawled, email_sent, "
        "customer; use 'error' for failures (they are listed first in context).",
    )
    session_id: OptionalRef = Field(default=None, description=_SESSION)
    tags: TagList = Field(default=None, description=_TAGS)
    importance: Importance = Field(default=None, description="0.0 (trivial) to 1.0 (critical).")
    metadata: JsonObject = Field(default=None, description="Any extra structured details.")
    dedup_key: DedupKey | None = Field(
        default=None,
        description="Optional: the same key within 24h is treated as the same memory.",
    )
    parent_id: RefId | None = Field(
        default=None, description="Id (mem_…) of a memory this one follows up on."
    )


class RecallArgs(_Args):
    agent_id: AgentId = Field(description=_AGENT)
    since: str = Field(default="24h", description=_SINCE)
    until: str | None = Field(default=None, description=_UNTIL)
    session_id: OptionalRef = Field(default=None, description=_SESSION)
    memory_type: MemoryType | None = Field(default=None, description="Only this memory type.")
    event_type: EventType | None = Field(default=None, description="Only this event type.")
    tags: TagList = Field(default=None, description=_TAGS)
    limit: int = Field(default=50, ge=1, le=MAX_LIMIT, description="Most memories to return.")
    new_only: bool = Field(
        default=False,
        description="Instead: what OTHER agents of your organisation wrote since your last "
        "new_only recall (each memory once, in the order they were written; since/until are "
        "ignored). Use it to catch up with your team.",
    )


class SearchArgs(_Args):
    agent_id: OptionalRef = Field(
        default=None,
        description="Only this agent's memories; omit to search every agent (it never "
        "defaults to your own agent id).",
    )
    session_id: OptionalRef = Field(default=None, description=_SESSION)
    content_contains: str | None = Field(
        default=None, max_length=1024, description="Case-insensitive text the content contains."
    )
    memory_types: list[MemoryType] | None = Field(
        default=None, description="Any of: episodic, decision, entity, session."
    )
    event_types: list[EventType] | None = Field(default=None, description="Any of these.")
    tags: TagList = Field(default=None, description=_TAGS)
    since: str | None = Field(default=None, description=_SINCE)
    until: str | None = Field(default=None, description=_UNTIL)
    min_importance: Importance = Field(default=None, description="Only at least this important.")
    limit: int = Field(
        default=DEFAULT_SEARCH_LIMIT, ge=1, le=MAX_LIMIT, description="Most results to return."
    )


class DecideArgs(_Args):
    agent_id: AgentId = Field(description=_AGENT)
    decision: str = Field(min_length=1, description="What you decided, in one sentence.")
    reasoning: str = Field(min_length=1, description="Why: the facts and trade-offs behind it.")
    session_id: OptionalRef = Field(default=None, description=_SESSION)
    tags: TagList = Field(default=None, description=_TAGS)
    importance: Importance = Field(default=None, description="0.0 (trivial) to 1.0 (critical).")


class SessionCreateArgs(_Args):
    agent_id: AgentId = Field(description=_AGENT)
    metadata: JsonObject = Field(default=None, description="E.g. the goal or ticket of the task.")


class SessionContextArgs(_Args):
    session_id: str = Field(min_length=1, max_length=128, description="The session (sess_…).")
    since: str | None = Field(default=None, description=_SINCE)
    until: str | None = Field(default=None, description=_UNTIL)
    include_types: list[MemoryType] | None = Field(
        default=None, description="Only these memory types (default: all)."
    )
    max_tokens: int = Field(
        default=DEFAULT_MAX_TOKENS, ge=1, le=MAX_TOKENS, description="Budget for the context."
    )


class AgentRegisterArgs(_Args):
    name: AgentId = Field(description="The agent's id and name, e.g. 'support_bot'.")
    description: str | None = Field(default=None, max_length=4096, description="What it does.")
    config: JsonObject = Field(default=None, description="Any configuration worth keeping.")


class ForgetArgs(_Args):
    memory_id: str = Field(
        pattern=MEMORY_ID_PATTERN, description="Id (mem_…) of the memory to erase for good."
    )


class TimelineArgs(_Args):
    since: str = Field(default="24h", description=_SINCE)
    until: str | None = Field(default=None, description=_UNTIL)
    bucket: str = Field(
        default=DEFAULT_BUCKET,
        max_length=16,
        description="Bucket width: 1m, 5m, 15m, 1h, 6h, 1d … (at most 2000 buckets).",
    )
    group_by: TimelineGroupBy | None = Field(
        default=None,
        description="Split each bucket's count by event_type, memory_type, agent_id or tag.",
    )
    agent_id: OptionalRef = Field(
        default=None, description="Only this agent's memories (omit for every agent)."
    )
    session_id: OptionalRef = Field(default=None, description=_SESSION)
    event_types: list[EventType] | None = Field(
        default=None, max_length=64, description="Only these event types, e.g. ['error']."
    )
    memory_types: list[MemoryType] | None = Field(
        default=None, description="Only these memory types."
    )
    tags: TagList = Field(default=None, description=_TAGS)
    content_contains: str | None = Field(
        default=None, max_length=1024, description="Case-insensitive text the content contains."
    )


class OutcomeArgs(_Args):
    decision_id: str = Field(
        pattern=MEMORY_ID_PATTERN, description="Id (mem_…) of the decision this outcome is of."
    )
    outcome: Outcome = Field(description="success, failure or partial.")
    content: str = Field(min_length=1, description="What happened as a result of the decision.")
    metrics: dict[MetricName, MetricValue] | None = Field(
        default=None, max_length=64, description="Optional numbers, e.g. {'latency_ms': 120}."
    )
    agent_id: OptionalRef = Field(
        default=None, description="Who reports it; default: the agent that made the decision."
    )


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool returns: compact text for the model and the structured JSON behind it."""

    text: str
    data: Json


def memory_line(memory: Json) -> str:
    """One line per memory: time, type/event, content, tags, id."""
    content = " ".join(str(memory.get("content", "")).split())
    if len(content) > CONTENT_IN_LINE:
        content = content[:CONTENT_IN_LINE] + "…"
    line = f"- [{str(memory.get('time', ''))[:19]}Z] {memory.get('memory_type')}/"
    line += f"{memory.get('event_type')}: {content}"
    reasoning = (memory.get("metadata") or {}).get("reasoning")
    if memory.get("memory_type") == "decision" and reasoning:
        line += f" — reasoning: {reasoning}"
    if memory.get("tags"):
        line += f" [tags: {', '.join(memory['tags'])}]"
    if memory.get("agent_id"):
        line += f" (agent {memory['agent_id']}, {memory.get('id')})"
    return line


def _listing(title: str, memories: Sequence[Json], more: bool) -> str:
    if not memories:
        return f"{title}: none found."
    lines = [f"{title} ({len(memories)}{', more available' if more else ''}):"]
    lines += [memory_line(m) for m in memories]
    return "\n".join(lines)


# --- handlers -------------------------------------------------------------------------------


W = TypeVar("W", bound=BaseModel)


def _wire(model: type[W], data: Json, arguments: Mapping[str, str] | None = None) -> W:
    """Build the wire model a tool sends; a rule only the wire model checks (the metadata
    size limit, …) is an :class:`InvalidInput` naming the tool's argument, not a crash.

    Args:
        arguments: wire field → the tool argument it comes from, where the names differ.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        names = arguments or {}
        errors = [
            {**error, "loc": (names.get(str(error["loc"][0]), error["loc"][0]), *error["loc"][1:])}
            if error["loc"]
            else error
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise invalid_input(errors) from None


async def _remember(ops: MemoryOps, args: RememberArgs) -> ToolResult:
    item = _wire(MemoryCreate, args.model_dump(exclude_none=True))
    return await _store(ops, item, "Remembered")


async def _decide(ops: MemoryOps, args: DecideArgs) -> ToolResult:
    data = {
        "agent_id": args.agent_id,
        "content": args.decision,
        "memory_type": "decision",
        "event_type": "decision",
        "session_id": args.session_id,
        "tags": args.tags,
        "importance": args.importance,
        "metadata": {"reasoning": args.reasoning},
    }
    item = _wire(MemoryCreate, data, {"content": "decision", "metadata": "reasoning"})
    return await _store(ops, item, "Decision recorded")


async def _store(ops: MemoryOps, item: MemoryCreate, verb: str) -> ToolResult:
    try:
        memory = await ops.remember(item)
    except Conflict as exc:
        if not exc.existing_id:
            raise
        text = f"Already remembered as {exc.existing_id} (same memory within the dedup window)."
        return ToolResult(text, {"id": exc.existing_id, "duplicate": True})
    text = f"{verb} as {memory['id']} ({memory['memory_type']}/{memory['event_type']})."
    return ToolResult(text, {"id": memory["id"], "duplicate": False, "memory": memory})


async def _recall(ops: MemoryOps, args: RecallArgs) -> ToolResult:
    if args.new_only:
        return await _recall_new(ops, args)
    data = {
        "agent_id": args.agent_id,
        "session_id": args.session_id,
        "memory_type": args.memory_type,
        "event_type": args.event_type,
        "tags": ",".join(args.tags) if args.tags else None,
        "since": args.since,
        "until": args.until,
        "limit": args.limit,
    }
    params = _wire(ListParams, data)
    page = await ops.list_memories(params)
    title = f"Memories of {args.agent_id} since {args.since}"
    return ToolResult(_listing(title, page["memories"], page["has_more"]), page)


async def _recall_new(ops: MemoryOps, args: RecallArgs) -> ToolResult:
    """The feed of the calling agent, auto-advancing: an agent has no separate confirm step,
    so what a new_only recall returned is not returned again (docs/feed.md)."""
    data = {
        "reader": args.agent_id,
        "session_id": args.session_id,
        "memory_type": args.memory_type,
        "event_type": args.event_type,
        "tags": ",".join(args.tags) if args.tags else None,
        "limit": args.limit,
        "auto_advance": True,
    }
    page = await ops.read_feed(_wire(FeedParams, data, {"reader": "agent_id"}))
    title = "New memories from other agents since your last look"
    return ToolResult(_listing(title, page["memories"], page["has_more"]), page)


async def _search(ops: MemoryOps, args: SearchArgs) -> ToolResult:
    result = await ops.search(_wire(SearchRequest, args.model_dump(exclude_none=True)))
    text = _listing("Search results", result["results"], False)
    if result.get("partial"):
        text += f"\n(Partial: {result.get('partial_reason') or 'more may exist'}.)"
    return ToolResult(text, result)


async def _session_create(ops: MemoryOps, args: SessionCreateArgs) -> ToolResult:
    body = _wire(SessionCreate, {"agent_id": args.agent_id, "metadata": args.metadata})
    session = await ops.create_session(body)
    text = f"Session {session['id']} created for {args.agent_id}; pass it as session_id."
    return ToolResult(text, session)


async def _session_context(ops: MemoryOps, args: SessionContextArgs) -> ToolResult:
    request = _wire(ContextRequest, args.model_dump(exclude_none=True, exclude={"session_id"}))
    context = await ops.session_context(args.session_id, request)
    return ToolResult(context["context"], context)


async def _agent_register(ops: MemoryOps, args: AgentRegisterArgs) -> ToolResult:
    data = {"name": args.name, "description": args.description, "config": args.config}
    body = _wire(AgentCreate, data)
    try:
        agent = await ops.register_agent(body)
    except Conflict:
        return ToolResult(f"Agent {args.name} is already registered.", {"id": args.name})
    return ToolResult(f"Agent {agent['id']} registered.", agent)


async def _forget(ops: MemoryOps, args: ForgetArgs) -> ToolResult:
    await ops.delete_memory(args.memory_id)
    return ToolResult(f"Forgot {args.memory_id}.", {"id": args.memory_id, "deleted": True})


async def _timeline(ops: MemoryOps, args: TimelineArgs) -> ToolResult:
    data = {
        **args.model_dump(exclude_none=True, exclude={"event_types", "memory_types", "tags"}),
        "event_type": ",".join(args.event_types) if args.event_types else None,
        "memory_type": ",".join(args.memory_types) if args.memory_types else None,
        "tags": ",".join(args.tags) if args.tags else None,
    }
    params = _wire(
        TimelineParams, data, {"event_type": "event_types", "memory_type": "memory_types"}
    )
    timeline = await ops.timeline(params)
    return ToolResult(timeline_text(timeline), timeline)


async def _outcome(ops: MemoryOps, args: OutcomeArgs) -> ToolResult:
    body = _wire(OutcomeCreate, args.model_dump(exclude_none=True, exclude={"decision_id"}))
    try:
        memory = await ops.record_outcome(args.decision_id, body)
    except Conflict as exc:
        if not exc.existing_id:
            raise
        text = f"This outcome of {args.decision_id} is already recorded as {exc.existing_id}."
        return ToolResult(text, {"id": exc.existing_id, "duplicate": True})
    text = f"Outcome of {args.decision_id} recorded as {memory['id']}: {args.outcome}."
    return ToolResult(text, {"id": memory["id"], "duplicate": False, "memory": memory})


# --- the registry ---------------------------------------------------------------------------


Handler = Callable[[MemoryOps, Any], Awaitable[ToolResult]]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool. ``default_agent`` says whether the agent of the call is the writer or the
    subject (remember, decide, recall, session_create): only there does a default agent id
    (``MEMTRACE_AGENT_ID``) fill a missing ``agent_id``. Where ``agent_id`` is a filter
    (search), it never does: a default there would silently hide every other agent."""

    name: str
    description: str
    args: type[BaseModel]
    permission: Literal["read", "write"]
    handler: Handler
    default_agent: bool = False

    def input_schema(self, default_agent_id: str | None = None) -> Json:
        """JSON schema of the arguments; with a default agent, ``agent_id`` is optional in
        the tools it applies to."""
        schema = copy.deepcopy(self.args.model_json_schema())
        schema.pop("title", None)
        props = schema.get("properties", {})
        if default_agent_id and self.default_agent and "agent_id" in props:
            schema["required"] = [n for n in schema.get("required", []) if n != "agent_id"]
            props["agent_id"]["default"] = default_agent_id
        for prop in props.values():
            prop.pop("title", None)
        return schema


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "memtrace_remember",
        "Store a memory: something you did, saw or learned, so you (or other agents of your "
        "team) can recall it later. Use event_type 'error' for failures and memory_type "
        "'entity' for facts about people, companies or things. Returns the memory id.",
        RememberArgs,
        "write",
        _remember,
        default_agent=True,
    ),
    ToolSpec(
        "memtrace_recall",
        "Recall your recent memories, newest first: what you did, decided and saw in a time "
        "window (default: the last 24 hours). Filter by session, type, event or tags. With "
        "new_only: what other agents wrote since your last new_only recall.",
        RecallArgs,
        "read",
        _recall,
        default_agent=True,
    ),
    ToolSpec(
        "memtrace_search",
        "Search memories of every agent in your organisation by text, type, event, tags, "
        "importance and time. Use it to find what teammates already found or decided. It "
        "searches all agents unless you pass agent_id (your own agent id is not filled in).",
        SearchArgs,
        "read",
        _search,
    ),
    ToolSpec(
        "memtrace_decide",
        "Record a decision and the reasoning behind it, so later runs and other agents "
        "understand why and do not contradict it.",
        DecideArgs,
        "write",
        _decide,
        default_agent=True,
    ),
    ToolSpec(
        "memtrace_session_create",
        "Start a session (a bounded task such as one ticket or one crawl) and get its id; "
        "pass that id as session_id when you remember and decide during the task.",
        SessionCreateArgs,
        "write",
        _session_create,
        default_agent=True,
    ),
    ToolSpec(
        "memtrace_session_context",
        "Get a session's memories as a markdown briefing: recent actions, decisions with "
        "reasoning, errors, known entities and notes. Read it before continuing a task.",
        SessionContextArgs,
        "read",
        _session_context,
    ),
    ToolSpec(
        "memtrace_agent_register",
        "Register an agent by name with an optional description. Optional: remembering "
        "as a new agent registers it automatically.",
        AgentRegisterArgs,
        "write",
        _agent_register,
    ),
    ToolSpec(
        "memtrace_forget",
        "Erase one memory of your organisation by id (mem_…), for good: it is gone from "
        "recall, search and context, and the same memory may be stored again. Use it when a "
        "memory is wrong or must not be kept.",
        ForgetArgs,
        "write",
        _forget,
    ),
    ToolSpec(
        "memtrace_timeline",
        "Count memories per time bucket (e.g. per hour) over a window, optionally split by "
        "event_type, memory_type, agent_id or tag, as a table. Use it to spot spikes and "
        "trends, e.g. errors per hour since a deploy: event_types=['error'], bucket='1h'.",
        TimelineArgs,
        "read",
        _timeline,
    ),
    ToolSpec(
        "memtrace_outcome",
        "Record how a decision turned out (success, failure or partial) with what happened "
        "and optional metrics, linked to the decision (its mem_… id from memtrace_decide). "
        "Context then shows the decision with its outcome, and stats the success rate.",
        OutcomeArgs,
        "write",
        _outcome,
    ),
)
TOOLS_BY_NAME = {tool.name: tool for tool in TOOLS}


def parse_arguments(
    tool: ToolSpec, arguments: Json | None, default_agent_id: str | None = None
) -> BaseModel:
    """Validate raw tool arguments (the default agent fills a missing ``agent_id`` of the tools
    it applies to, see :class:`ToolSpec`).

    Raises:
        InvalidInput: the message names the argument.
    """
    raw = dict(arguments or {})
    if default_agent_id and tool.default_agent and not raw.get("agent_id"):
        raw["agent_id"] = default_agent_id
    try:
        return tool.args.model_validate(raw)
    except ValidationError as exc:
        raise invalid_input(exc.errors(include_url=False, include_input=False)) from None


async def call_tool(
    name: str, arguments: Json | None, ops: MemoryOps, *, default_agent_id: str | None = None
) -> ToolResult:
    """Run a tool by name.

    Raises:
        InvalidInput: unknown tool or invalid arguments.
        MemtraceError: whatever the operation raises (not found, forbidden, unavailable…).
    """
    tool = TOOLS_BY_NAME.get(name)
    if tool is None:
        raise InvalidInput(f"unknown tool {name!r}; available: {', '.join(TOOLS_BY_NAME)}")
    args = parse_arguments(tool, arguments, default_agent_id)
    return await tool.handler(ops, args)


def select(names: Sequence[str] | None = None) -> list[ToolSpec]:
    """The tools with the given names (all of them when ``None``), in definition order."""
    if names is None:
        return list(TOOLS)
    unknown = set(names) - set(TOOLS_BY_NAME)
    if unknown:
        raise InvalidInput(f"unknown tools: {', '.join(sorted(unknown))}")
    return [tool for tool in TOOLS if tool.name in names]


def anthropic_tools(
    names: Sequence[str] | None = None, default_agent_id: str | None = None
) -> list[Json]:
    """The tools as Anthropic Messages API ``tools=`` entries."""
    return [
        {
            "name": t.name,
            "description": t.description,
            "input_schema": t.input_schema(default_agent_id),
        }
        for t in select(names)
    ]


def openai_tools(
    names: Sequence[str] | None = None, default_agent_id: str | None = None
) -> list[Json]:
    """The tools as OpenAI chat-completions function-calling ``tools=`` entries."""
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": t.input_schema(default_agent_id),
            },
        }
        for t in select(names)
    ]
