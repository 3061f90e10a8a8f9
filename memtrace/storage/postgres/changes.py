"""The per-org change log on PostgreSQL: every memory an org commits gets a position that only
grows, in commit order (docs/feed.md), whichever replica or table (``memories``, the Arc
outbox ``arc_outbox``) took it.

A statement-level ``AFTER INSERT`` trigger numbers a statement's new rows from the org's row of
``change_counters`` and logs ``(org_id, seq, time, id)`` in ``memory_changes``. Updating the
counter row locks it until the transaction ends, so a second transaction of the same org waits
there until the first has committed (PostgreSQL makes a transaction visible before it releases
its locks): positions are taken in commit order, and a reader that saw position P never
misses a later commit below P. The lock is taken by the insert, the last statement but one of
a write (the agent counters follow, then the commit): an org's writes overlap in everything
but their inserts and commits; other orgs never wait (bench/README.md, "Feed positions on
PostgreSQL").

The counter's committed value is the head: every position at or below it is committed (or was
deleted since), which is what lets a read claim a range where nothing matched its filters.
"""

from __future__ import annotations

from memtrace.storage.postgres.db import Connection

# Idempotent, so that both components that log changes (memories, arc_outbox) may create it
# whichever migrates first.
CHANGE_LOG_DDL = """
CREATE TABLE IF NOT EXISTS memory_changes (
    org_id text NOT NULL,
    seq bigint NOT NULL,
    time bigint NOT NULL,
    id text NOT NULL,
    PRIMARY KEY (org_id, seq)
);
CREATE INDEX IF NOT EXISTS memory_changes_id ON memory_changes (org_id, id);
CREATE TABLE IF NOT EXISTS change_counters (
    org_id text PRIMARY KEY,
    last bigint NOT NULL
);
CREATE OR REPLACE FUNCTION memtrace_log_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    o text;
    n bigint;
    top bigint;
BEGIN
    FOR o, n IN SELECT org_id, count(*) FROM new_rows GROUP BY org_id ORDER BY org_id LOOP
        INSERT INTO change_counters AS c (org_id, last) VALUES (o, n)
        ON CONFLICT (org_id) DO UPDATE SET last = c.last + excluded.last
        RETURNING c.last INTO top;
        INSERT INTO memory_changes (org_id, seq, time, id)
        SELECT o, top - n + row_number() OVER (ORDER BY r.time, r.id), r.time, r.id
          FROM new_rows r WHERE r.org_id = o;
    END LOOP;
    RETURN NULL;
END $$;
"""


def log_changes_of(table: str) -> str:
    """DDL: log the inserts into ``table`` (a trusted constant), and the rows it already holds
    (numbered after whatever the org's counter has, in ``(time, id)`` order)."""
    return f"""
{CHANGE_LOG_DDL}
CREATE TRIGGER {table}_log_changes AFTER INSERT ON {table}
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION memtrace_log_changes();
WITH numbered AS (
    SELECT t.org_id, t.time, t.id,
           coalesce(c.last, 0) + row_number() OVER (PARTITION BY t.org_id ORDER BY t.time, t.id)
               AS seq
      FROM {table} t LEFT JOIN change_counters c ON c.org_id = t.org_id
), logged AS (
    INSERT INTO memory_changes (org_id, seq, time, id)
    SELECT org_id, seq, time, id FROM numbered RETURNING org_id, seq
)
INSERT INTO change_counters AS c (org_id, last)
SELECT org_id, max(seq) FROM logged GROUP BY org_id
ON CONFLICT (org_id) DO UPDATE SET last = greatest(c.last, excluded.last);
"""  # noqa: S608 (a constant table name)


async def head(conn: Connection, org_id: str) -> int:
    """The org's last committed position (0 before its first memory)."""
    value = await conn.fetchval("SELECT last FROM change_counters WHERE org_id = $1", org_id)
    return int(value or 0)


async def forget(conn: Connection, org_id: str, ids: list[str]) -> None:
    """Erased memories leave the log (their positions are never reused: the counter stays)."""
    if ids:
        await conn.execute(
            "DELETE FROM memory_changes WHERE org_id = $1 AND id = ANY($2::text[])", org_id, ids
        )


async def window(
    conn: Connection, org_id: str, after: int, high: int
) -> list[tuple[int, str, int]]:
    """``(seq, id, time)`` of the log in ``(after, high]``, in order."""
    rows = await conn.fetch(
        "SELECT seq, id, time FROM memory_changes WHERE org_id = $1 AND seq > $2 AND seq <= $3 "
        "ORDER BY seq",
        org_id,
        after,
        high,
    )
    return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]
