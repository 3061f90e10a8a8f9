"""PostgreSQL backend: an org's memories in the cluster's shared, time-partitioned table.

Any replica serves any org: a write is acknowledged after its transaction committed, so every
replica's next read sees it. Dedup is exact across replicas: a write locks its keys' stripe
rows (``dedup_stripes``, ascending order, so batches never deadlock) before it reads the
window, so two replicas writing the same memory at once are serialized and the second sees
the first's row. A single memory takes one round trip (``memtrace_remember``); a batch locks,
reads the window, decides with :class:`~memtrace.domain.dedup.DedupWindow` and COPYs its rows.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TypeVar

import asyncpg

from memtrace.domain.dedup import DedupWindow
from memtrace.domain.ids import memory_ids
from memtrace.domain.memory import MemoryRecord, WriteOutcome
from memtrace.storage.base import (
    CHANGE_SCAN,
    AgentMemoryStats,
    ChangePage,
    MemoryQuery,
    NewMemory,
    QueryPage,
    StoreHealth,
    TimelineBucket,
    TimelineGroup,
)
from memtrace.storage.postgres import changes as change_log
from memtrace.storage.postgres import sql as pg_sql
from memtrace.storage.postgres.db import Connection, PgDatabase
from memtrace.storage.postgres.schema import (
    COLUMN_LIST,
    COLUMNS,
    MIGRATIONS,
    STRIPES,
    decode_text,
    encode_text,
    record_to_row,
    row_to_record,
)
from memtrace.storage.postgres.vacuum import Vacuum
from memtrace.storage.rows import admit, record_from_new
from memtrace.storage.timeline import BucketCounts, origin_of

T = TypeVar("T")

_REMEMBER = "SELECT stored, memory_id FROM memtrace_remember({})".format(  # noqa: S608
    ", ".join(f"${i}" for i in range(1, 16))
)
_LOCK = (
    "SELECT stripe FROM dedup_stripes WHERE org_id = $1 AND stripe = ANY($2::int[]) "
    "ORDER BY stripe FOR UPDATE"
)
_IMPORT_LOCK = "SELECT pg_advisory_xact_lock(hashtext($1))"
_UNCOUNT = (
    "UPDATE agent_type_counts c SET n = c.n - u.n "
    "FROM unnest($2::text[], $3::text[], $4::bigint[]) AS u(a, t, n) "
    "WHERE c.org_id = $1 AND c.agent_id = u.a AND c.memory_type = u.t"
)
_COUNT = (
    "INSERT INTO agent_type_counts (org_id, agent_id, memory_type, n) "
    "SELECT $1, a, t, n FROM unnest($2::text[], $3::text[], $4::bigint[]) AS u(a, t, n) "
    "ON CONFLICT (org_id, agent_id, memory_type) DO UPDATE SET n = agent_type_counts.n + "
    "excluded.n"
)


def stripe_of(dedup_key: str) -> int:
    return zlib.crc32(dedup_key.encode()) % STRIPES


def month_of(time_us: int) -> tuple[int, int]:
    at = datetime.fromtimestamp(time_us / 1_000_000, UTC)
    return at.year, at.month


async def migrate(db: PgDatabase) -> None:
    await db.migrate("memories", MIGRATIONS)


async def ensure_months(db: PgDatabase, conn: Connection, times: Sequence[int]) -> None:
    """Create the monthly partitions ``times`` fall in (once per month per process)."""
    wanted = {month_of(t): t for t in times}
    for month, at in wanted.items():
        if month not in db.known_months:
            await conn.execute("SELECT memtrace_ensure_month($1)", at)
            db.known_months.add(month)


async def ensure_stripes(conn: Connection, org_id: str) -> None:
    """Make sure the org's dedup stripe rows exist (idempotent; cheap once they do)."""
    have = await conn.fetchval("SELECT count(*) FROM dedup_stripes WHERE org_id = $1", org_id)
    if have < STRIPES:
        await conn.execute(
            "INSERT INTO dedup_stripes (org_id, stripe) "
            "SELECT $1, s FROM generate_series(0, $2 - 1) AS s ON CONFLICT DO NOTHING",
            org_id,
            STRIPES,
        )


