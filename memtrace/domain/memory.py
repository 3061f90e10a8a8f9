"""A stored memory as the core handles it, and its one row shape.

``MEMORY_FIELDS`` declares the fields of a stored memory once, in order. Every storage schema
(the embedded table, the Arc outbox, the columns written to Arc), every row converter and every
SQL column list derives from it (:mod:`memtrace.storage.rows`); :class:`MemoryRecord` has the
same fields in the same order (a test holds them together). The wire shape is
:class:`memtrace.domain.models.Memory`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from memtrace.domain.timestamps import format_us

Encoding = Literal["plain", "json", "csv"]


@dataclass(frozen=True, slots=True)
class MemoryField:
    """One stored field: its column type and how the value is encoded in a row.

    ``json``: a JSON object stored as text (NULL when empty); ``csv``: a tuple of tags stored
    comma-joined (NULL when empty; tags never contain a comma).
    """

    name: str
    sql_type: Literal["TEXT", "INTEGER", "REAL"]
    required: bool
    encoding: Encoding = "plain"


MEMORY_FIELDS: tuple[MemoryField, ...] = (
    MemoryField("id", "TEXT", True),
    MemoryField("time", "INTEGER", True),  # microseconds since the epoch, UTC
    MemoryField("org_id", "TEXT", True),
    MemoryField("agent_id", "TEXT", True),
    MemoryField("session_id", "TEXT", False),
    MemoryField("memory_type", "TEXT", True),
    MemoryField("event_type", "TEXT", True),
    MemoryField("content", "TEXT", True),
    MemoryField("metadata", "TEXT", False, "json"),
    MemoryField("tags", "TEXT", False, "csv"),
    MemoryField("importance", "REAL", False),
    MemoryField("dedup_key", "TEXT", True),
    MemoryField("parent_id", "TEXT", False),
)
MEMORY_COLUMNS: tuple[str, ...] = tuple(field.name for field in MEMORY_FIELDS)


@dataclass(slots=True)
class MemoryRecord:
    """A memory as the core handles it: time in integer microseconds, tags as a tuple."""

    id: str
    time: int
    org_id: str
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

    def to_wire(self) -> dict[str, Any]:
        """The JSON shape of :class:`~memtrace.domain.models.Memory`, with empty optional
        fields left out."""
        out: dict[str, Any] = {
            "id": self.id,
            "time": format_us(self.time),
            "org_id": self.org_id,
            "agent_id": self.agent_id,
        }
        if self.session_id:
            out["session_id"] = self.session_id
        out["memory_type"] = self.memory_type
        out["event_type"] = self.event_type
        out["content"] = self.content
        if self.metadata:
            out["metadata"] = self.metadata
        if self.tags:
            out["tags"] = list(self.tags)
        if self.importance is not None:
            out["importance"] = self.importance
        out["dedup_key"] = self.dedup_key
        if self.parent_id:
            out["parent_id"] = self.parent_id
        return out


@dataclass(slots=True)
class WriteOutcome:
    """Result of writing one memory: the stored record, or the id of the duplicate it matched."""

    record: MemoryRecord | None = None
    existing_id: str | None = None
