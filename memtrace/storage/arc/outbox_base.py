"""What the Arc store, its shipper and copies need from an org's outbox: the SQLite file
(:class:`~memtrace.storage.arc.outbox.Outbox`) or the cluster's PostgreSQL
(:class:`~memtrace.storage.arc.pg_outbox.PgOutbox`). Row states and rules: outbox.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from memtrace.domain.memory import MemoryRecord, WriteOutcome
from memtrace.storage.arc.outbox import OutboxCounts, ParkedRow, ShippedRow
from memtrace.storage.base import MemoryQuery, NewMemory
from memtrace.storage.erase import ErasureFinisher


class OutboxStore(Protocol):
    org_id: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def append(
        self,
        items: Sequence[NewMemory],
        dedup_window_us: int | None,
        now: int,
        known: Sequence[tuple[str, int, str]] = (),
    ) -> list[WriteOutcome]:
        """Commit new rows, skipping duplicates inside the window (exact, also across
        replicas); ``known``: (dedup_key, time, id) the index may lack."""
        ...

    async def add_parked(self, records: Sequence[MemoryRecord], reason: str, now: int) -> None: ...

    async def remember_keys(self, entries: Sequence[tuple[str, int, str]], now: int) -> None: ...

    async def mark_shipped(self, seqs: Sequence[int], now: int) -> None: ...

    async def settle(self, verified: Sequence[int], lost: Sequence[int]) -> None: ...

    async def park(self, refused: Sequence[tuple[int, str]], now: int) -> None: ...

    async def unpark(self) -> int: ...

    async def delete(self, seqs: Sequence[int]) -> None: ...

    async def prune_keys(self, time_before: int, written_before: int) -> None: ...

    async def set_state(self, name: str, value: str) -> None: ...

    async def get_state(self, name: str) -> str | None: ...

    async def pending_batch(self, limit: int) -> list[tuple[int, int, MemoryRecord]]:
        """The oldest rows to ship now: (seq, enqueued_at, record)."""
        ...

    async def shipped(self, until: int, limit: int) -> list[ShippedRow]: ...

    async def rows(self, after_seq: int, limit: int) -> list[tuple[int, MemoryRecord]]: ...

    async def parked(self, limit: int) -> list[ParkedRow]: ...

    async def overlay(self, q: MemoryQuery, limit: int | None = None) -> list[MemoryRecord]:
        """Rows Arc may not show, narrowed by the query's cheap filters; with ``limit``, the
        first rows in the query's (time, id) order after ``q.after``."""
        ...

    async def older_than(self, cutoff: int) -> list[tuple[str, bool]]:
        """(id, shipped) of every row with a time before ``cutoff`` (retention)."""
        ...

    async def held(self, ids: Sequence[str]) -> dict[str, bool]:
        """Which of ``ids`` are in the outbox: id -> shipped."""
        ...

    async def remove(self, ids: Sequence[str], keys: Sequence[tuple[str, int, str]]) -> list[str]:
        """Delete rows by id with their dedup-index entries, plus the index entries ``keys``
        of rows only Arc holds; returns the ids removed from the outbox."""
        ...

    def purger(self) -> ErasureFinisher:
        """What finishes erasures in the outbox's own files (one per store)."""
        ...

    async def get(self, memory_id: str) -> MemoryRecord | None: ...

    async def pending_count(self) -> int: ...

    async def changes(self, after: int, scan: int) -> tuple[list[tuple[int, str, int]], int]:
        """``(position, id, time)`` of the org's change log after ``after`` (at most ``scan``
        positions on), and its head (docs/feed.md)."""
        ...

    async def change_head(self) -> int: ...

    async def records(self, ids: Sequence[str]) -> dict[str, MemoryRecord]:
        """The rows among ``ids`` still in the outbox, by id."""
        ...

    async def counts(self) -> OutboxCounts: ...
