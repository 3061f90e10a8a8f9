"""Copy a deployment's SQLite metadata DB into the cluster's PostgreSQL
(``memtrace copy-metadata``, docs/deploy-cluster.md): orgs, API keys (their hashes: the keys
clients hold keep working), agents, sessions, Arc bindings, retention policies and the audit
log, ids kept. Rows whose id is
already in PostgreSQL are left as they are, so a rerun copies only what is new."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from memtrace.metadata.pg_ops import AGENT_COLUMNS, BINDING_COLUMNS, KEY_COLUMNS, SESSION_COLUMNS
from memtrace.storage.postgres.db import PgDatabase

# table -> columns, in the order rows may reference each other (orgs first)
TABLES: tuple[tuple[str, str], ...] = (
    ("orgs", "id, name, created_at"),
    ("api_keys", KEY_COLUMNS),
    ("agents", AGENT_COLUMNS),
    ("sessions", SESSION_COLUMNS),
    ("arc_bindings", BINDING_COLUMNS),
    ("retention_policies", "org_id, days, types, updated_at"),
    ("audit_log", "seq, org_id, at, actor, action, filter, count, detail"),
)
_CHUNK = 5000


async def copy_metadata(
    sqlite_conn: sqlite3.Connection,
    pg: PgDatabase,
    progress: Callable[[str], None] | None = None,
) -> dict[str, tuple[int, int]]:
    """Copy every table; returns ``table -> (rows read, rows added)``."""
    report: dict[str, tuple[int, int]] = {}
    for table, columns in TABLES:
        width = len(columns.split(","))
        placeholders = ", ".join(f"${i}" for i in range(1, width + 1))
        insert = (
            f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) "  # noqa: S608
            "ON CONFLICT DO NOTHING"
        )
        read = added = 0
        cursor = sqlite_conn.execute(f"SELECT {columns} FROM {table} ORDER BY rowid")  # noqa: S608
        while rows := cursor.fetchmany(_CHUNK):
            async with pg.transaction() as conn:
                before = await conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608
                await conn.executemany(insert, [tuple(row) for row in rows])
                after = await conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608
            read += len(rows)
            added += int(after) - int(before)
        report[table] = (read, added)
        if table == "audit_log":  # entries appended later number on after the copied ones
            async with pg.connection() as conn:
                await conn.execute(
                    "SELECT setval(pg_get_serial_sequence('audit_log', 'seq'), "
                    "greatest((SELECT max(seq) FROM audit_log), 1))"
                )
        if progress is not None:
            progress(f"{table}: {added} added of {read} ({read - added} already there)")
    return report
