"""The Arc outbox of an org in the cluster's PostgreSQL: shared by every replica.

Same rows, states and rules as the SQLite :class:`~memtrace.storage.arc.outbox.Outbox` (pending
-> shipped -> deleted once a query to Arc shows the row; shipped rows Arc still lacks after the
grace go back to pending; rows Arc refuses are parked; the dedup index is pruned by memory time
*and* insertion time), in tables keyed by ``org_id``. What changes is who ships:

- **any replica**: :meth:`PgOutbox.pending_batch` *claims* the oldest pending rows with
  ``FOR UPDATE SKIP LOCKED`` and a committed lease (``lease_owner``, ``lease_until`` on the
  database's clock). Other replicas skip claimed rows, so each row is in one replica's batch;
- **a dead replica's rows are shipped by the others**: a claim is honoured only while its
  owner's process holds its presence lock (:attr:`PgDatabase.presence_key`, released by
  PostgreSQL when the owner's connection closes: kill -9, OOM, a vanished host once TCP
  keepalives notice) and its lease (``postgres.lease_s``) has not run out (a hung owner);
- **exact dedup across replicas**: appends lock the keys' stripes of ``dedup_stripes``, as the
  PostgreSQL memory store does, before reading the window index.

Delivery stays at-least-once (a replica killed between Arc's 204 and marking the rows ships
nothing more; another replica resends them); reads deduplicate by id.
"""

from __future__ import annotations

from collections.abc import Sequence

from memtrace.domain.memory import MemoryRecord, WriteOutcome
from memtrace.storage.arc.outbox import OutboxCounts, ParkedRow, ShippedRow
from memtrace.storage.base import MemoryQuery, NewMemory
from memtrace.storage.postgres import changes as change_log
from memtrace.storage.postgres import sql as pg_sql
from memtrace.storage.postgres.changes import log_changes_of
from memtrace.storage.postgres.db import PRESENCE_CLASS, Connection, PgDatabase
from memtrace.storage.postgres.schema import (
    COLUMN_LIST,
    COLUMNS,
    column_ddl,
    encode_text,
    record_to_row,
    row_to_record,
)
from memtrace.storage.postgres.store import ensure_stripes, locked_window, org_state
from memtrace.storage.postgres.vacuum import Vacuum
from memtrace.storage.rows import admit

_V1 = f"""
CREATE TABLE arc_outbox (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
{column_ddl()},
    enqueued_at bigint NOT NULL,
    shipped_at bigint,
    parked_at bigint,
    park_reason text,
    lease_owner bigint,
    lease_until bigint
);
CREATE UNIQUE INDEX arc_outbox_id ON arc_outbox (org_id, id);
CREATE INDEX arc_outbox_pending ON arc_outbox (org_id, seq)
    WHERE shipped_at IS NULL AND parked_at IS NULL;
CREATE INDEX arc_outbox_shipped ON arc_outbox (org_id, shipped_at) WHERE shipped_at IS NOT NULL;
CREATE INDEX arc_outbox_time ON arc_outbox (org_id, time);
CREATE TABLE arc_dedup_index (
    org_id text NOT NULL,
    dedup_key text NOT NULL,
    time bigint NOT NULL,
    id text NOT NULL,
    written_at bigint NOT NULL,
    PRIMARY KEY (org_id, dedup_key, time, id)
);
CREATE INDEX arc_dedup_index_time ON arc_dedup_index (org_id, time);
"""
# v2: the change log of the feed and the stream (memtrace.storage.postgres.changes)
MIGRATIONS: tuple[str, ...] = (_V1, log_changes_of("arc_outbox"))

