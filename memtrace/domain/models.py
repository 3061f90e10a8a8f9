"""Every wire model (pydantic): requests with their validation rules, and responses.

Shared by REST (bodies and OpenAPI), MCP tools and the client SDK. Rules that depend on
configuration (content size, batch size) are checked in the service, not here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationError,
    model_validator,
)

from memtrace.domain.errors import InvalidInput
from memtrace.domain.gocompat import go_hint
from memtrace.domain.timestamps import format_dt

MemoryType = Literal["episodic", "decision", "entity", "session"]
MEMORY_TYPES: tuple[str, ...] = ("episodic", "decision", "entity", "session")
SessionStatus = Literal["active", "closed"]
Order = Literal["asc", "desc"]

AGENT_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,127}$"
EVENT_TYPE_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
TAG_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
REF_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_TAGS = 32
MAX_METADATA_BYTES = 16 * 1024
MAX_DEDUP_KEY = 128
MAX_DESCRIPTION = 4096
MAX_AGENT_NAME = 256
MAX_CONTAINS = 1024
DEFAULT_LIST_LIMIT = 100
DEFAULT_SEARCH_LIMIT = 50
MAX_LIMIT = 1000
# Hard bound on every offset (SQLite integers are 64-bit; limits.max_offset is usually lower).
MAX_OFFSET = 1_000_000_000
DEFAULT_MAX_TOKENS = 2000
MAX_TOKENS = 100_000
MAX_CURSOR_CHARS = 256


def _blank_to_none(value: Any) -> Any:
    """Treat ``""`` like an absent optional field (clients often send empty strings)."""
    return None if value == "" else value


def _add_option(prop: dict[str, Any], option: dict[str, Any]) -> None:
    """Add ``option`` to a property schema's ``anyOf`` (wrapping a plain schema first)."""
    options = prop.get("anyOf")
    if options is None:
        kept = ("default", "title", "description", "examples")
        inner = {k: prop.pop(k) for k in list(prop) if k not in kept}
        prop["anyOf"] = options = [inner]
    if option not in options:
        options.append(option)


def _blank_to(default: str) -> Any:
    """``""`` means the default (only the empty string: ``0`` or ``false`` stay invalid)."""
    return lambda value: default if value == "" else value


def _document_blank(schema: dict[str, Any]) -> None:
    """Say in the JSON schema what ``_blank_to_none``/``_blank_to`` accept: ``""`` means
    absent (or the default)."""
    _add_option(schema, {"const": ""})


# Attach to every optional field that goes through ``_blank_to_none``.
BlankMeansAbsent = Field(json_schema_extra=_document_blank)


_NUMERIC = re.compile(r"\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*")


def _timestamp_text(value: Any) -> Any:
    """``time`` is an RFC 3339 / ISO 8601 string (docs/api.md); lax pydantic would also take a
    number, or a numeric string, as Unix seconds."""
    if isinstance(value, bool | int | float) or (
        isinstance(value, str) and _NUMERIC.fullmatch(value)
    ):
        raise ValueError("expected an RFC 3339 / ISO 8601 timestamp string")
    return value


def check_json_object_size(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        raw = orjson.dumps(value)
    except TypeError:  # orjson: integers past 64 bits, or nesting deeper than 254
        raise ValueError(
            "must be JSON with integers within 64 bits and nesting at most 254 deep"
        ) from None
    size = len(raw)
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"must be at most {MAX_METADATA_BYTES} bytes when serialized")
    if b"null" in raw and _has_non_finite(value):  # orjson writes NaN and Infinity as null
        raise ValueError("numbers must be finite (NaN and Infinity are not JSON)")
    return value


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(v) for v in value)
    return False


def dedupe_tags(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    unique = list(dict.fromkeys(value))
    if len(unique) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} distinct tags are allowed")
    return unique or None