async def lock_stripes(conn: Connection, org_id: str, keys: Sequence[str]) -> None:
    """Inside a transaction: lock the stripes of ``keys`` until it ends. Every later statement
    of the transaction sees what earlier holders of these stripes committed."""
    await conn.execute(_LOCK, org_id, sorted({stripe_of(k) for k in keys}))


def org_state(
    db: PgDatabase, org_id: str, name: str
) -> tuple[Callable[[], Awaitable[str | None]], Callable[[str], Awaitable[None]]]:
    """(load, save) of one named value of an org's ``org_state`` (e.g. a copy's cursor)."""

    async def load() -> str | None:
        async with db.connection() as conn:
            value = await conn.fetchval(
                "SELECT value FROM org_state WHERE org_id = $1 AND name = $2", org_id, name
            )
        return str(value) if value is not None else None

    async def save(value: str) -> None:
        async with db.connection() as conn:
            await conn.execute(
                "INSERT INTO org_state (org_id, name, value) VALUES ($1, $2, $3) "
                "ON CONFLICT (org_id, name) DO UPDATE SET value = excluded.value",
                org_id,
                name,
                value,
            )

    return load, save


async def locked_window(
    conn: Connection,
    org_id: str,
    table: str,
    items: Sequence[NewMemory],
    window: int,
    known: Sequence[tuple[str, int, str]] = (),
) -> DedupWindow:
    """Inside a transaction: lock the stripes of the items' keys, then read the stored
    ``(dedup_key, time, id)`` near their times from ``table`` (a trusted constant) in a new
    statement, which under READ COMMITTED sees what earlier holders of the stripes wrote.
    ``known``: more stored entries to consider."""
    keys = list(dict.fromkeys(item.dedup_key for item in items))
    await lock_stripes(conn, org_id, keys)
    dedup = DedupWindow(window)
    rows = await conn.fetch(
        f"SELECT dedup_key, time, id FROM {table} WHERE org_id = $1 "  # noqa: S608
        "AND dedup_key = ANY($2::text[]) AND time > $3 AND time < $4 ORDER BY time, id",
        org_id,
        [encode_text(k) for k in keys],
        min(item.time for item in items) - window,
        max(item.time for item in items) + window,
    )
    for row in rows:
        dedup.add(decode_text(row[0]), row[1], row[2])
    for key, at, memory_id in known:
        dedup.add(key, at, memory_id)
    return dedup


async def purge_org(db: PgDatabase, org_id: str) -> int:
    """Delete every memory of an org (``memtrace org delete --purge``); returns how many."""
    async with db.transaction() as conn:
        status = await conn.execute("DELETE FROM memories WHERE org_id = $1", org_id)
        for table in ("agent_type_counts", "dedup_stripes", "org_state", "memory_changes"):
            await conn.execute(f"DELETE FROM {table} WHERE org_id = $1", org_id)  # noqa: S608
    return int(status.split()[-1])