_NOW = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"  # the database's clock, µs
_PENDING = "shipped_at IS NULL AND parked_at IS NULL"
# Claim the oldest pending rows whose claim (if any) is void: ours, expired, or its owner's
# presence lock is gone (the owner's connection closed).
_CLAIM = f"""
WITH live AS (
    SELECT coalesce(array_agg(objid::bigint), '{{}}') AS owners FROM pg_locks
     WHERE locktype = 'advisory' AND classid = {PRESENCE_CLASS} AND objsubid = 2 AND granted
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
), claimed AS (
    SELECT seq FROM arc_outbox
     WHERE org_id = $1 AND {_PENDING}
       AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < {_NOW}
            OR NOT lease_owner = ANY((SELECT owners FROM live)::bigint[]))
     ORDER BY seq LIMIT $3
     FOR UPDATE SKIP LOCKED
)
UPDATE arc_outbox o SET lease_owner = $2, lease_until = {_NOW} + $4
  FROM claimed WHERE o.seq = claimed.seq
RETURNING o.seq, o.enqueued_at, {", ".join("o." + c for c in COLUMNS)}
"""  # noqa: S608 (constants only)
_REMEMBER = (
    "INSERT INTO arc_dedup_index (org_id, dedup_key, time, id, written_at) "
    "SELECT $1, k, t, i, $5 FROM unnest($2::text[], $3::bigint[], $4::text[]) AS u(k, t, i) "
    "ON CONFLICT (org_id, dedup_key, time, id) DO UPDATE SET written_at = excluded.written_at"
)


async def migrate(db: PgDatabase) -> None:
    await db.migrate("arc_outbox", MIGRATIONS)


async def has_rows(db: PgDatabase, org_id: str) -> bool:
    async with db.connection() as conn:
        found = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM arc_outbox WHERE org_id = $1)", org_id
        )
    return bool(found)


async def _remember(
    conn: Connection, org_id: str, entries: Sequence[tuple[str, int, str]], now: int
) -> None:
    if entries:
        await conn.execute(
            _REMEMBER,
            org_id,
            [encode_text(k) for k, _, _ in entries],
            [t for _, t, _ in entries],
            [i for _, _, i in entries],
            now,
        )


