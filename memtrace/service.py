"""MemoryService: all of memtrace's business logic for one org, transport-free and async.

Adapters (REST routes, MCP tools, the CLI) validate input into the models of
:mod:`memtrace.domain.models`, make one call here, and render the result. The service never
imports a concrete storage backend: it receives the org's
:class:`~memtrace.storage.base.MemoryStore`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from memtrace.config import Settings
from memtrace.domain.context import (
    CHARS_PER_TOKEN,
    PREVIEW_CHARS,
    previews_to_complete,
    render_context,
)
from memtrace.domain.cursor import cursor_position, encode_cursor, fingerprint, next_cursor
from memtrace.domain.dedup import derive_dedup_key
from memtrace.domain.errors import DuplicateMemory, InvalidInput, NotFound
from memtrace.domain.ids import new_agent_id
from memtrace.domain.memory import MemoryRecord
from memtrace.domain.models import (
    AGENT_ID_PATTERN,
    EVENT_TYPE_PATTERN,
    MEMORY_TYPES,
    OUTCOME_EVENT,
    OUTCOMES,
    TAG_PATTERN,
    Agent,
    AgentContext,
    AgentCreate,
    AgentStats,
    ContextRequest,
    DuplicateEntry,
    ExportParams,
    FeedParams,
    MemoryCreate,
    MemoryFilters,
    MemoryMatch,
    OutcomeCreate,
    SearchRequest,
    Session,
    SessionContext,
    SessionCreate,
    SessionListParams,
    SessionUpdate,
    StreamParams,
    TimelineParams,
    parse_model,
)
from memtrace.domain.results import RecordPage, SearchHits, StoredBatch
from memtrace.domain.timeline import check_bucket_count, parse_bucket, timeline_wire
from memtrace.domain.timestamps import from_us, now_us, to_us
from memtrace.domain.windows import parse_window
from memtrace.metadata.base import MetadataStore
from memtrace.metadata.records import AgentRow, SessionRow
from memtrace.storage.base import MemoryQuery, MemoryStore, NewMemory, QueryPage
from memtrace.telemetry.metrics import Metrics

MAX_FUTURE_US = 5 * 60 * 1_000_000
DAY_US = 86_400_000_000
_TAG = re.compile(TAG_PATTERN)
_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)
_AGENT_ID = re.compile(AGENT_ID_PATTERN)
_COMPLETE_BATCH = 8  # full memories read at once while completing cut previews
T = TypeVar("T")
Offload = Callable[[Callable[[], Any]], Awaitable[Any]]
"""Runs CPU-heavy work (context rendering) off the event loop, counted as the org's work."""


def prepare_memory(
    item: MemoryCreate, now: int, field: str, max_content_bytes: int, memory_id: str | None = None
) -> NewMemory:
    """A validated memory as the store takes it: the configured content limit, ``time`` at
    most 5 minutes ahead and not before 1970 (else the receive time ``now``), the dedup key
    derived when none is given. ``field`` prefixes error messages (``memories[3].``).

    Raises:
        InvalidInput: a limit is exceeded.
    """
    limit = max_content_bytes
    if len(item.content) > limit // 4 and len(item.content.encode()) > limit:
        raise InvalidInput(f"{field}content: must be at most {limit} bytes of UTF-8")
    if item.time is not None:
        at = to_us(item.time)
        if at > now + MAX_FUTURE_US:
            raise InvalidInput(f"{field}time: must not be more than 5 minutes in the future")
        if at < 0:
            raise InvalidInput(f"{field}time: must not be before 1970-01-01")
    else:
        at = now
    agent, event, session, content = (
        item.agent_id,
        item.event_type,
        item.session_id,
        item.content,
    )
    return NewMemory(  # positional: this runs once per memory of every batch
        at,
        agent,
        session,
        item.memory_type,
        event,
        content,
        item.metadata or None,
        tuple(item.tags) if item.tags else (),
        item.importance,
        item.dedup_key or derive_dedup_key(agent, event, session, content),
        item.parent_id,
        memory_id,
    )


def match_query(
    org_id: str, match: MemoryMatch, since: int | None, until: int | None, **more: Any
) -> MemoryQuery:
    """The store query of a search's or a forget's filters (``more``: limit, order, …)."""
    return MemoryQuery(
        org_id=org_id,
        agent_id=match.agent_id,
        session_id=match.session_id,
        memory_types=tuple(dict.fromkeys(match.memory_types or ())),
        event_types=tuple(dict.fromkeys(match.event_types or ())),
        tags=tuple(match.tags or ()),
        content_contains=match.content_contains,
        since=since,
        until=until,
        **more,
    )


