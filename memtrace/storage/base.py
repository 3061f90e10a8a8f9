"""The storage protocol: one query object, one store interface, two backends (embedded, Arc).

A store holds exactly one org's memories. Every method is scoped to that org by construction
(the store's file or database belongs to the org) and every query also filters on ``org_id``.

Positions: memories are ordered by ``(time, id)`` on every backend. A position is such a pair;
``MemoryQuery.after`` continues a walk strictly after one (in the query's order), which is what
cursor paging (docs/api.md, "Cursor paging") is built on: a position never moves when other
memories are written or deleted, so a walk neither skips nor repeats a memory.

Change positions: besides ``(time, id)``, every store numbers the memories it commits in
*commit order*, per org (``changes``): an integer that only grows, assigned so that a memory
committed after a reader read up to position P always gets a position above P, even when its
``time`` is older or a concurrent write took its position first (docs/feed.md). Feed cursors
and the live stream are built on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from memtrace.domain.memory import MemoryRecord, WriteOutcome

CHANGE_SCAN = 2000  # committed memories one ``changes`` call looks at, matching or not


@dataclass(frozen=True, slots=True)
class MemoryQuery:
    """Everything a read can filter on. Bounds are microseconds, half-open: since <= t < until.

    Every filter that is set must match (AND); ``tags`` must all be present on the memory;
    ``content_contains`` is a case-insensitive substring (Python ``str.lower`` on both sides).
    ``content_chars`` cuts each returned content to its first characters (a preview: context
    rendering reads no more of a long memory than it can show).
    """

    org_id: str
    agent_id: str | None = None
    session_id: str | None = None
    memory_types: tuple[str, ...] = ()
    event_types: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    content_contains: str | None = None
    min_importance: float | None = None
    since: int | None = None
    until: int | None = None
    limit: int = 100
    offset: int = 0
    order: Literal["asc", "desc"] = "desc"
    # Only memories strictly after this (time, id) position in ``order`` (a cursor).
    after: tuple[int, str] | None = None
    content_chars: int | None = None  # return only this many leading characters of content


@dataclass(frozen=True, slots=True)
class QueryPage:
    """Rows of a read that had a work budget; ``complete`` is False when the budget ran out
    first: ``records`` are then the first matches in order, and more may exist."""

    records: list[MemoryRecord]
    complete: bool = True


@dataclass(frozen=True, slots=True)
class ChangePage:
    """Memories after a change position, in commit order: ``entries`` are (position, record)
    pairs that match the query; ``position`` is how far the store looked (the last entry's
    position, or further when the memories after it did not match), so the next read continues
    from there; ``complete`` is True when nothing committed after ``position`` was left."""

    entries: list[tuple[int, MemoryRecord]]
    position: int
    complete: bool


@dataclass(slots=True)
class NewMemory:
    """A validated memory about to be stored; the store assigns ``id`` unless one is given.

    Not frozen: one is built per memory of every write, and a frozen dataclass costs ~4x as
    much to construct (``object.__setattr__`` per field). Treat it as read-only.
    """

    time: int
    agent_id: str
    session_id: str | None
    memory_type: str
    event_type: str
    content: str
    metadata: dict[str, Any] | None
    tags: tuple[str, ...]
    importance: float | None
    dedup_key: str
    parent_id: str | None
    id: str | None = None  # set only for memories that have one (copies, imports)


@dataclass(frozen=True, slots=True)
class AgentMemoryStats:
    """Memory-side part of ``GET /agents/{id}/stats``."""

    memory_count: int
    memories_since: int
    errors_since: int
    memory_types: dict[str, int] = field(default_factory=dict)


TimelineGroup = Literal["event_type", "memory_type", "agent_id", "tag"]
TIMELINE_GROUPS: tuple[TimelineGroup, ...] = ("event_type", "memory_type", "agent_id", "tag")


@dataclass(frozen=True, slots=True)
class TimelineBucket:
    """Memories of one time bucket: ``count`` of them, and per value of the grouping (when
    grouped) how many carry it. By tag, a memory with two tags counts in both groups and one
    without tags in none, so the groups need not add up to ``count``."""

    start: int  # microseconds, a multiple of the bucket width
    count: int
    groups: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoreHealth:
    backend: str
    healthy: bool
    outbox_pending: int = 0
    detail: str | None = None
    outbox_unverified: int = 0  # Arc answered 204, not yet seen in a query
    outbox_parked: int = 0  # Arc refuses these rows; kept and readable


class MemoryStore(Protocol):
    """What the service needs from a backend. Implementations must be safe for concurrent use."""

    backend: str
    org_id: str

    async def write(
        self, items: Sequence[NewMemory], dedup_window_us: int | None
    ) -> list[WriteOutcome]:
        """Durably store ``items`` (all-or-nothing), skipping exact duplicates.

        An item is a duplicate when a memory with the same ``dedup_key`` exists (already stored,
        or earlier in the same call) whose time is less than ``dedup_window_us`` away from the
        item's time. ``None`` disables dedup. Returns one outcome per item, in order. Returns
        only after the rows are durable (committed locally).
        """
        ...

    async def query(self, q: MemoryQuery) -> list[MemoryRecord]:
        """Memories matching ``q``, ordered by (time, id) in ``q.order``, paged."""
        ...

    async def query_page(self, q: MemoryQuery, budget_s: float) -> QueryPage:
        """Like :meth:`query`, but the backend spends at most ``budget_s`` seconds of its own
        CPU on it; past that it answers with the matches found so far (``complete=False``)."""
        ...

    async def count(self, q: MemoryQuery) -> int:
        """How many memories match ``q`` (limit and offset ignored)."""
        ...

    async def get(self, memory_id: str) -> MemoryRecord | None:
        """One memory by id, or ``None``."""
        ...

    async def delete(self, ids: Sequence[str]) -> list[str]:
        """Erase the memories with these ids; returns the ids that existed (and are now gone).

        Erasure, not hiding: once this returns, the memories are gone from every read, from
        stats and from the dedup window, and their content is being removed from the backend's
        files (docs/api.md, "Erasure"). Unknown ids are skipped. At most 1000 ids per call.
        """
        ...

    async def insert_records(self, items: Sequence[NewMemory]) -> list[str]:
        """Store memories exactly as given, each with its ``id`` (and time and dedup key),
        skipping ids that already exist (import is idempotent by id). No dedup window check.
        Returns the ids inserted, once durable."""
        ...

    async def expire(self, cutoff: int) -> int:
        """Remove memories older than ``cutoff`` where the backend has a bulk way to (Arc's
        retention policies drop whole files); returns how many rows went. It may remove fewer
        than all of them (the caller deletes the rest by id) and may return 0."""
        ...

    async def changes(self, after: int, q: MemoryQuery, limit: int) -> ChangePage:
        """Up to ``limit`` memories committed after change position ``after`` (0: from the
        start) that match ``q``'s filters (its limit, offset, order and ``after`` ignored),
        in commit order. Looks at no more than ``CHANGE_SCAN`` committed memories per call,
        so a selective filter cannot make one call read the whole org."""
        ...

    async def change_head(self) -> int:
        """The position of the last memory committed (0 when none): a reader starting here
        sees only what is committed from now on."""
        ...

    async def timeline(
        self, q: MemoryQuery, bucket_us: int, group_by: TimelineGroup | None
    ) -> list[TimelineBucket]:
        """Counts of the memories matching ``q`` per time bucket, computed by the backend
        (never by reading the rows out): buckets start at multiples of ``bucket_us`` since the
        epoch; ``q.since`` and ``q.until`` are set; only buckets holding a memory are returned,
        ascending (the service fills the empty ones). Limit, offset and order are ignored.
        """
        ...

    async def agent_stats(self, agent_id: str, since: int) -> AgentMemoryStats:
        """Totals for one agent; ``memories_since``/``errors_since`` count times >= ``since``."""
        ...

    async def health(self) -> StoreHealth:
        """Backend name, reachability and backlog; never raises."""
        ...

    async def close(self) -> None:
        """Finish pending writes and release files and connections."""
        ...


@runtime_checkable
class ChangeFollower(Protocol):
    """Live delivery of an org's new memories (the tenancy layer's stores: one shared reader
    per org and process, woken by local writes, :mod:`memtrace.storage.changes`)."""

    def follow(
        self, after: int, q: MemoryQuery, wait_s: float
    ) -> AsyncIterator[list[tuple[int, MemoryRecord]]]:
        """Memories committed after ``after`` matching ``q``, in commit order, as they come;
        an empty list after ``wait_s`` seconds without any."""
        ...