AgentId = Annotated[str, StringConstraints(pattern=AGENT_ID_PATTERN)]
OptionalRef = Annotated[AgentId | None, BeforeValidator(_blank_to_none), BlankMeansAbsent]
EventType = Annotated[str, StringConstraints(pattern=EVENT_TYPE_PATTERN)]
Tag = Annotated[str, StringConstraints(pattern=TAG_PATTERN)]
DedupKey = Annotated[str, StringConstraints(max_length=MAX_DEDUP_KEY)]
RefId = Annotated[str, StringConstraints(pattern=REF_ID_PATTERN)]
Needle = Annotated[str, StringConstraints(max_length=MAX_CONTAINS)]
TagList = Annotated[list[Tag] | None, AfterValidator(dedupe_tags)]
JsonObject = Annotated[dict[str, Any] | None, AfterValidator(check_json_object_size)]
# JSON bodies: numbers must be numbers (lax mode would take true as 1 and "0.5" as 0.5).
Importance = Annotated[float | None, Field(ge=0.0, le=1.0, strict=True)]
Timestamp = Annotated[datetime, PlainSerializer(format_dt, return_type=str)]


def _document_null_is_default(schema: dict[str, Any]) -> None:
    """Say in the JSON schema what ``_null_is_absent`` accepts: ``null`` means the default."""
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        if name not in required and prop.get("default") is not None:
            _add_option(prop, {"type": "null"})


class _Request(BaseModel):
    # Unknown request fields are ignored (docs/api.md), so newer clients keep working.
    model_config = ConfigDict(extra="ignore", json_schema_extra=_document_null_is_default)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        """``null`` for an optional field with a default means "use the default" (the
        memtrace-sdk 0.2.0 models send e.g. ``ListOptions(limit=None)``)."""
        if not isinstance(data, dict):
            return data
        droppable = _null_droppable(cls)
        # Hot (once per memory of a batch): copy only when a null must be dropped.
        if not any(data.get(name, 0) is None for name in droppable):
            return data
        return {k: v for k, v in data.items() if v is not None or k not in droppable}


class _QueryParams(_Request):
    """Query parameters: an empty value (``?since=``, ``?limit=``) means the parameter is
    absent, as with the Go memtrace (docs/api.md, "Clients written for the Go server")."""

    @model_validator(mode="before")
    @classmethod
    def _empty_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(v == "" for v in data.values()):
            return {k: v for k, v in data.items() if v != ""}
        return data


def _lower(value: Any) -> Any:
    """``ASC``/``Desc`` mean ``asc``/``desc`` (the Go SDKs' users wrote either case)."""
    return value.lower() if isinstance(value, str) else value


OrderParam = Annotated[Order, BeforeValidator(_lower)]


_DROPPABLE: dict[type[BaseModel], frozenset[str]] = {}


def _null_droppable(model: type[BaseModel]) -> frozenset[str]:
    """The fields of ``model`` where ``null`` means "use the (non-null) default"."""
    names = _DROPPABLE.get(model)
    if names is None:
        names = frozenset(
            name
            for name, info in model.model_fields.items()
            if not info.is_required() and info.default is not None
        )
        _DROPPABLE[model] = names
    return names


# --- memories -------------------------------------------------------------------------------


class MemoryCreate(_Request):
    """One memory to store."""

    agent_id: AgentId
    content: str = Field(min_length=1, description="What happened, at most 64 KiB UTF-8.")
    session_id: OptionalRef = None
    memory_type: Annotated[MemoryType, BeforeValidator(_blank_to("episodic")), BlankMeansAbsent] = (
        "episodic"
    )
    event_type: Annotated[EventType, BeforeValidator(_blank_to("general")), BlankMeansAbsent] = (
        "general"
    )
    metadata: JsonObject = None
    tags: TagList = None
    importance: Importance = None
    dedup_key: Annotated[DedupKey | None, BeforeValidator(_blank_to_none), BlankMeansAbsent] = None
    parent_id: Annotated[RefId | None, BeforeValidator(_blank_to_none), BlankMeansAbsent] = None
    time: Annotated[datetime | None, BeforeValidator(_timestamp_text)] = Field(
        default=None, description="Event time for backfill (at most 5 min in the future)."
    )


class MemoryBatchCreate(_Request):
    """Several memories written all-or-nothing (validation is done on the whole batch first)."""

    memories: list[MemoryCreate] = Field(min_length=1)