class PgOutbox:
    """One org's outbox rows in PostgreSQL (the interface of the SQLite outbox)."""

    def __init__(self, db: PgDatabase, org_id: str) -> None:
        self.db = db
        self.org_id = org_id

    async def open(self) -> None:
        async with self.db.connection() as conn:
            await ensure_stripes(conn, self.org_id)

    async def close(self) -> None:
        """Give back this replica's unfinished claims so another replica ships them now."""
        async with self.db.connection() as conn:
            await conn.execute(
                "UPDATE arc_outbox SET lease_owner = NULL, lease_until = NULL "  # noqa: S608
                f"WHERE org_id = $1 AND lease_owner = $2 AND {_PENDING}",
                self.org_id,
                self.db.presence_key,
            )

    # -- writes -------------------------------------------------------------------------------

    async def append(
        self,
        items: Sequence[NewMemory],
        dedup_window_us: int | None,
        now: int,
        known: Sequence[tuple[str, int, str]] = (),
    ) -> list[WriteOutcome]:
        async with self.db.transaction() as conn:
            dedup = None
            if dedup_window_us is not None and items:
                dedup = await locked_window(
                    conn, self.org_id, "arc_dedup_index", items, dedup_window_us, known
                )
            outcomes, records = admit(items, dedup, self.org_id)
            if records:
                await conn.copy_records_to_table(
                    "arc_outbox",
                    records=[(*record_to_row(r), now) for r in records],
                    columns=[*COLUMNS, "enqueued_at"],
                )
                await _remember(
                    conn, self.org_id, [(r.dedup_key, r.time, r.id) for r in records], now
                )
        return outcomes

    async def add_parked(self, records: Sequence[MemoryRecord], reason: str, now: int) -> None:
        async with self.db.connection() as conn:
            await conn.executemany(
                f"INSERT INTO arc_outbox ({COLUMN_LIST}, enqueued_at, parked_at, park_reason) "  # noqa: S608
                f"VALUES ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))}, "
                f"${len(COLUMNS) + 1}, ${len(COLUMNS) + 1}, ${len(COLUMNS) + 2}) "
                "ON CONFLICT (org_id, id) DO NOTHING",
                [(*record_to_row(r), now, reason[:500]) for r in records],
            )

    async def remember_keys(self, entries: Sequence[tuple[str, int, str]], now: int) -> None:
        async with self.db.connection() as conn:
            await _remember(conn, self.org_id, entries, now)

    async def _update(self, sql: str, *args: object) -> str:
        async with self.db.connection() as conn:
            return str(await conn.execute(sql, self.org_id, *args))

    async def mark_shipped(self, seqs: Sequence[int], now: int) -> None:
        await self._update(
            "UPDATE arc_outbox SET shipped_at = $3, lease_owner = NULL, lease_until = NULL "
            "WHERE org_id = $1 AND seq = ANY($2::bigint[])",
            list(seqs),
            now,
        )

    async def settle(self, verified: Sequence[int], lost: Sequence[int]) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "DELETE FROM arc_outbox WHERE org_id = $1 AND seq = ANY($2::bigint[])",
                self.org_id,
                list(verified),
            )
            await conn.execute(
                "UPDATE arc_outbox SET shipped_at = NULL WHERE org_id = $1 "
                "AND seq = ANY($2::bigint[]) AND shipped_at IS NOT NULL",
                self.org_id,
                list(lost),
            )

    async def park(self, refused: Sequence[tuple[int, str]], now: int) -> None:
        async with self.db.connection() as conn:
            await conn.executemany(
                "UPDATE arc_outbox SET parked_at = $2, park_reason = $3, lease_owner = NULL, "
                "lease_until = NULL WHERE org_id = $1 AND seq = $4",
                [(self.org_id, now, reason[:500], seq) for seq, reason in refused],
            )

    async def unpark(self) -> int:
        status = await self._update(
            "UPDATE arc_outbox SET parked_at = NULL, park_reason = NULL, shipped_at = NULL "
            "WHERE org_id = $1 AND parked_at IS NOT NULL"
        )
        return int(status.split()[-1])

    async def delete(self, seqs: Sequence[int]) -> None:
        await self._update(
            "DELETE FROM arc_outbox WHERE org_id = $1 AND seq = ANY($2::bigint[])", list(seqs)
        )

    async def prune_keys(self, time_before: int, written_before: int) -> None:
        await self._update(
            "DELETE FROM arc_dedup_index WHERE org_id = $1 AND time < $2 AND written_at < $3",
            time_before,
            written_before,
        )

    async def set_state(self, name: str, value: str) -> None:
        await org_state(self.db, self.org_id, f"arc:{name}")[1](value)

    # -- reads --------------------------------------------------------------------------------

    async def get_state(self, name: str) -> str | None:
        return await org_state(self.db, self.org_id, f"arc:{name}")[0]()

    async def pending_batch(self, limit: int) -> list[tuple[int, int, MemoryRecord]]:
        """Claim the oldest unclaimed pending rows for this replica (see the module doc)."""
        lease_us = int(self.db.settings.lease_s * 1_000_000)
        async with self.db.connection() as conn:
            rows = await conn.fetch(_CLAIM, self.org_id, self.db.presence_key, limit, lease_us)
        batch = [(int(row[0]), int(row[1]), row_to_record(row[2:])) for row in rows]
        batch.sort(key=lambda entry: entry[0])
        return batch

    async def shipped(self, until: int, limit: int) -> list[ShippedRow]:
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT seq, id, time, shipped_at FROM arc_outbox WHERE org_id = $1 "
                "AND shipped_at IS NOT NULL AND shipped_at <= $2 ORDER BY shipped_at LIMIT $3",
                self.org_id,
                until,
                limit,
            )
        return [ShippedRow(*row) for row in rows]

    async def rows(self, after_seq: int, limit: int) -> list[tuple[int, MemoryRecord]]:
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                f"SELECT seq, {COLUMN_LIST} FROM arc_outbox WHERE org_id = $1 AND seq > $2 "  # noqa: S608
                "ORDER BY seq LIMIT $3",
                self.org_id,
                after_seq,
                limit,
            )
        return [(int(row[0]), row_to_record(row[1:])) for row in rows]

    async def parked(self, limit: int) -> list[ParkedRow]:
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT id, time, agent_id, parked_at, park_reason FROM arc_outbox "
                "WHERE org_id = $1 AND parked_at IS NOT NULL ORDER BY seq LIMIT $2",
                self.org_id,
                limit,
            )
        return [ParkedRow(*row) for row in rows]

    async def overlay(self, q: MemoryQuery, limit: int | None = None) -> list[MemoryRecord]:
        p = pg_sql.Params()
        where = [f"org_id = {p(self.org_id)}"]
        for column, value in (("agent_id", q.agent_id), ("session_id", q.session_id)):
            if value is not None:
                where.append(f"{column} = {p(value)}")
        for column, values in (("memory_type", q.memory_types), ("event_type", q.event_types)):
            if values:
                where.append(f"{column} = ANY({p(list(values))}::text[])")
        if q.since is not None:
            where.append(f"time >= {p(q.since)}")
        if q.until is not None:
            where.append(f"time < {p(q.until)}")
        if q.after is not None:
            op = ">" if q.order == "asc" else "<"
            where.append(f"(time, id) {op} ({p(q.after[0])}, {p(q.after[1])})")
        sql = f"SELECT {COLUMN_LIST} FROM arc_outbox WHERE {' AND '.join(where)}"  # noqa: S608
        if limit is not None:
            direction = "DESC" if q.order == "desc" else "ASC"
            sql += f" ORDER BY time {direction}, id {direction} LIMIT {p(limit)}"
        async with self.db.connection() as conn:
            return [row_to_record(row) for row in await conn.fetch(sql, *p.values)]

    async def older_than(self, cutoff: int) -> list[tuple[str, bool]]:
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT id, shipped_at IS NOT NULL FROM arc_outbox WHERE org_id = $1 AND time < $2",
                self.org_id,
                cutoff,
            )
        return [(str(i), bool(s)) for i, s in rows]

    async def held(self, ids: Sequence[str]) -> dict[str, bool]:
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT id, shipped_at IS NOT NULL FROM arc_outbox "
                "WHERE org_id = $1 AND id = ANY($2::text[])",
                self.org_id,
                list(ids),
            )
        return {str(i): bool(s) for i, s in rows}

    async def remove(self, ids: Sequence[str], keys: Sequence[tuple[str, int, str]]) -> list[str]:
        async with self.db.transaction() as conn:
            gone = await conn.fetch(
                "DELETE FROM arc_outbox WHERE org_id = $1 AND id = ANY($2::text[]) "
                "RETURNING dedup_key, time, id",
                self.org_id,
                list(ids),
            )
            entries = [(str(k), int(t), str(i)) for k, t, i in gone] + [
                (encode_text(k), t, i) for k, t, i in keys
            ]
            if entries:
                await conn.execute(
                    "DELETE FROM arc_dedup_index d USING unnest($2::text[], $3::bigint[], "
                    "$4::text[]) AS u(k, t, i) WHERE d.org_id = $1 AND d.dedup_key = u.k "
                    "AND d.time = u.t AND d.id = u.i",
                    self.org_id,
                    [k for k, _, _ in entries],
                    [t for _, t, _ in entries],
                    [i for _, _, i in entries],
                )
            erased = {*ids, *(memory_id for _, _, memory_id in keys)}
            await change_log.forget(conn, self.org_id, sorted(erased))
        return [str(row[2]) for row in gone]

    def purger(self) -> Vacuum:
        return Vacuum(self.db, ("arc_outbox", "arc_dedup_index"))

    async def get(self, memory_id: str) -> MemoryRecord | None:
        async with self.db.connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {COLUMN_LIST} FROM arc_outbox WHERE org_id = $1 AND id = $2",  # noqa: S608
                self.org_id,
                memory_id,
            )
        return row_to_record(row) if row else None

    async def changes(self, after: int, scan: int) -> tuple[list[tuple[int, str, int]], int]:
        async with self.db.connection() as conn:
            head = await change_log.head(conn, self.org_id)
            high = min(after + scan, head)
            entries = (
                await change_log.window(conn, self.org_id, after, high) if high > after else []
            )
        return entries, head

    async def change_head(self) -> int:
        async with self.db.connection() as conn:
            return await change_log.head(conn, self.org_id)

    async def records(self, ids: Sequence[str]) -> dict[str, MemoryRecord]:
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {COLUMN_LIST} FROM arc_outbox "  # noqa: S608 (constants only)
                "WHERE org_id = $1 AND id = ANY($2::text[])",
                self.org_id,
                list(ids),
            )
        return {r.id: r for r in (row_to_record(row) for row in rows)}

    async def pending_count(self) -> int:
        async with self.db.connection() as conn:
            return int(
                await conn.fetchval(
                    f"SELECT count(*) FROM arc_outbox WHERE org_id = $1 AND {_PENDING}",  # noqa: S608
                    self.org_id,
                )
            )

    async def counts(self) -> OutboxCounts:
        async with self.db.connection() as conn:
            row = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE shipped_at IS NULL AND parked_at IS NULL), "
                "count(*) FILTER (WHERE shipped_at IS NOT NULL AND parked_at IS NULL), "
                "count(*) FILTER (WHERE parked_at IS NOT NULL) FROM arc_outbox "
                "WHERE org_id = $1",
                self.org_id,
            )
        return OutboxCounts(*(int(v) for v in row)) if row else OutboxCounts()
