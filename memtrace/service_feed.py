"""The feed ("what's new since I last looked") and the live stream of one org (docs/feed.md).

Both follow the org's *commit order* (the stores' change positions, :mod:`memtrace.storage.base`),
not memory time: a memory backdated or committed late by a slow writer still comes after
everything a reader already saw, so a reader walking positions gets each memory once and
skips none. The feed keeps a cursor per (org, reader agent) in the metadata DB; the stream
resumes from the ``Last-Event-ID`` its client sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from memtrace.domain.errors import Conflict, InvalidInput
from memtrace.domain.memory import MemoryRecord
from memtrace.domain.models import FeedConfirm, FeedParams, StreamParams
from memtrace.domain.positions import decode_position, encode_position
from memtrace.domain.timestamps import now_us
from memtrace.service import MemoryService, filters_query
from memtrace.storage.base import ChangeFollower, MemoryQuery

Entry = tuple[int, MemoryRecord]
_SCANS_PER_READ = 5  # store calls one feed read may make (each looks at CHANGE_SCAN memories)
_ADVANCE_TRIES = 5  # auto-advancing reads of one reader racing each other


@dataclass(frozen=True, slots=True)
class FeedResult:
    """A feed page (see ``to_wire``: :class:`~memtrace.domain.models.FeedPage`)."""

    reader: str
    memories: list[MemoryRecord]
    position: int
    has_more: bool
    advanced: bool

    def to_wire(self) -> dict[str, Any]:
        return {
            "reader": self.reader,
            "memories": [m.to_wire() for m in self.memories],
            "count": len(self.memories),
            "cursor": encode_position(self.position),
            "has_more": self.has_more,
            "advanced": self.advanced,
        }


@dataclass(frozen=True, slots=True)
class CursorState:
    """A reader's cursor (see ``to_wire``: :class:`~memtrace.domain.models.FeedCursor`)."""

    reader: str
    position: int | None
    head: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "reader": self.reader,
            "cursor": encode_position(self.position) if self.position is not None else None,
            "head": encode_position(self.head),
        }


class ChangeStream:
    """One open live stream: where it starts, and its memories as they come."""

    def __init__(self, feed: FeedService, start: int, q: MemoryQuery) -> None:
        self.feed = feed
        self.start = start
        self.q = q

    def batches(self, wait_s: float) -> AsyncIterator[list[Entry]]:
        """Lists of (position, memory) in commit order; an empty list after ``wait_s``
        seconds without a memory (a heartbeat is due)."""
        return self.feed.follow(self.start, self.q, wait_s)


class FeedService:
    """The feed and stream operations of one org's service."""

    def __init__(self, service: MemoryService) -> None:
        self.service = service
        self.org_id = service.org_id
        self.store = service.store
        self.catalog = service.catalog

    def _query(self, params: FeedParams | StreamParams) -> MemoryQuery:
        return filters_query(self.org_id, params, min_importance=params.min_importance)

    async def read(self, params: FeedParams) -> FeedResult:
        """The memories after the reader's confirmed cursor (other agents' only, unless
        ``include_own``); with ``auto_advance`` the cursor moves to the page's end in the same
        call, compare-and-set, so concurrent auto-advancing reads of one reader never return
        the same memory twice."""
        q = self._query(params)
        own = None if params.include_own else params.reader
        for _ in range(_ADVANCE_TRIES):
            confirmed = await self.catalog.get_feed_cursor(self.org_id, params.reader) or 0
            records, position, complete = await self._collect(confirmed, q, params.limit, own)
            if not params.auto_advance or position == confirmed:
                return FeedResult(params.reader, records, position, not complete, False)
            moved = await self.catalog.advance_feed_cursor(
                self.org_id, params.reader, confirmed, position, now_us()
            )
            if moved:
                return FeedResult(params.reader, records, position, not complete, True)
        raise Conflict(
            "reader: other reads of this reader kept advancing its cursor at the same time; "
            "read again"
        )

    async def _collect(
        self, after: int, q: MemoryQuery, limit: int, own: str | None
    ) -> tuple[list[MemoryRecord], int, bool]:
        """Up to ``limit`` memories after ``after`` (the reader's own left out), the position
        reached and whether that is the head."""
        records: list[MemoryRecord] = []
        position, complete = after, False
        for _ in range(_SCANS_PER_READ):
            page = await self.store.changes(position, q, limit - len(records))
            records += [r for _, r in page.entries if r.agent_id != own]
            position, complete = page.position, page.complete
            if complete or len(records) >= limit:
                break
        return records, position, complete

    async def _checked(self, text: str, field: str) -> int:
        """A position from the client, refused when it is ahead of the org's head (it was not
        issued for this org's store: following it would silently skip memories)."""
        position = decode_position(text, field)
        head = await self.store.change_head()
        if position > head:
            raise InvalidInput(
                f"{field}: is ahead of this org's newest memory; it was not issued for this "
                "org (start without it)"
            )
        return position

    async def confirm(self, body: FeedConfirm) -> CursorState:
        """Move the reader's cursor up to ``body.cursor`` (never back)."""
        position = await self._checked(body.cursor, "cursor")
        now_at = await self.catalog.confirm_feed_cursor(
            self.org_id, body.reader, position, now_us()
        )
        return CursorState(body.reader, now_at, await self.store.change_head())

    async def cursor(self, reader: str) -> CursorState:
        position = await self.catalog.get_feed_cursor(self.org_id, reader)
        return CursorState(reader, position, await self.store.change_head())

    async def open_stream(self, params: StreamParams, last_event_id: str | None) -> ChangeStream:
        """A stream from ``Last-Event-ID`` (a reconnect), else ``after``, else from now."""
        if last_event_id:
            start = await self._checked(last_event_id.strip(), "Last-Event-ID")
        elif params.after:
            start = await self._checked(params.after, "after")
        else:
            start = await self.store.change_head()
        return ChangeStream(self, start, self._query(params))

    def follow(self, after: int, q: MemoryQuery, wait_s: float) -> AsyncIterator[list[Entry]]:
        if isinstance(self.store, ChangeFollower):
            return self.store.follow(after, q, wait_s)
        return self._poll(after, q, wait_s)

    async def _poll(self, after: int, q: MemoryQuery, wait_s: float) -> AsyncIterator[list[Entry]]:
        """A store without a shared reader (in-process tools, tests): poll it."""
        position, idle = after, 0.0
        poll_s = self.service.settings.limits.stream_poll_s
        while True:
            page = await self.store.changes(position, q, 500)
            position = page.position
            if page.entries:
                idle = 0.0
                yield page.entries
                continue
            if not page.complete:
                continue
            await asyncio.sleep(poll_s)
            idle += poll_s
            if idle >= wait_s:
                idle = 0.0
                yield []
