"""The durable outbox of an Arc-backed org: ``<data_dir>/orgs/<org>/arc_outbox.db`` (SQLite).

A write is acknowledged once its rows are committed here. A row then moves through:

- **pending** (``shipped_at`` and ``parked_at`` null): the shipper sends pending rows in
  ``seq`` order;
- **shipped** (``shipped_at`` set): Arc answered 204, which only means "in Arc's write
  buffer". The row stays until a query to Arc returns its id (it is *verified*), then it is
  deleted. A row Arc still does not show ``visibility_grace_s`` after shipping (Arc lost its
  buffer, e.g. a crash before its flush) goes back to pending and is shipped again;
- **parked** (``parked_at`` set): Arc refused the row itself (a 400 for it alone). It stays
  here, visible to reads and reported (``/health``, ``memtrace org outbox``), without blocking
  the rows behind it, until an operator retries it.

Every row still in the outbox is in the read overlay, whatever its state: Arc may not hold it.
Delivery is at-least-once (a crash between Arc's 204 and the local commit resends a batch;
reads deduplicate by ``id``). ``dedup_index`` is the local dedup window index (Arc is not
queried for live writes, see :meth:`Outbox.prune_keys` for how long keys stay).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from memtrace.domain.memory import MemoryRecord, WriteOutcome
from memtrace.storage.base import MemoryQuery, NewMemory
from memtrace.storage.erase import Purger
from memtrace.storage.readpool import SYSTEM_LANE
from memtrace.storage.rows import (
    COLUMN_LIST,
    PLACEHOLDERS,
    admit,
    column_ddl,
    record_to_row,
    row_to_record,
)
from memtrace.storage.schema import create_schema
from memtrace.storage.sqlite import SQLiteDatabase, Synchronous, load_dedup_window

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
# v2: parked rows; dedup keys remember when they were written (kept a window after that, so a
# resent backfill is still caught). Keys of a v1 file count as written at the upgrade.
_SCHEMA_V2 = """
ALTER TABLE outbox ADD COLUMN parked_at INTEGER;
ALTER TABLE outbox ADD COLUMN park_reason TEXT;
DROP INDEX outbox_pending;
CREATE INDEX outbox_pending ON outbox(seq) WHERE shipped_at IS NULL AND parked_at IS NULL;
ALTER TABLE dedup_index ADD COLUMN written_at INTEGER NOT NULL DEFAULT 0;
UPDATE dedup_index SET written_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000000;
CREATE INDEX dedup_index_written ON dedup_index(written_at);
"""
# v3: the change log of the feed and the stream (docs/feed.md): every row appended here gets a
# position in commit order (the one writer assigns it under the write lock), kept after the row
# is shipped and verified (the record is then read from Arc). AUTOINCREMENT: a position is never
# handed out twice, even after the newest entry was erased.
_SCHEMA_V3 = """
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    time INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_id ON changes(id);
"""
SCHEMA_VERSION = 3
_CHANGES_HEAD = "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)"
_IDS_PER_STATEMENT = 500
_NOT_PARKED = "parked_at IS NULL"
_PENDING = f"shipped_at IS NULL AND {_NOT_PARKED}"


def _migrate(conn: sqlite3.Connection) -> None:
    create_schema(
        conn, _SCHEMA_V1, version=SCHEMA_VERSION, what="outbox", upgrades=[_SCHEMA_V2, _SCHEMA_V3]
    )


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    """Rows by state: not yet sent, sent but not yet seen in Arc, refused by Arc."""

    pending: int = 0
    unverified: int = 0
    parked: int = 0

    @property
    def total(self) -> int:
        """Acknowledged rows Arc is not known to hold."""
        return self.pending + self.unverified + self.parked


@dataclass(frozen=True, slots=True)
class ParkedRow:
    id: str
    time: int
    agent_id: str
    parked_at: int
    reason: str


@dataclass(frozen=True, slots=True)
class ShippedRow:
    seq: int
    id: str
    time: int
    shipped_at: int


class Outbox:
    """One org's outbox file: rows Arc is not known to hold, and the dedup window index."""

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
        self,
        items: Sequence[NewMemory],
        dedup_window_us: int | None,
        now: int,
        known: Sequence[tuple[str, int, str]] = (),
    ) -> list[WriteOutcome]:
        """Commit new rows (skipping duplicates inside the window); returns after the commit.

        ``known``: (dedup_key, time, id) of stored memories the local index may lack (looked
        up in Arc for backfills), considered with the index.
        """
        return await self.db.write(
            lambda conn: self._append(conn, items, dedup_window_us, now, known)
        )

    def _append(
        self,
        conn: sqlite3.Connection,
        items: Sequence[NewMemory],
        window: int | None,
        now: int,
        known: Sequence[tuple[str, int, str]],
    ) -> list[WriteOutcome]:
        dedup = (
            load_dedup_window(conn, "dedup_index", items, window) if window is not None else None
        )
        if dedup is not None:
            for key, at, memory_id in known:
                dedup.add(key, at, memory_id)
        outcomes, records = admit(items, dedup, self.org_id)
        if records:
            conn.executemany(
                f"INSERT INTO outbox ({COLUMN_LIST}, enqueued_at) "  # noqa: S608
                f"VALUES ({PLACEHOLDERS}, ?)",
                [(*record_to_row(r), now) for r in records],
            )
            _log_changes(conn, [(r.id, r.time) for r in records])
            _remember(conn, [(r.dedup_key, r.time, r.id) for r in records], now)
        return outcomes

    async def add_parked(self, records: Sequence[MemoryRecord], reason: str, now: int) -> None:
        """Keep rows Arc refused during ``org copy-data`` as parked (an id already here is
        left as it is, so a rerun adds nothing twice)."""

        def run(conn: sqlite3.Connection) -> None:
            held = _held_ids(conn, [r.id for r in records])
            fresh = list({r.id: r for r in records if r.id not in held}.values())
            conn.executemany(
                f"INSERT INTO outbox ({COLUMN_LIST}, enqueued_at, parked_at, "  # noqa: S608
                f"park_reason) VALUES ({PLACEHOLDERS}, ?, ?, ?)",
                [(*record_to_row(r), now, now, reason) for r in fresh],
            )
            _log_changes(conn, [(r.id, r.time) for r in fresh])

        await self.db.write(run)

    async def remember_keys(self, entries: Sequence[tuple[str, int, str]], now: int) -> None:
        """Add (dedup_key, time, id) entries to the window index (seeding, copies to Arc)."""
        await self.db.write(lambda conn: _remember(conn, entries, now))

    async def mark_shipped(self, seqs: Sequence[int], now: int) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE outbox SET shipped_at = ? WHERE seq = ?", [(now, s) for s in seqs]
            )

        await self.db.write(run)

    async def settle(self, verified: Sequence[int], lost: Sequence[int]) -> None:
        """Forget rows Arc has shown in a query; send the ``lost`` ones again."""

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in verified])
            conn.executemany(
                "UPDATE outbox SET shipped_at = NULL WHERE seq = ?", [(s,) for s in lost]
            )

        await self.db.write(run)

    async def park(self, refused: Sequence[tuple[int, str]], now: int) -> None:
        """Set rows Arc refuses aside: (seq, Arc's reason)."""

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE outbox SET parked_at = ?, park_reason = ? WHERE seq = ?",
                [(now, reason[:500], seq) for seq, reason in refused],
            )

        await self.db.write(run)

    async def unpark(self) -> int:
        """Send every parked row again (an operator's retry); returns how many."""

        def run(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "UPDATE outbox SET parked_at = NULL, park_reason = NULL, shipped_at = NULL "
                "WHERE parked_at IS NOT NULL"
            )
            return int(cursor.rowcount)

        return await self.db.write(run)

    async def delete(self, seqs: Sequence[int]) -> None:
        """Drop rows that now live elsewhere (moved to the embedded store)."""
        await self.db.write(
            lambda conn: conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
        )

    async def prune_keys(self, time_before: int, written_before: int) -> None:
        """Forget index keys whose memory time is before ``time_before`` **and** that were
        written before ``written_before``: a resent backfill (old time, recent write) stays
        caught for a whole window after it was written."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM dedup_index WHERE time < ? AND written_at < ?",
                (time_before, written_before),
            )

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

    async def pending_batch(self, limit: int) -> list[tuple[int, int, MemoryRecord]]:
        """The oldest rows to ship (not shipped, not parked): (seq, enqueued_at, record)."""

        def run(conn: sqlite3.Connection) -> list[tuple[int, int, MemoryRecord]]:
            rows = conn.execute(
                f"SELECT seq, enqueued_at, {COLUMN_LIST} FROM outbox "  # noqa: S608
                f"WHERE {_PENDING} ORDER BY seq LIMIT ?",
                (limit,),
            )
            return [(row[0], row[1], row_to_record(row[2:])) for row in rows]

        return await self.db.read(run)

    async def shipped(self, until: int, limit: int) -> list[ShippedRow]:
        """Rows shipped at or before ``until`` and not yet verified, oldest shipment first."""

        def run(conn: sqlite3.Connection) -> list[ShippedRow]:
            rows = conn.execute(
                "SELECT seq, id, time, shipped_at FROM outbox "
                "WHERE shipped_at IS NOT NULL AND shipped_at <= ? ORDER BY shipped_at LIMIT ?",
                (until, limit),
            )
            return [ShippedRow(*row) for row in rows]

        return await self.db.read(run)

    async def rows(self, after_seq: int, limit: int) -> list[tuple[int, MemoryRecord]]:
        """Every row, whatever its state, in ``seq`` order: (seq, record)."""

        def run(conn: sqlite3.Connection) -> list[tuple[int, MemoryRecord]]:
            rows = conn.execute(
                f"SELECT seq, {COLUMN_LIST} FROM outbox WHERE seq > ? "  # noqa: S608
                "ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
            return [(row[0], row_to_record(row[1:])) for row in rows]

        return await self.db.read(run)

    async def parked(self, limit: int) -> list[ParkedRow]:
        def run(conn: sqlite3.Connection) -> list[ParkedRow]:
            rows = conn.execute(
                "SELECT id, time, agent_id, parked_at, park_reason FROM outbox "
                "WHERE parked_at IS NOT NULL ORDER BY seq LIMIT ?",
                (limit,),
            )
            return [ParkedRow(*row) for row in rows]

        return await self.db.read(run)

    async def overlay(self, q: MemoryQuery, limit: int | None = None) -> list[MemoryRecord]:
        """Rows Arc may not show (every row still here), narrowed in SQL by the query's cheap
        filters (callers apply the full predicate); with ``limit``, the first rows in the
        query's (time, id) order after ``q.after``."""
        where = ["1"]
        params: list[object] = []
        for column, value in (("agent_id", q.agent_id), ("session_id", q.session_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        for column, values in (("memory_type", q.memory_types), ("event_type", q.event_types)):
            if values:
                where.append(f"{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)
        if q.since is not None:
            where.append("time >= ?")
            params.append(q.since)
        if q.until is not None:
            where.append("time < ?")
            params.append(q.until)
        if q.after is not None:
            op = ">" if q.order == "asc" else "<"
            where.append(f"(time {op} ? OR (time = ? AND id {op} ?))")
            params.extend((q.after[0], q.after[0], q.after[1]))
        sql = f"SELECT {COLUMN_LIST} FROM outbox WHERE {' AND '.join(where)}"  # noqa: S608
        if limit is not None:
            direction = "DESC" if q.order == "desc" else "ASC"
            sql += f" ORDER BY time {direction}, id {direction} LIMIT ?"
            params.append(limit)

        def run(conn: sqlite3.Connection) -> list[MemoryRecord]:
            return [row_to_record(row) for row in conn.execute(sql, params)]

        return await self.db.read(run)

    async def older_than(self, cutoff: int) -> list[tuple[str, bool]]:
        """(id, shipped) of every row with a time before ``cutoff`` (retention)."""

        def run(conn: sqlite3.Connection) -> list[tuple[str, bool]]:
            rows = conn.execute(
                "SELECT id, shipped_at IS NOT NULL FROM outbox WHERE time < ?", (cutoff,)
            )
            return [(str(i), bool(s)) for i, s in rows]

        return await self.db.read(run)

    async def held(self, ids: Sequence[str]) -> dict[str, bool]:
        """Which of ``ids`` are in the outbox: id → shipped (so maybe in Arc's write buffer)."""

        def run(conn: sqlite3.Connection) -> dict[str, bool]:
            found: dict[str, bool] = {}
            for start in range(0, len(ids), _IDS_PER_STATEMENT):
                chunk = list(ids[start : start + _IDS_PER_STATEMENT])
                sql = (
                    "SELECT id, shipped_at IS NOT NULL FROM outbox "  # noqa: S608
                    f"WHERE id IN ({', '.join('?' * len(chunk))})"
                )
                found.update((str(i), bool(s)) for i, s in conn.execute(sql, chunk))
            return found

        return await self.db.read(run)

    async def remove(self, ids: Sequence[str], keys: Sequence[tuple[str, int, str]]) -> list[str]:
        """Delete rows by id (whatever their state) with their dedup-index entries, plus the
        index entries ``keys`` (dedup_key, time, id) of rows only Arc holds; returns the ids
        removed from the outbox."""

        def run(conn: sqlite3.Connection) -> list[str]:
            gone: list[tuple[str, int, str]] = []
            for start in range(0, len(ids), _IDS_PER_STATEMENT):
                chunk = list(ids[start : start + _IDS_PER_STATEMENT])
                marks = ", ".join("?" * len(chunk))
                gone += conn.execute(
                    f"SELECT dedup_key, time, id FROM outbox WHERE id IN ({marks})",  # noqa: S608
                    chunk,
                ).fetchall()
                conn.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk)  # noqa: S608
            conn.executemany(
                "DELETE FROM dedup_index WHERE dedup_key = ? AND time = ? AND id = ?",
                [*gone, *keys],
            )
            erased = {*ids, *(memory_id for _, _, memory_id in keys)}
            conn.executemany("DELETE FROM changes WHERE id = ?", [(i,) for i in erased])
            return [str(row[2]) for row in gone]

        return await self.db.write(run)

    def purger(self) -> Purger:
        return Purger(self.db)

    async def get(self, memory_id: str) -> MemoryRecord | None:
        def run(conn: sqlite3.Connection) -> MemoryRecord | None:
            row = conn.execute(
                f"SELECT {COLUMN_LIST} FROM outbox WHERE id = ?",  # noqa: S608
                (memory_id,),
            ).fetchone()
            return row_to_record(row) if row else None

        return await self.db.read(run)

    async def changes(self, after: int, scan: int) -> tuple[list[tuple[int, str, int]], int]:
        """``(seq, id, time)`` of the change log after ``after`` (at most ``scan`` positions
        on), and the log's head: every position up to it is committed."""

        def run(conn: sqlite3.Connection) -> tuple[list[tuple[int, str, int]], int]:
            head = int(conn.execute(_CHANGES_HEAD).fetchone()[0])
            rows = conn.execute(
                "SELECT seq, id, time FROM changes WHERE seq > ? AND seq <= ? ORDER BY seq",
                (after, min(after + scan, head)),
            ).fetchall()
            return [(int(r[0]), str(r[1]), int(r[2])) for r in rows], head

        return await self.db.read(run)

    async def change_head(self) -> int:
        return await self.db.read(lambda conn: int(conn.execute(_CHANGES_HEAD).fetchone()[0]))

    async def records(self, ids: Sequence[str]) -> dict[str, MemoryRecord]:
        """The rows among ``ids`` still here, by id."""

        def run(conn: sqlite3.Connection) -> dict[str, MemoryRecord]:
            found: dict[str, MemoryRecord] = {}
            for start in range(0, len(ids), _IDS_PER_STATEMENT):
                chunk = list(ids[start : start + _IDS_PER_STATEMENT])
                sql = (
                    f"SELECT {COLUMN_LIST} FROM outbox "  # noqa: S608 (placeholders only)
                    f"WHERE id IN ({', '.join('?' * len(chunk))})"
                )
                for row in conn.execute(sql, chunk):
                    record = row_to_record(row)
                    found[record.id] = record
            return found

        return await self.db.read(run)

    async def pending_count(self) -> int:
        """Rows waiting to be shipped (parked rows excluded)."""
        return await self.db.read(
            lambda conn: int(
                conn.execute(f"SELECT count(*) FROM outbox WHERE {_PENDING}").fetchone()[0]  # noqa: S608
            )
        )

    async def counts(self) -> OutboxCounts:
        """Pending, unverified and parked rows (read on the system lane: health checks never
        queue behind the org's reads)."""

        def run(conn: sqlite3.Connection) -> OutboxCounts:
            pending, unverified, parked = conn.execute(
                "SELECT count(*) FILTER (WHERE shipped_at IS NULL AND parked_at IS NULL), "
                "count(*) FILTER (WHERE shipped_at IS NOT NULL AND parked_at IS NULL), "
                "count(*) FILTER (WHERE parked_at IS NOT NULL) FROM outbox"
            ).fetchone()
            return OutboxCounts(int(pending), int(unverified), int(parked))

        return await self.db.read(run, lane=SYSTEM_LANE)


def _log_changes(conn: sqlite3.Connection, entries: Sequence[tuple[str, int]]) -> None:
    """Give rows just appended their positions in the change log (in the append's
    transaction, so the positions follow commit order)."""
    conn.executemany("INSERT INTO changes (id, time) VALUES (?, ?)", entries)


def _held_ids(conn: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
    held: set[str] = set()
    for start in range(0, len(ids), _IDS_PER_STATEMENT):
        chunk = list(ids[start : start + _IDS_PER_STATEMENT])
        sql = f"SELECT id FROM outbox WHERE id IN ({', '.join('?' * len(chunk))})"  # noqa: S608
        held.update(str(row[0]) for row in conn.execute(sql, chunk))
    return held


def _remember(conn: sqlite3.Connection, entries: Sequence[tuple[str, int, str]], now: int) -> None:
    conn.executemany(
        "INSERT INTO dedup_index (dedup_key, time, id, written_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT DO UPDATE SET written_at = excluded.written_at",
        [(key, at, memory_id, now) for key, at, memory_id in entries],
    )