class Memory(BaseModel):
    """A stored memory as every endpoint returns it (absent optional fields are omitted)."""

    id: str
    time: Timestamp
    org_id: str
    agent_id: str
    session_id: str | None = None
    memory_type: str
    event_type: str
    content: str
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None
    importance: float | None = None
    dedup_key: str
    parent_id: str | None = None


class DuplicateEntry(BaseModel):
    index: int
    existing_id: str


class MemoryBatchResult(BaseModel):
    count: int
    memories: list[Memory]
    duplicates: list[DuplicateEntry]


class MemoryList(BaseModel):
    memories: list[Memory]
    count: int
    has_more: bool
    next_cursor: str | None = Field(
        default=None, description="Present when has_more: pass it as cursor for the next page."
    )
    partial: bool = Field(
        default=False,
        description="Present and true when the read stopped at its work budget "
        "(limits.scan_budget_ms): the memories are the first matches, and has_more is true.",
    )


Cursor = Annotated[
    Annotated[str, StringConstraints(max_length=MAX_CURSOR_CHARS)] | None,
    BeforeValidator(_blank_to_none),
    BlankMeansAbsent,
    Field(description="next_cursor of the previous page: continue exactly after its last memory."),
]
MEMORY_ID_PATTERN = r"^mem_[0-9A-HJKMNP-TV-Z]{26}$"


# Filter fields several query models share, declared once (their OpenAPI schema included).
OptionalMemoryType = Annotated[MemoryType | None, BeforeValidator(_blank_to_none), BlankMeansAbsent]
OptionalEventType = Annotated[EventType | None, BeforeValidator(_blank_to_none), BlankMeansAbsent]
TagsParam = Annotated[
    str | None, Field(max_length=MAX_TAGS * 65, description="Comma list; all must match.")
]
ContentNeedle = Annotated[
    Needle | None,
    BeforeValidator(_blank_to_none),
    BlankMeansAbsent,
    Field(description="Case-insensitive substring of content."),
]


class _MemoryFilterFields(_QueryParams):
    """Type, event, tag and time filters of memory listings and of the export."""

    memory_type: OptionalMemoryType = None
    event_type: OptionalEventType = None
    tags: TagsParam = None
    since: str | None = None
    until: str | None = None


class MemoryFilters(_MemoryFilterFields):
    """The filters every memory listing takes (the agent and session routes fix one more)."""

    limit: int = Field(default=DEFAULT_LIST_LIMIT, ge=1, le=MAX_LIMIT)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)
    order: OrderParam = "desc"
    cursor: Cursor = None


class ListParams(MemoryFilters):
    """Filters of ``GET /memories``."""

    agent_id: OptionalRef = None
    session_id: OptionalRef = None


class AgentMemoryParams(MemoryFilters):
    """Filters of ``GET /agents/{agent_id}/memories`` (the agent comes from the path)."""

    session_id: OptionalRef = None


class SessionMemoryParams(MemoryFilters):
    """Filters of ``GET /sessions/{session_id}/memories`` (the session comes from the path)."""

    agent_id: OptionalRef = None


class ExportParams(_MemoryFilterFields):
    """Filters of ``GET /export``: the list filters and a content search, oldest first."""

    agent_id: OptionalRef = None
    session_id: OptionalRef = None
    content_contains: ContentNeedle = None
    order: OrderParam = "asc"


class MemoryMatch(_Request):
    """The filters of a search, shared by forget: every given filter must match (AND)."""

    agent_id: OptionalRef = None
    session_id: OptionalRef = None
    memory_types: list[MemoryType] | None = Field(default=None, max_length=len(MEMORY_TYPES))
    event_types: list[EventType] | None = Field(default=None, max_length=64)
    tags: TagList = None
    content_contains: ContentNeedle = None
    since: str | None = None
    until: str | None = None


class SearchRequest(MemoryMatch):
    """Body of ``POST /search``: every given filter must match (AND)."""

    min_importance: Annotated[
        Importance, Field(description="Only memories at least this important; 0 means no minimum.")
    ] = None
    limit: int = Field(default=DEFAULT_SEARCH_LIMIT, ge=1, le=MAX_LIMIT, strict=True)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET, strict=True)
    order: OrderParam = "desc"
    cursor: Cursor = None


