"""The stored memory's row shape, derived from :data:`memtrace.domain.memory.MEMORY_FIELDS`.

One column order (``RECORD_COLUMNS``) for the embedded store's rows, the Arc outbox's rows and
Arc query results, with the converters between rows and :class:`MemoryRecord` and the column
DDL of the SQLite tables. ``matches`` is the Python statement of :class:`MemoryQuery`
semantics, used to filter the outbox overlay exactly as the SQL backends filter their rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from memtrace.domain.dedup import DedupWindow
from memtrace.domain.ids import memory_ids
from memtrace.domain.memory import MEMORY_COLUMNS, MEMORY_FIELDS, MemoryRecord, WriteOutcome
from memtrace.storage.base import MemoryQuery, NewMemory

RECORD_COLUMNS = MEMORY_COLUMNS
COLUMN_LIST = ", ".join(RECORD_COLUMNS)
PLACEHOLDERS = ", ".join("?" * len(RECORD_COLUMNS))


def column_ddl(indent: str = "    ") -> str:
    """The memory columns of a ``CREATE TABLE`` statement (no trailing comma)."""
    return ",\n".join(
        f"{indent}{field.name} {field.sql_type}{' NOT NULL' if field.required else ''}"
        for field in MEMORY_FIELDS
    )


def row_to_record(row: tuple[Any, ...] | list[Any]) -> MemoryRecord:
    """A row in ``RECORD_COLUMNS`` order (metadata JSON text, tags comma-joined)."""
    return MemoryRecord(
        id=row[0],
        time=int(row[1]),
        org_id=row[2],
        agent_id=row[3],
        session_id=row[4],
        memory_type=row[5],
        event_type=row[6],
        content=row[7],
        metadata=orjson.loads(row[8]) if row[8] else None,
        tags=tuple(row[9].split(",")) if row[9] else (),
        importance=float(row[10]) if row[10] is not None else None,
        dedup_key=row[11],
        parent_id=row[12],
    )


def record_from_new(item: NewMemory, memory_id: str, org_id: str) -> MemoryRecord:
    """The record of a memory about to be stored under ``memory_id``."""
    return MemoryRecord(
        memory_id,
        item.time,
        org_id,
        item.agent_id,
        item.session_id,
        item.memory_type,
        item.event_type,
        item.content,
        item.metadata,
        item.tags,
        item.importance,
        item.dedup_key,
        item.parent_id,
    )


def admit(
    items: Sequence[NewMemory], dedup: DedupWindow | None, org_id: str
) -> tuple[list[WriteOutcome], list[MemoryRecord]]:
    """The dedup decision of one write: an outcome per item, in order, and the records to
    store (each gets its id; ``dedup`` also learns them, so later items of the batch see them)."""
    outcomes: list[WriteOutcome] = []
    records: list[MemoryRecord] = []
    for item in items:
        if dedup is not None:
            duplicate = dedup.duplicate_of(item.dedup_key, item.time)
            if duplicate is not None:
                outcomes.append(WriteOutcome(existing_id=duplicate))
                continue
        record = record_from_new(item, item.id or memory_ids.new(), org_id)
        if dedup is not None:
            dedup.add(item.dedup_key, item.time, record.id)
        records.append(record)
        outcomes.append(WriteOutcome(record=record))
    return outcomes, records


def record_to_row(record: MemoryRecord) -> tuple[Any, ...]:
    """The inverse of :func:`row_to_record`."""
    return (
        record.id,
        record.time,
        record.org_id,
        record.agent_id,
        record.session_id,
        record.memory_type,
        record.event_type,
        record.content,
        orjson.dumps(record.metadata).decode() if record.metadata else None,
        ",".join(record.tags) if record.tags else None,
        float(record.importance) if record.importance is not None else None,
        record.dedup_key,
        record.parent_id,
    )


def matches(record: MemoryRecord, q: MemoryQuery) -> bool:
    """True when ``record`` satisfies every filter of ``q`` (limit/offset/order ignored)."""
    if record.org_id != q.org_id:
        return False
    if q.agent_id is not None and record.agent_id != q.agent_id:
        return False
    if q.session_id is not None and record.session_id != q.session_id:
        return False
    if q.memory_types and record.memory_type not in q.memory_types:
        return False
    if q.event_types and record.event_type not in q.event_types:
        return False
    if q.since is not None and record.time < q.since:
        return False
    if q.until is not None and record.time >= q.until:
        return False
    if q.min_importance is not None and (
        record.importance is None or record.importance < q.min_importance
    ):
        return False
    if any(tag not in record.tags for tag in q.tags):
        return False
    if q.after is not None and not after(record, q.after, q.order):
        return False
    return not (q.content_contains and q.content_contains.lower() not in record.content.lower())


def after(record: MemoryRecord, position: tuple[int, str], order: str) -> bool:
    """True when ``record`` comes strictly after ``position`` in a walk of that order."""
    key = (record.time, record.id)
    return key > position if order == "asc" else key < position


def sort_key(record: MemoryRecord) -> tuple[int, str]:
    return (record.time, record.id)
