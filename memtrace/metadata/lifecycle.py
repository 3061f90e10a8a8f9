"""Retention policies, the audit log and session deletion in the metadata DB: functions on a
connection, shared by the server (:mod:`memtrace.metadata.catalog`) and the CLI."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from memtrace.domain.lifecycle import AuditEntry, RetentionPolicy


def put_retention(conn: sqlite3.Connection, org_id: str, policy: RetentionPolicy, now: int) -> None:
    conn.execute(
        "INSERT INTO retention_policies (org_id, days, types, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (org_id) DO UPDATE SET days = excluded.days, types = excluded.types, "
        "updated_at = excluded.updated_at",
        (org_id, policy.days, orjson.dumps(dict(policy.types)).decode(), now),
    )


def get_retention(conn: sqlite3.Connection, org_id: str) -> RetentionPolicy | None:
    row = conn.execute(
        "SELECT days, types FROM retention_policies WHERE org_id = ?", (org_id,)
    ).fetchone()
    return _policy(row) if row else None


def list_retention(conn: sqlite3.Connection) -> dict[str, RetentionPolicy]:
    rows = conn.execute("SELECT org_id, days, types FROM retention_policies ORDER BY org_id")
    return {str(row[0]): _policy(row[1:]) for row in rows}


def delete_retention(conn: sqlite3.Connection, org_id: str) -> bool:
    return conn.execute("DELETE FROM retention_policies WHERE org_id = ?", (org_id,)).rowcount > 0


def _policy(row: Any) -> RetentionPolicy:
    return RetentionPolicy(row[0], orjson.loads(row[1]) if row[1] else {})


def append_audit(conn: sqlite3.Connection, entry: AuditEntry) -> None:
    conn.execute(
        "INSERT INTO audit_log (org_id, at, actor, action, filter, count, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        entry.row(),
    )


def list_audit(
    conn: sqlite3.Connection, org_id: str, *, limit: int = 100, since: int | None = None
) -> list[AuditEntry]:
    """The org's entries, newest first."""
    rows = conn.execute(
        "SELECT seq, org_id, at, actor, action, filter, count, detail FROM audit_log "
        "WHERE org_id = ? AND at >= ? ORDER BY at DESC, seq DESC LIMIT ?",
        (org_id, since if since is not None else 0, limit),
    )
    return [
        AuditEntry(
            org_id=row[1],
            at=row[2],
            actor=row[3],
            action=row[4],
            filter=orjson.loads(row[5]) if row[5] else None,
            count=row[6],
            detail=row[7],
            seq=row[0],
        )
        for row in rows
    ]


def delete_session(conn: sqlite3.Connection, org_id: str, session_id: str) -> bool:
    """Remove one session of the org; False when it does not exist there."""
    cursor = conn.execute("DELETE FROM sessions WHERE org_id = ? AND id = ?", (org_id, session_id))
    return cursor.rowcount > 0