class SearchResult(BaseModel):
    results: list[Memory]
    count: int
    query_time_ms: int = Field(description="Server-side query time, whole milliseconds.")
    has_more: bool = False
    next_cursor: str | None = Field(
        default=None, description="Present when has_more: pass it as cursor for the next page."
    )

    partial: bool = Field(
        default=False,
        description="Present and true when the search stopped at its work budget "
        "(limits.scan_budget_ms) before looking at every memory: the results are the first "
        "matches in order, and more may exist.",
    )
    partial_reason: str | None = Field(
        default=None, description="With partial: why, and how to narrow the search."
    )


class ForgetRequest(MemoryMatch):
    """Body of ``POST /memories/forget``: which memories to erase (at least one filter)."""

    dry_run: bool = Field(default=False, strict=True, description="Only count the matches.")
    delete_agent: bool = Field(
        default=False,
        strict=True,
        description="Also delete the agent of agent_id and its sessions (GDPR: the subject).",
    )
    delete_session: bool = Field(
        default=False, strict=True, description="Also delete the session of session_id."
    )

    def filters(self) -> dict[str, Any]:
        """The filters that are set (for the audit log and the empty-filter rule)."""
        names = ("dry_run", "delete_agent", "delete_session")
        return {k: v for k, v in self.model_dump(exclude=set(names)).items() if v not in (None, [])}


class ForgetResult(BaseModel):
    """``{"matched": n}`` for a dry run, ``{"deleted": n}`` otherwise."""

    matched: int | None = None
    deleted: int | None = None
    agent_deleted: bool | None = None
    session_deleted: bool | None = None


class MemoryImport(MemoryCreate):
    """One line of an export file: a memory as the API returns it, id and time included."""

    id: Annotated[str, StringConstraints(pattern=MEMORY_ID_PATTERN)]
    time: Annotated[datetime, BeforeValidator(_timestamp_text)]
    dedup_key: Annotated[str, StringConstraints(min_length=1, max_length=MAX_DEDUP_KEY)]


# --- agents ---------------------------------------------------------------------------------


def _printable_name(value: str) -> str:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must not contain control characters")
    return value


# An agent's name: its id when it matches the id pattern, else a display name (the Go memtrace
# accepted any text; the agent then gets a generated ``agent_<hex>`` id, docs/api.md).
AgentName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_AGENT_NAME), AfterValidator(_printable_name)
]


class AgentCreate(_Request):
    name: AgentName = Field(
        description="The agent's id when it matches the id pattern; otherwise a display name "
        "and the id is generated (agent_ + 24 hex)."
    )
    description: Annotated[str | None, Field(max_length=MAX_DESCRIPTION)] = None
    config: JsonObject = None


class Agent(BaseModel):
    id: str
    org_id: str
    name: str
    description: str | None = None
    config: dict[str, Any] | None = None
    created_at: Timestamp
    last_active_at: Timestamp | None = None


class AgentList(BaseModel):
    agents: list[Agent]
    count: int
    has_more: bool = False


class AgentStats(BaseModel):
    agent_id: str
    memory_count: int
    memories_24h: int
    errors_24h: int
    session_count: int
    active_sessions: int
    last_active_at: Timestamp | None = None
    memory_types: dict[str, int]
    decisions_with_outcome: int = Field(
        default=0, description="The agent's decisions with a recorded outcome (the latest counts)."
    )
    decision_successes: int = Field(
        default=0, description="Of those, how many turned out a success."
    )
    decision_success_rate: float | None = Field(
        default=None,
        description="decision_successes / decisions_with_outcome; absent when that is 0.",
    )


class PageParams(_QueryParams):
    """Paging of the agent and session lists. Without ``limit`` a page holds up to
    ``MAX_LIMIT`` (1000): the Go memtrace returned these lists whole, and clients written for it
    send no limit (docs/api.md)."""

    limit: int = Field(default=MAX_LIMIT, ge=1, le=MAX_LIMIT)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)


# --- sessions -------------------------------------------------------------------------------


class SessionCreate(_Request):
    agent_id: AgentId
    metadata: JsonObject = None


class SessionUpdate(_Request):
    status: SessionStatus | None = None
    metadata: JsonObject = None