class PostgresStore:
    """One org's view of the shared ``memories`` table."""

    backend = "postgres"

    def __init__(self, db: PgDatabase, org_id: str) -> None:
        self.db = db
        self.org_id = org_id
        self.vacuum = Vacuum(db)  # erasures: dead tuples of deleted rows reclaimed

    async def open(self) -> None:
        async with self.db.connection() as conn:
            await ensure_stripes(conn, self.org_id)

    async def close(self) -> None:
        """Finish pending erasures (connections belong to the process's pool)."""
        await self.vacuum.close()

    # -- writes -------------------------------------------------------------------------------

    async def write(
        self, items: Sequence[NewMemory], dedup_window_us: int | None
    ) -> list[WriteOutcome]:
        if not items:
            return []
        return await self._retrying_partitions(
            [item.time for item in items],
            lambda conn: (
                self._write_one(conn, items[0], dedup_window_us)
                if len(items) == 1
                else self._write_batch(conn, items, dedup_window_us)
            ),
        )

    async def _retrying_partitions(
        self, times: list[int], run: Callable[[Connection], Awaitable[T]]
    ) -> T:
        async with self.db.connection() as conn:
            await ensure_months(self.db, conn, times)
            try:
                return await run(conn)
            except asyncpg.CheckViolationError:  # a partition was dropped meanwhile
                self.db.known_months.clear()
                await ensure_months(self.db, conn, times)
                return await run(conn)

    async def _write_one(
        self, conn: Connection, item: NewMemory, window: int | None
    ) -> list[WriteOutcome]:
        record = record_from_new(item, item.id or memory_ids.new(), self.org_id)
        row = record_to_row(record)
        result = await conn.fetchrow(
            _REMEMBER, self.org_id, stripe_of(item.dedup_key), window, *row[:2], *row[3:]
        )
        assert result is not None  # a function call returns one row
        stored, memory_id = result
        return [WriteOutcome(record=record) if stored else WriteOutcome(existing_id=memory_id)]

    async def _write_batch(
        self, conn: Connection, items: Sequence[NewMemory], window: int | None
    ) -> list[WriteOutcome]:
        async with conn.transaction():
            dedup = None
            if window is not None:
                dedup = await locked_window(conn, self.org_id, "memories", items, window)
            outcomes, records = admit(items, dedup, self.org_id)
            if records:
                rows = [record_to_row(r) for r in records]
                await conn.copy_records_to_table("memories", records=rows, columns=COLUMNS)
                await self._count(conn, Counter((r.agent_id, r.memory_type) for r in records))
        return outcomes

    async def insert_records(self, items: Sequence[NewMemory]) -> list[str]:
        """Import: ids looked up first (the primary key is ``(org_id, time, id)``, so it
        would not refuse an id at another time); imports of one org are serialized by an
        advisory lock so two at once cannot both insert an id."""
        wanted = list({item.id: item for item in items if item.id}.values())
        if not wanted:
            return []

        async def run(conn: Connection) -> list[str]:
            async with conn.transaction():
                await conn.execute(_IMPORT_LOCK, f"import:{self.org_id}")
                present = {
                    str(row[0])
                    for row in await conn.fetch(
                        "SELECT id FROM memories WHERE org_id = $1 AND id = ANY($2::text[])",
                        self.org_id,
                        [item.id for item in wanted],
                    )
                }
                records = [
                    record_from_new(item, item.id, self.org_id)
                    for item in wanted
                    if item.id and item.id not in present
                ]
                if records:
                    await conn.copy_records_to_table(
                        "memories", records=[record_to_row(r) for r in records], columns=COLUMNS
                    )
                    await self._count(conn, Counter((r.agent_id, r.memory_type) for r in records))
            return [r.id for r in records]

        return await self._retrying_partitions([item.time for item in wanted], run)

    async def _count(
        self, conn: Connection, counts: Counter[tuple[str, str]], sql: str = _COUNT
    ) -> None:
        keys = sorted(counts)  # one lock order for every writer (no deadlocks)
        await conn.execute(
            sql, self.org_id, [a for a, _ in keys], [t for _, t in keys], [counts[k] for k in keys]
        )

    async def delete(self, ids: Sequence[str]) -> list[str]:
        """Rows and their agent counters in one transaction; the partitions touched are
        vacuumed once deletes pause (:mod:`memtrace.storage.postgres.vacuum`)."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        async with self.db.transaction() as conn:
            rows = await conn.fetch(
                "DELETE FROM memories WHERE org_id = $1 AND id = ANY($2::text[]) "
                "RETURNING id, agent_id, memory_type, tableoid::regclass::text",
                self.org_id,
                wanted,
            )
            if rows:
                counts = Counter((str(r[1]), str(r[2])) for r in rows)
                await self._count(conn, counts, _UNCOUNT)
                await conn.execute(
                    "DELETE FROM agent_type_counts WHERE org_id = $1 AND n <= 0", self.org_id
                )
                await change_log.forget(conn, self.org_id, [str(r[0]) for r in rows])
        self.vacuum.schedule(str(r[3]) for r in rows)
        gone = {str(r[0]) for r in rows}
        return [memory_id for memory_id in wanted if memory_id in gone]

    async def expire(self, cutoff: int) -> int:
        return 0  # a month's partition holds every org's rows: the service deletes by id

    # -- reads --------------------------------------------------------------------------------

    async def query(self, q: MemoryQuery) -> list[MemoryRecord]:
        sql, params = pg_sql.select_sql(q, collation=self.db.lower_collation)
        async with self.db.connection() as conn:
            records = [row_to_record(row) for row in await conn.fetch(sql, *params)]
        chars = q.content_chars  # a preview: only the leading characters are wanted
        if chars is None:
            return records
        return [
            r if len(r.content) <= chars else replace(r, content=r.content[:chars]) for r in records
        ]

    async def query_page(self, q: MemoryQuery, budget_s: float) -> QueryPage:
        # PostgreSQL scans on its own CPU, bounded by postgres.statement_timeout_s (as Arc
        # is by arc.query_timeout_s): the replica's CPU budget does not apply.
        return QueryPage(await self.query(q))

    async def scan(self, after: tuple[int, str] | None, limit: int) -> list[MemoryRecord]:
        """Up to ``limit`` memories in ``(time, id)`` order after ``after`` (for copies)."""
        async with self.db.connection() as conn:
            if after is None:
                rows = await conn.fetch(
                    f"SELECT {COLUMN_LIST} FROM memories WHERE org_id = $1 "  # noqa: S608
                    "ORDER BY time, id LIMIT $2",
                    self.org_id,
                    limit,
                )
            else:
                rows = await conn.fetch(
                    f"SELECT {COLUMN_LIST} FROM memories WHERE org_id = $1 "  # noqa: S608
                    "AND (time, id) > ($2, $3) ORDER BY time, id LIMIT $4",
                    self.org_id,
                    after[0],
                    after[1],
                    limit,
                )
        return [row_to_record(row) for row in rows]

    async def changes(self, after: int, q: MemoryQuery, limit: int) -> ChangePage:
        async with self.db.connection() as conn:
            head = await change_log.head(conn, self.org_id)
            high = min(after + CHANGE_SCAN, head)
            sql, params = pg_sql.changes_sql(
                q, after, high, limit, collation=self.db.lower_collation
            )
            rows = await conn.fetch(sql, *params) if high > after else []
        entries = [(int(row[0]), row_to_record(row[1:])) for row in rows]
        position = entries[-1][0] if len(entries) == limit else max(high, after)
        return ChangePage(entries, position, complete=position >= head)

    async def change_head(self) -> int:
        async with self.db.connection() as conn:
            return await change_log.head(conn, self.org_id)

    async def count(self, q: MemoryQuery) -> int:
        sql, params = pg_sql.count_sql(q, collation=self.db.lower_collation)
        async with self.db.connection() as conn:
            return int(await conn.fetchval(sql, *params))

    async def get(self, memory_id: str) -> MemoryRecord | None:
        async with self.db.connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {COLUMN_LIST} FROM memories WHERE id = $1 AND org_id = $2",  # noqa: S608
                memory_id,
                self.org_id,
            )
        return row_to_record(row) if row else None

    async def timeline(
        self, q: MemoryQuery, bucket_us: int, group_by: TimelineGroup | None
    ) -> list[TimelineBucket]:
        assert q.since is not None
        counts = BucketCounts(origin_of(q.since, bucket_us), bucket_us)
        collation = self.db.lower_collation
        async with self.db.connection() as conn:
            if group_by is None or group_by == "tag":
                sql, params = pg_sql.timeline_sql(
                    q, counts.origin, bucket_us, None, collation=collation
                )
                for index, _, n in await conn.fetch(sql, *params):
                    counts.total(index, n)
            if group_by is not None:
                sql, params = pg_sql.timeline_sql(
                    q, counts.origin, bucket_us, group_by, collation=collation
                )
                for index, value, n in await conn.fetch(sql, *params):
                    if group_by != "tag":
                        counts.total(index, n)
                    counts.group(index, decode_text(value), n)
        return counts.buckets()

    async def agent_stats(self, agent_id: str, since: int) -> AgentMemoryStats:
        async with self.db.connection() as conn:
            types = {
                str(t): int(n)
                for t, n in await conn.fetch(
                    "SELECT memory_type, n FROM agent_type_counts "
                    "WHERE org_id = $1 AND agent_id = $2 ORDER BY memory_type",
                    self.org_id,
                    agent_id,
                )
            }
            totals = await conn.fetchrow(
                "SELECT count(*), count(*) FILTER (WHERE event_type = 'error') FROM memories "
                "WHERE org_id = $1 AND agent_id = $2 AND time >= $3",
                self.org_id,
                agent_id,
                since,
            )
        recent, errors = totals if totals is not None else (0, 0)
        return AgentMemoryStats(
            memory_count=sum(types.values()),
            memories_since=int(recent),
            errors_since=int(errors),
            memory_types=types,
        )

    async def health(self) -> StoreHealth:
        problem = await self.db.problem()
        return StoreHealth(backend=self.backend, healthy=problem is None, detail=problem)