def _paged(
    q: MemoryQuery, cursor: str | None, offset: int, scope: tuple[object, ...]
) -> tuple[MemoryQuery, str]:
    """``q`` continued after ``cursor`` (checked against the query's fingerprint), and that
    fingerprint for the next cursor."""
    query = fingerprint(scope)
    position = cursor_position(cursor, offset, query)
    return (q if position is None else replace(q, after=position)), query


def _continued(page: QueryPage, limit: int, key: str) -> tuple[bool, str | None]:
    """(has_more, next cursor) of a page read with one row of look-ahead; a page cut short
    by the work budget has more after its last match (its cursor continues from there)."""
    has_more, cursor = next_cursor(page.records, limit, key)
    if page.complete or has_more:
        return has_more, cursor
    rows = page.records
    return True, (encode_cursor((rows[-1].time, rows[-1].id), key) if rows else None)


async def _to_thread(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


def _agent_model(row: AgentRow) -> Agent:
    return Agent(
        id=row.id,
        org_id=row.org_id,
        name=row.display_name,
        description=row.description,
        config=row.config,
        created_at=from_us(row.created_at),
        last_active_at=from_us(row.last_active_at) if row.last_active_at else None,
    )


def _session_model(row: SessionRow) -> Session:
    return Session(
        id=row.id,
        org_id=row.org_id,
        agent_id=row.agent_id,
        status=row.status,
        metadata=row.metadata,
        created_at=from_us(row.created_at),
        updated_at=from_us(row.updated_at),
        closed_at=from_us(row.closed_at) if row.closed_at else None,
    )


def parse_tags(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    tags = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    for tag in tags:
        if not _TAG.match(tag):
            raise InvalidInput(f"tags: {tag!r} is not a valid tag (letters, digits, _ . -)")
    return tags


def filters_query(
    org_id: str, params: ExportParams | FeedParams | StreamParams, **rest: Any
) -> MemoryQuery:
    """The store query of the list filters an export, a feed read or a stream takes (one
    agent, session, memory type and event type, all of ``tags``, a content needle); ``rest``
    adds the window, limit, order or importance of the caller."""
    return MemoryQuery(
        org_id=org_id,
        agent_id=params.agent_id,
        session_id=params.session_id,
        memory_types=(params.memory_type,) if params.memory_type else (),
        event_types=(params.event_type,) if params.event_type else (),
        tags=parse_tags(params.tags),
        content_contains=params.content_contains,
        **rest,
    )


def parse_types(text: str | None, field: str) -> tuple[str, ...]:
    """A comma list of memory types (``field`` = ``memory_type``) or event types."""
    if not text:
        return ()
    values = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    for value in values:
        valid = value in MEMORY_TYPES if field == "memory_type" else _EVENT_TYPE.match(value)
        if not valid:
            raise InvalidInput(f"{field}: {value[:64]!r} is not a valid {field.replace('_', ' ')}")
    return values


def latest_outcomes(records: Sequence[MemoryRecord]) -> dict[str, MemoryRecord]:
    """Decision id -> its latest outcome memory, of ``records`` (any order)."""
    latest: dict[str, MemoryRecord] = {}
    for record in records:
        label = (record.metadata or {}).get("outcome")
        if record.event_type != OUTCOME_EVENT or record.parent_id is None or label not in OUTCOMES:
            continue
        seen = latest.get(record.parent_id)
        if seen is None or (record.time, record.id) > (seen.time, seen.id):
            latest[record.parent_id] = record
    return latest


class MemoryService:
    """Operations of one org. Cheap to construct; holds no per-request state."""

    def __init__(
        self,
        org_id: str,
        store: MemoryStore,
        catalog: MetadataStore,
        settings: Settings,
        metrics: Metrics,
        offload: Offload = _to_thread,
    ) -> None:
        self.org_id = org_id
        self.store = store
        self.catalog = catalog
        self.settings = settings
        self.metrics = metrics
        self._offload = offload
        self._budget_s = settings.limits.scan_budget_ms / 1000

    def _count_writes(self, stored: int, duplicates: int) -> None:
        if stored:
            self.metrics.memories_written.labels(self.store.backend).inc(stored)
        if duplicates:
            self.metrics.dedup_hits.inc(duplicates)

    # -- writes -------------------------------------------------------------------------------

    def _prepare(self, item: MemoryCreate, now: int, field: str) -> NewMemory:
        return prepare_memory(item, now, field, self.settings.limits.max_content_bytes)

    async def remember(self, item: MemoryCreate) -> MemoryRecord:
        """Store one memory durably.

        Raises:
            InvalidInput: a limit from the configuration is exceeded.
            DuplicateMemory: the same dedup key exists in the window (``existing_id`` set).
        """
        now = now_us()
        new = self._prepare(item, now, "")
        await self.catalog.note_activity(self.org_id, (new.agent_id,), now)
        (outcome,) = await self.store.write([new], self.settings.dedup_window_us)
        if outcome.record is None:
            self._count_writes(0, 1)
            raise DuplicateMemory(existing_id=outcome.existing_id)
        self._count_writes(1, 0)
        return outcome.record

    async def remember_batch(self, items: Sequence[MemoryCreate]) -> StoredBatch:
        """Validate the whole batch first (nothing is written if one item is bad), then store
        it; duplicates (also within the batch) are skipped and reported by index."""
        max_batch = self.settings.limits.max_batch
        if len(items) > max_batch:
            raise InvalidInput(f"memories: at most {max_batch} items per batch")
        now = now_us()
        prepared = [self._prepare(item, now, f"memories[{i}].") for i, item in enumerate(items)]
        await self.catalog.note_activity(self.org_id, {m.agent_id for m in prepared}, now)
        outcomes = await self.store.write(prepared, self.settings.dedup_window_us)
        stored = [o.record for o in outcomes if o.record is not None]
        duplicates = [
            DuplicateEntry(index=i, existing_id=o.existing_id)
            for i, o in enumerate(outcomes)
            if o.record is None and o.existing_id is not None
        ]
        self._count_writes(len(stored), len(duplicates))
        return StoredBatch(stored, duplicates)

    # -- reads --------------------------------------------------------------------------------

    def _window(
        self,
        since: str | None,
        until: str | None,
        *,
        offset: int = 0,
        default_since: str | None = None,
    ) -> tuple[int | None, int | None]:
        """Parse a query window and apply the abuse limits on its span and on ``offset``."""
        limits = self.settings.limits
        if offset > limits.max_offset:
            raise InvalidInput(f"offset: must be at most {limits.max_offset} (limits.max_offset)")
        now = now_us()
        lo, hi = parse_window(since, until, now, default_since=default_since)
        end = hi if hi is not None else now
        if lo is not None and end - lo > limits.max_window_days * DAY_US:
            raise InvalidInput(
                f"since: the window may span at most {limits.max_window_days:g} days "
                "(limits.max_window_days)"
            )
        return lo, hi

    async def _complete(
        self, previews: list[MemoryRecord], size: int, cut: list[int], max_tokens: int
    ) -> tuple[list[MemoryRecord], bool]:
        """Read in full the previews that were cut, newest first, until the whole context is
        known to fit (the full records, True) or not to (the previews, False): at most the
        budget plus one memory is read, however long the memories are."""
        budget = max_tokens * CHARS_PER_TOKEN
        memories = list(previews)
        for start in range(0, len(cut), _COMPLETE_BATCH):
            batch = cut[start : start + _COMPLETE_BATCH]
            records = await asyncio.gather(*(self.store.get(previews[i].id) for i in batch))
            for i, record in zip(batch, records, strict=True):
                if record is None:  # gone meanwhile: render what was read
                    return previews, False
                size += len(record.content) - len(previews[i].content)  # a lower bound
                if size > budget:
                    return previews, False
                memories[i] = record
        return memories, True

    async def _page(self, query: MemoryQuery) -> QueryPage:
        """A list or search read within the work budget (``limits.scan_budget_ms``)."""
        page = await self.store.query_page(query, self._budget_s)
        if not page.complete:
            self.metrics.partial_reads.inc()
        return page

    async def get_memory(self, memory_id: str) -> MemoryRecord:
        record = await self.store.get(memory_id)
        if record is None or record.org_id != self.org_id:
            raise NotFound(f"memory {memory_id!r} not found")
        return record

    async def _memories_of_agent(self, agent_ref: str) -> str:
        """The ``agent_id`` the memories of ``/agents/{ref}/…`` carry: the path as given (as
        the Go memtrace read it; the agent need not be registered), or, for a name that is not
        a valid id, its agent's id."""
        if _AGENT_ID.match(agent_ref):
            return agent_ref
        row = await self.catalog.get_agent(self.org_id, agent_ref)
        if row is None:
            raise NotFound(f"agent {agent_ref!r} not found")
        return row.id

    @staticmethod
    def _session_ref(session_id: str) -> str:
        """A session's memories and context answer from the memories carrying its id, created
        with ``POST /sessions`` or not (as the Go memtrace did); only an impossible id is
        ``404``."""
        if not _AGENT_ID.match(session_id):
            raise NotFound(f"session {session_id!r} not found")
        return session_id

    async def list_memories(
        self,
        params: MemoryFilters,
        *,
        agent_id: str | None = None,
        session_id: str | None = None,
    ) -> RecordPage:
        """The list endpoint; ``agent_id``/``session_id`` fix a filter (nested routes), and
        ``params`` may filter by the other one (:class:`~memtrace.domain.models.ListParams` and
        its per-route variants). The agent's list covers the last 24 hours unless ``since`` is
        given (Go's default)."""
        default_since = None
        if agent_id is not None:
            agent_id = await self._memories_of_agent(agent_id)
            default_since = "24h"
        if session_id is not None:
            session_id = self._session_ref(session_id)
        since, until = self._window(
            params.since, params.until, offset=params.offset, default_since=default_since
        )
        query = MemoryQuery(
            org_id=self.org_id,
            agent_id=agent_id or getattr(params, "agent_id", None),
            session_id=session_id or getattr(params, "session_id", None),
            memory_types=(params.memory_type,) if params.memory_type else (),
            event_types=(params.event_type,) if params.event_type else (),
            tags=parse_tags(params.tags),
            since=since,
            until=until,
            limit=params.limit + 1,  # one more row tells whether there is a next page
            offset=params.offset,
            order=params.order,
        )
        scope = (
            "list",
            query.agent_id,
            query.session_id,
            params.memory_type,
            params.event_type,
            query.tags,
            params.since,
            params.until,
            params.order,
        )
        query, key = _paged(query, params.cursor, params.offset, scope)
        page = await self._page(query)
        has_more, cursor = _continued(page, params.limit, key)
        return RecordPage(page.records[: params.limit], has_more, cursor, not page.complete)

    async def search(self, request: SearchRequest) -> SearchHits:
        started = time.perf_counter()
        since, until = self._window(request.since, request.until, offset=request.offset)
        query = match_query(
            self.org_id,
            request,
            since,
            until,
            # 0 is "no minimum" (models and UIs send it), not "only memories with an importance"
            min_importance=request.min_importance or None,
            limit=request.limit + 1,  # look-ahead: has_more and the next cursor
            offset=request.offset,
            order=request.order,
        )
        scope = (
            "search",
            query.agent_id,
            query.session_id,
            query.memory_types,
            query.event_types,
            query.tags,
            query.content_contains,
            query.min_importance,
            request.since,
            request.until,
            request.order,
        )
        query, key = _paged(query, request.cursor, request.offset, scope)
        page = await self._page(query)
        has_more, cursor = _continued(page, request.limit, key)
        elapsed = round((time.perf_counter() - started) * 1000)
        return SearchHits(
            page.records[: request.limit], elapsed, has_more, cursor, not page.complete
        )

    async def timeline(self, params: TimelineParams) -> dict[str, Any]:
        """Memories per time bucket of the window (default: the last 24 hours, hourly),
        counted by the store (docs/api.md, "Timeline"); the JSON of ``GET /timeline``."""
        width = parse_bucket(params.bucket)
        now = now_us()
        since, until = self._window(params.since, params.until, default_since="24h")
        since = since if since is not None else 0
        until = until if until is not None else now
        check_bucket_count(since, until, width, params.bucket)
        query = MemoryQuery(
            org_id=self.org_id,
            agent_id=params.agent_id,
            session_id=params.session_id,
            memory_types=parse_types(params.memory_type, "memory_type"),
            event_types=parse_types(params.event_type, "event_type"),
            tags=parse_tags(params.tags),
            content_contains=params.content_contains or None,
            min_importance=params.min_importance or None,  # 0 is "no minimum", as in search
            since=since,
            until=until,
        )
        found: dict[int, tuple[int, dict[str, int]]] = {}
        if since < until:
            buckets = await self.store.timeline(query, width, params.group_by)
            found = {b.start: (b.count, b.groups) for b in buckets}
        return timeline_wire(since, until, params.bucket, width, params.group_by, found)

    async def record_outcome(self, decision_id: str, body: OutcomeCreate) -> MemoryRecord:
        """Store how a decision turned out: an ordinary episodic memory (event type
        ``outcome``, ``parent_id`` = the decision, the decision's session; metadata
        ``{"outcome", "metrics"}``), so every client reads it.

        Raises:
            NotFound: no memory ``decision_id`` in this org.
            InvalidInput: the memory is not a decision.
            DuplicateMemory: the same outcome of this decision within the dedup window.
        """
        decision = await self.get_memory(decision_id)
        if decision.memory_type != "decision":
            raise InvalidInput(
                f"decision_id: memory {decision_id!r} is a {decision.memory_type} memory, "
                "not a decision"
            )
        agent = body.agent_id or decision.agent_id
        item = {
            "agent_id": agent,
            "content": body.content,
            "session_id": decision.session_id,
            "memory_type": "episodic",
            "event_type": OUTCOME_EVENT,
            "metadata": {"outcome": body.outcome, "metrics": dict(body.metrics or {})},
            "parent_id": decision.id,
            # one outcome per decision, label and text: a resent request is a duplicate
            "dedup_key": derive_dedup_key(
                agent, OUTCOME_EVENT, decision.id, f"{body.outcome}|{body.content}"
            ),
        }
        return await self.remember(parse_model(MemoryCreate, item))

    # -- agents -------------------------------------------------------------------------------

    async def register_agent(self, body: AgentCreate) -> Agent:
        """A name that is a valid id is the agent's id; any other name (the Go memtrace took
        free text) gets a generated ``agent_<24 hex>`` id and stays the display name."""
        if _AGENT_ID.match(body.name):
            agent_id, name = body.name, None
        else:
            agent_id, name = new_agent_id(), body.name
        row = await self.catalog.register_agent(
            self.org_id, agent_id, body.description, body.config, now_us(), name
        )
        return _agent_model(row)

    async def get_agent(self, agent_id: str) -> Agent:
        row = await self.catalog.get_agent(self.org_id, agent_id)
        if row is None:
            raise NotFound(f"agent {agent_id!r} not found")
        return _agent_model(row)

    async def list_agents(self, limit: int, offset: int) -> tuple[list[Agent], bool]:
        """One page of the org's agents, and whether another page follows."""
        rows = await self.catalog.list_agents(self.org_id, limit + 1, offset)
        return [_agent_model(row) for row in rows[:limit]], len(rows) > limit

    async def delete_agent(self, agent_id: str) -> None:
        await self.catalog.delete_agent(self.org_id, agent_id)

    async def agent_stats(self, agent_id: str) -> AgentStats:
        """Counts over the memories carrying the agent's id (zeros for an agent without any,
        registered or not, as with the Go memtrace)."""
        memories_of = await self._memories_of_agent(agent_id)
        agent = await self.catalog.get_agent(self.org_id, agent_id)
        last_active = agent.last_active_at if agent else None
        memory = await self.store.agent_stats(memories_of, now_us() - DAY_US)
        sessions, active = await self.catalog.session_counts(
            self.org_id, agent.id if agent else memories_of
        )
        outcomes = await self._outcomes(MemoryQuery(org_id=self.org_id, agent_id=memories_of))
        judged = latest_outcomes(outcomes)
        successes = sum(1 for r in judged.values() if (r.metadata or {})["outcome"] == "success")
        return AgentStats(
            agent_id=agent_id,
            memory_count=memory.memory_count,
            memories_24h=memory.memories_since,
            errors_24h=memory.errors_since,
            session_count=sessions,
            active_sessions=active,
            last_active_at=from_us(last_active) if last_active else None,
            memory_types=memory.memory_types,
            decisions_with_outcome=len(judged),
            decision_successes=successes,
            decision_success_rate=round(successes / len(judged), 4) if judged else None,
        )

    async def _outcomes(self, base: MemoryQuery, since: int | None = None) -> list[MemoryRecord]:
        """The newest outcome memories of ``base``'s agent or session (at most
        ``limits.max_context_memories``), content cut to a preview."""
        query = replace(
            base,
            event_types=(OUTCOME_EVENT,),
            memory_types=(),
            since=since,
            until=None,
            limit=self.settings.limits.max_context_memories,
            order="desc",
            content_chars=PREVIEW_CHARS,
        )
        return (await self._page(query)).records

    async def agent_context(self, agent_id: str, request: ContextRequest) -> AgentContext:
        """Context over the agent's memories across sessions (default window: last 24h)."""
        base = MemoryQuery(org_id=self.org_id, agent_id=await self._memories_of_agent(agent_id))
        rendered = await self._context(f"## Agent Context ({agent_id})", base, request, "24h")
        return AgentContext(agent_id=agent_id, **rendered)

    # -- sessions -----------------------------------------------------------------------------

    async def create_session(self, body: SessionCreate) -> Session:
        row = await self.catalog.create_session(self.org_id, body.agent_id, body.metadata, now_us())
        return _session_model(row)

    async def get_session(self, session_id: str) -> Session:
        row = await self.catalog.get_session(self.org_id, session_id)
        if row is None:
            raise NotFound(f"session {session_id!r} not found")
        return _session_model(row)

    async def list_sessions(self, params: SessionListParams) -> tuple[list[Session], bool]:
        """One page of the org's sessions (newest first), and whether another page follows."""
        rows = await self.catalog.list_sessions(
            self.org_id, params.agent_id, params.status, params.limit + 1, params.offset
        )
        return [_session_model(row) for row in rows[: params.limit]], len(rows) > params.limit

    async def update_session(self, session_id: str, body: SessionUpdate) -> Session:
        row = await self.catalog.update_session(
            self.org_id, session_id, body.status, body.metadata, now_us()
        )
        return _session_model(row)

    async def session_context(self, session_id: str, request: ContextRequest) -> SessionContext:
        base = MemoryQuery(org_id=self.org_id, session_id=self._session_ref(session_id))
        rendered = await self._context(f"## Session Context ({session_id})", base, request, None)
        return SessionContext(session_id=session_id, **rendered)

    async def _decision_outcomes(
        self, base: MemoryQuery, read: list[MemoryRecord]
    ) -> list[MemoryRecord]:
        """Outcomes of the decisions in ``read`` that ``read`` lacks (recorded after the
        window, or of a type the context left out), so each decision shows its outcome."""
        decisions = [r for r in read if r.memory_type == "decision"]
        if not decisions:
            return []
        ids = {r.id for r in decisions}
        have = {r.id for r in read}
        found = await self._outcomes(base, since=min(r.time for r in decisions))
        return [r for r in found if r.parent_id in ids and r.id not in have]

    async def _context(
        self,
        header: str,
        base: MemoryQuery,
        request: ContextRequest,
        default_since: str | None,
    ) -> dict[str, Any]:
        since, until = self._window(request.since, request.until, default_since=default_since)
        cap = self.settings.limits.max_context_memories
        query = replace(
            base,
            memory_types=tuple(dict.fromkeys(request.include_types or ())),
            since=since,
            until=until,
            limit=cap,
            order="desc",
            content_chars=PREVIEW_CHARS,
        )
        # Previews first: they render any context that does not fit whole (then items are cut
        # to ITEM_CUT characters anyway). Reading, like formatting, stops at the budget.
        page = await self._page(query)  # newest first: a spent budget omits the oldest
        previews = page.records
        unseen = 0
        if len(previews) == cap or not page.complete:
            unseen = max(await self.store.count(query) - len(previews), 0)
        previews += await self._decision_outcomes(base, previews)
        budget = request.max_tokens
        memories, may_fit = previews, False
        if unseen == 0:
            todo = await self._offload(lambda: previews_to_complete(header, previews, budget))
            if todo is not None:
                size, cut = todo
                memories, may_fit = await self._complete(previews, size, cut, budget)
        rendered = await self._offload(
            lambda: render_context(header, memories, budget, unseen=unseen, may_fit=may_fit)
        )
        return {
            "context": rendered.text,
            "memory_count": rendered.memory_count,
            "token_estimate": rendered.token_estimate,
            "truncated": rendered.truncated,
            "omitted_count": rendered.omitted_count,
        }
