"""The durable outbox of an Arc-backed org: ``<data_dir>/orgs/<org>/arc_outbox.db`` (SQLite).

A write is acknowledged once its rows are committed here. The shipper reads pending rows in
order, sends them to Arc, and marks them shipped only after Arc answered 204 (at-least-once:
a crash between the two resends a batch; reads deduplicate by ``id``). Shipped rows stay for
``visibility_grace_s`` so reads can overlay them until Arc has flushed them, then are pruned.
``dedup_index`` is the local window index used for dedup (Arc is never queried per write).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from memtrace.domain.ids import memory_ids
from memtrace.domain.memory import MemoryRecord, WriteOutcome
from memtrace.storage.base import MemoryQuery, NewMemory
from memtrace.storage.readpool import SYSTEM_LANE
from memtrace.storage.rows import (
    COLUMN_LIST,
    PLACEHOLDERS,
    column_ddl,
    record_from_new,
    record_to_row,
    row_to_record,
)
from memtrace.storage.sqlite import SQLiteDatabase, Synchronous, create_schema, load_dedup_window

SCHEMA_VERSION = 1
_SCHEMA_V1 = f"""
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY,
{column_ddl()},
    enqueued_at INTEGER NOT NULL,
    shipped_at INTEGER
);
CREATE UNIQUE INDEX outbox_id ON outbox(id);
CREATE INDEX outbox_pending ON outbox(seq) WHERE shipped_at IS NULL;
CREATE INDEX outbox_shipped ON outbox(shipped_at) WHERE shipped_at IS NOT NULL;
CREATE TABLE dedup_index (
    dedup_key TEXT NOT NULL,
    time INTEGER NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (dedup_key, time, id)
) WITHOUT ROWID;
CREATE INDEX dedup_index_time ON dedup_index(time);
CREATE TABLE state (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _migrate(conn: sqlite3.Connection) -> None:
    create_schema(conn, _SCHEMA_V1, version=SCHEMA_VERSION, what="outbox")


class Outbox:
    """One org's outbox file: pending rows, recently shipped rows, the dedup window index."""

    def __init__(
        self,
        path: Path,
        org_id: str,
        *,
        synchronous: Synchronous = "FULL",
        lane: str | None = None,
    ) -> None:
        self.path = path
        self.org_id = org_id
        self.db = SQLiteDatabase(path, setup=_migrate, synchronous=synchronous, lane=lane)

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    # -- writes -------------------------------------------------------------------------------

    async def append(
        self, items: Sequence[NewMemory], dedup_window_us: int | None, now: int
    ) -> list[WriteOutcome]:
        """Commit new rows (skipping duplicates inside the window); returns after the commit."""
        return await self.db.write(lambda conn: self._append(conn, items, dedup_window_us, now))

    def _append(
        self,
        conn: sqlite3.Connection,
        items: Sequence[NewMemory],
        window: int | None,
        now: int,
    ) -> list[WriteOutcome]:
        dedup = (
            load_dedup_window(conn, "dedup_index", items, window) if window is not None else None
        )
        outcomes: list[WriteOutcome] = []
        records: list[MemoryRecord] = []
        for item in items:
            if dedup is not None:
                duplicate = dedup.duplicate_of(item.dedup_key, item.time)
                if duplicate is not None:
                    outcomes.append(WriteOutcome(existing_id=duplicate))
                    continue
            record = record_from_new(item, item.id or memory_ids.new(), self.org_id)
            if dedup is not None:
                dedup.add(item.dedup_key, item.time, record.id)
            records.append(record)
            outcomes.append(WriteOutcome(record=record))
        if records:
            conn.executemany(
                f"INSERT INTO outbox ({COLUMN_LIST}, enqueued_at) "  # noqa: S608
                f"VALUES ({PLACEHOLDERS}, ?)",
                [(*record_to_row(r), now) for r in records],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO dedup_index (dedup_key, time, id) VALUES (?, ?, ?)",
                [(r.dedup_key, r.time, r.id) for r in records],
            )
        return outcomes

    async def remember_keys(self, entries: Sequence[tuple[str, int, str]]) -> None:
        """Add (dedup_key, time, id) entries to the window index (seeding, migrations)."""

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR IGNORE INTO dedup_index (dedup_key, time, id) VALUES (?, ?, ?)",
                entries,
            )

        await self.db.write(run)

    async def pending_batch(self, limit: int) -> list[tuple[int, int, MemoryRecord]]:
        """The oldest unshipped rows: (seq, enqueued_at, record)."""

        def run(conn: sqlite3.Connection) -> list[tuple[int, int, MemoryRecord]]:
            rows = conn.execute(
                f"SELECT seq, enqueued_at, {COLUMN_LIST} FROM outbox "  # noqa: S608
                "WHERE shipped_at IS NULL ORDER BY seq LIMIT ?",
                (limit,),
            )
            return [(row[0], row[1], row_to_record(row[2:])) for row in rows]

        return await self.db.read(run)

    async def mark_shipped(self, seqs: Sequence[int], now: int) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE outbox SET shipped_at = ? WHERE seq = ?", [(now, s) for s in seqs]
            )

        await self.db.write(run)

    async def prune(self, shipped_before: int, keys_before: int) -> None:
        """Forget shipped rows older than the grace period and index entries out of window."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM outbox WHERE shipped_at IS NOT NULL AND shipped_at < ?",
                (shipped_before,),
            )
            conn.execute("DELETE FROM dedup_index WHERE time < ?", (keys_before,))

        await self.db.write(run)

    async def set_state(self, name: str, value: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO state (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

        await self.db.write(run)

    # -- reads --------------------------------------------------------------------------------

    async def get_state(self, name: str) -> str | None:
        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
            return str(row[0]) if row else None

        return await self.db.read(run)

    async def overlay(self, shipped_since: int, q: MemoryQuery) -> list[MemoryRecord]:
        """Rows Arc may not show yet (pending, or shipped after ``shipped_since``), narrowed in
        SQL by the query's cheap filters; callers apply the full predicate."""
        where = ["(shipped_at IS NULL OR shipped_at >= ?)"]
        params: list[object] = [shipped_since]
        for column, value in (("agent_id", q.agent_id), ("session_id", q.session_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if q.since is not None:
            where.append("time >= ?")
            params.append(q.since)
        if q.until is not None:
            where.append("time < ?")
            params.append(q.until)
        sql = f"SELECT {COLUMN_LIST} FROM outbox WHERE {' AND '.join(where)}"  # noqa: S608

        def run(conn: sqlite3.Connection) -> list[MemoryRecord]:
            return [row_to_record(row) for row in conn.execute(sql, params)]

        return await self.db.read(run)

    async def get(self, memory_id: str) -> MemoryRecord | None:
        def run(conn: sqlite3.Connection) -> MemoryRecord | None:
            row = conn.execute(
                f"SELECT {COLUMN_LIST} FROM outbox WHERE id = ?",  # noqa: S608
                (memory_id,),
            ).fetchone()
            return row_to_record(row) if row else None

        return await self.db.read(run)

    async def pending_count(self) -> int:
        """Unshipped rows (read on the system lane: health checks never queue behind reads)."""
        return await self.db.read(
            lambda conn: int(
                conn.execute("SELECT count(*) FROM outbox WHERE shipped_at IS NULL").fetchone()[0]
            ),
            lane=SYSTEM_LANE,
        )