class Session(BaseModel):
    id: str
    org_id: str
    agent_id: str
    status: str
    metadata: dict[str, Any] | None = None
    created_at: Timestamp
    updated_at: Timestamp
    closed_at: Timestamp | None = None


class SessionList(BaseModel):
    sessions: list[Session]
    count: int
    has_more: bool = False


class SessionListParams(PageParams):
    agent_id: OptionalRef = None
    status: Annotated[SessionStatus | None, BeforeValidator(_blank_to_none), BlankMeansAbsent] = (
        None
    )


class ContextRequest(_Request):
    """Options of session and agent context (docs/context.md)."""

    since: str | None = None
    until: str | None = None
    include_types: list[MemoryType] | None = Field(default=None, max_length=len(MEMORY_TYPES))
    max_tokens: int = Field(default=DEFAULT_MAX_TOKENS, ge=1, le=MAX_TOKENS, strict=True)


class _ContextResult(BaseModel):
    context: str = Field(description="Markdown to paste into a prompt.")
    memory_count: int = Field(description="Memories shown in the context.")
    token_estimate: int = Field(description="ceil(characters / 4).")
    truncated: bool = Field(description="True when items were cut or left out for the budget.")
    omitted_count: int


class SessionContext(_ContextResult):
    session_id: str


class AgentContext(_ContextResult):
    agent_id: str


# --- timelines and decision outcomes ----------------------------------------------------------

TimelineGroupBy = Literal["event_type", "memory_type", "agent_id", "tag"]
Outcome = Literal["success", "failure", "partial"]
OUTCOMES: tuple[str, ...] = ("success", "failure", "partial")
OUTCOME_EVENT = "outcome"  # the event type of a decision's outcome memory
MAX_METRICS = 64
MetricName = Annotated[str, StringConstraints(min_length=1, max_length=64)]


_SAFE = 2**53  # the integers every JSON parser reads exactly
# A number as sent (3 stays 3, 0.5 stays 0.5), never a string or a boolean.
MetricValue = (
    Annotated[int, Field(strict=True, ge=-_SAFE, le=_SAFE)]
    | Annotated[float, Field(strict=True, ge=-_SAFE, le=_SAFE, allow_inf_nan=False)]
)
TypeList = Annotated[
    Annotated[str, StringConstraints(max_length=512)] | None,
    BeforeValidator(_blank_to_none),
    BlankMeansAbsent,
    Field(description="One value or a comma list; any may match."),
]


class TimelineParams(_QueryParams):
    """Query of ``GET /timeline``: the window, the bucket width, a grouping and the filters."""

    since: str | None = Field(default=None, description="Start of the window; default 24h.")
    until: str | None = Field(default=None, description="End (exclusive); default now.")
    bucket: Annotated[
        str, BeforeValidator(_blank_to("1h")), Field(max_length=16, description="e.g. 5m, 1h, 1d")
    ] = "1h"
    group_by: Annotated[
        TimelineGroupBy | None, BeforeValidator(_blank_to_none), BlankMeansAbsent
    ] = None
    agent_id: OptionalRef = None
    session_id: OptionalRef = None
    memory_type: TypeList = None
    event_type: TypeList = None
    tags: TagsParam = None
    min_importance: Annotated[float | None, Field(ge=0.0, le=1.0)] = None
    content_contains: ContentNeedle = None


class TimelineBucketCount(BaseModel):
    start: Timestamp
    count: int
    groups: dict[str, int] = Field(description="Count per group value; {} without group_by.")


class Timeline(BaseModel):
    """Memories per time bucket (docs/api.md, "Timeline")."""

    since: Timestamp
    until: Timestamp
    bucket: str
    bucket_seconds: int
    group_by: TimelineGroupBy | None = None
    total: int
    buckets: list[TimelineBucketCount]


class OutcomeCreate(_Request):
    """How a decision turned out (``POST /memories/{decision_id}/outcome``)."""

    outcome: Outcome
    content: str = Field(min_length=1, description="What happened, at most 64 KiB UTF-8.")
    metrics: Annotated[dict[MetricName, MetricValue] | None, Field(max_length=MAX_METRICS)] = Field(
        default=None, description='Optional numbers, e.g. {"latency_ms": 120}.'
    )
    agent_id: OptionalRef = Field(default=None, description="Default: the decision's agent.")


