"""What the service's calls return before an adapter turns it into JSON (``to_wire`` gives the
shape of the matching wire model in :mod:`memtrace.domain.models`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memtrace.domain.memory import MemoryRecord
from memtrace.domain.models import DuplicateEntry

PARTIAL_HINT = (
    "the search stopped at its work budget (limits.scan_budget_ms) before it had looked at "
    "every memory; narrow it with agent_id, session_id, since/until or a longer "
    "content_contains (3+ ASCII characters use an index)"
)


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """What a batch write stored, and the duplicates it skipped (internal; see ``to_wire``)."""

    memories: list[MemoryRecord]
    duplicates: list[DuplicateEntry]

    def to_wire(self) -> dict[str, Any]:
        """The JSON shape of :class:`~memtrace.domain.models.MemoryBatchResult`."""
        return {
            "count": len(self.memories),
            "memories": [m.to_wire() for m in self.memories],
            "duplicates": [d.model_dump() for d in self.duplicates],
        }


@dataclass(frozen=True, slots=True)
class RecordPage:
    """One page of a listing, with the exact look-ahead ``has_more`` and, when there is more,
    the cursor of the next page."""

    memories: list[MemoryRecord]
    has_more: bool
    next_cursor: str | None = None
    partial: bool = False

    def to_wire(self) -> dict[str, Any]:
        """The JSON shape of :class:`~memtrace.domain.models.MemoryList`."""
        body: dict[str, Any] = {
            "memories": [m.to_wire() for m in self.memories],
            "count": len(self.memories),
            "has_more": self.has_more,
        }
        if self.next_cursor is not None:
            body["next_cursor"] = self.next_cursor
        if self.partial:
            body["partial"] = True
        return body


@dataclass(frozen=True, slots=True)
class SearchHits:
    """What a search found, with the time it took (and the next page's cursor)."""

    results: list[MemoryRecord]
    query_time_ms: int
    has_more: bool = False
    next_cursor: str | None = None
    partial: bool = False

    def to_wire(self) -> dict[str, Any]:
        """The JSON shape of :class:`~memtrace.domain.models.SearchResult`."""
        body: dict[str, Any] = {
            "results": [m.to_wire() for m in self.results],
            "count": len(self.results),
            "query_time_ms": self.query_time_ms,
            "has_more": self.has_more,
        }
        if self.next_cursor is not None:
            body["next_cursor"] = self.next_cursor
        if self.partial:
            body["partial"] = True
            body["partial_reason"] = PARTIAL_HINT
        return body