class ErrorBody(BaseModel):
    """Every error response: ``error`` always, the other fields when they apply."""

    error: str
    hint: str | None = None
    existing_id: str | None = Field(default=None, description="Set on duplicate memory (409).")
    details: Any = None


def error_field(loc: Sequence[int | str]) -> str:
    """``("memories", 3, "content")`` → ``memories[3].content`` (how errors name a field).

    Union-branch labels pydantic puts in locations (``function-after[…]``, ``str``) are left
    out, so the name is the field the client sent.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in part or part in _BRANCH_LABELS:
            continue
        else:
            out += ("." if out else "") + part
    return out or "body"


_BRANCH_LABELS = {
    "str", "int", "float", "bool", "list", "dict", "none",
    "constrained-str", "constrained-int", "constrained-float",
}  # fmt: skip


def invalid_input(errors: Sequence[Mapping[str, Any]]) -> InvalidInput:
    """Pydantic-style errors as ``InvalidInput("<field>: <what is wrong>")`` for the first,
    with every problem listed in ``details`` when there are several."""
    problems = []
    for error in errors:
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append({"field": error_field(error["loc"]), "message": message})
    first = problems[0] if problems else {"field": "body", "message": "invalid"}
    hint = go_hint(first["field"])
    return InvalidInput(
        f"{first['field']}: {first['message']}" + (f" ({hint})" if hint else ""),
        details=problems if len(problems) > 1 else None,
    )


M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], data: Any) -> M:
    """Validate ``data`` into ``model``; raise :class:`InvalidInput` naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_input(exc.errors(include_url=False, include_input=False)) from None


# --- the feed and the live stream (docs/feed.md) ---------------------------------------------

# An opaque change position returned by this server (a feed cursor or a stream event id).
Position = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class _ChangeFilters(_QueryParams):
    """The list filters a feed read and a stream take (no time window: they follow commit
    order, not memory time)."""

    agent_id: OptionalRef = None
    session_id: OptionalRef = None
    memory_type: OptionalMemoryType = None
    event_type: OptionalEventType = None
    tags: TagsParam = None
    min_importance: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Only memories at least this important.",
    )
    content_contains: ContentNeedle = None


class FeedParams(_ChangeFilters):
    """``GET /api/v1/feed``: what other agents wrote since the reader's confirmed cursor."""

    reader: AgentId = Field(
        description="The reading agent: its cursor, and its own memories "
        "are left out (unless include_own)."
    )
    limit: int = Field(default=DEFAULT_LIST_LIMIT, ge=1, le=MAX_LIMIT)
    include_own: bool = False
    auto_advance: bool = Field(
        default=False,
        description="Move the cursor to this page's end now (at-most-once: a reader that "
        "crashes before using the page does not see it again); otherwise POST /feed/confirm.",
    )


class FeedPage(BaseModel):
    reader: str
    memories: list[Memory]
    count: int
    cursor: str = Field(description="The position after this page: confirm it, or read on.")
    has_more: bool
    advanced: bool = Field(description="True when auto_advance moved the cursor to `cursor`.")


class FeedConfirm(_Request):
    """``POST /api/v1/feed/confirm``: the reader has handled everything up to ``cursor``."""

    reader: AgentId
    cursor: Position = Field(description="A feed page's cursor, a stream event id, or a head.")


class FeedCursor(BaseModel):
    reader: str
    cursor: str | None = Field(
        description="The confirmed position; null before the first "
        "confirm (the feed then starts at the org's first memory)."
    )
    head: str = Field(
        description="The position of the org's newest memory: confirm it to "
        "skip everything written so far."
    )


class FeedCursorParams(_QueryParams):
    reader: AgentId


class StreamParams(_ChangeFilters):
    """``GET /api/v1/stream``: the filters, and where to start when no ``Last-Event-ID``."""

    after: Annotated[Position | None, BeforeValidator(_blank_to_none), BlankMeansAbsent] = Field(
        default=None,
        description="Start after this position (an event id) when the request has no "
        "Last-Event-ID header; default: from now.",
    )
