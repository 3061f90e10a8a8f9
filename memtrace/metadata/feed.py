"""Feed cursors: how far each reader of an org has confirmed reading its change log
(docs/feed.md), on SQLite; :mod:`memtrace.metadata.postgres` runs the same statements on
PostgreSQL (``$n`` placeholders).

A cursor is the change position (an integer, opaque on the wire) up to which the reader has
confirmed. Confirming never moves it back; an auto-advancing read moves it only if nobody moved
it since the read began (compare and set), so two reads of the same reader at once never both
deliver the same memories.
"""

from __future__ import annotations

import sqlite3

GET = "SELECT position FROM feed_cursors WHERE org_id = ? AND reader = ?"
# Never backwards: an older confirm arriving late leaves the newer one.
CONFIRM = (
    "INSERT INTO feed_cursors (org_id, reader, position, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (org_id, reader) DO UPDATE SET position = excluded.position, "
    "updated_at = excluded.updated_at WHERE feed_cursors.position < excluded.position"
)
# Compare and set: only from the position the read started at (no row counts as 0). One
# statement, so PostgreSQL decides it atomically (two inserts racing: the second takes the
# ``ON CONFLICT`` path and sees the first's row).
ADVANCE = (
    "INSERT INTO feed_cursors (org_id, reader, position, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (org_id, reader) DO UPDATE SET position = excluded.position, "
    "updated_at = excluded.updated_at WHERE feed_cursors.position = ?"
)
UPDATE = (
    "UPDATE feed_cursors SET position = ?, updated_at = ? "
    "WHERE org_id = ? AND reader = ? AND position = ?"
)


def get_cursor(conn: sqlite3.Connection, org_id: str, reader: str) -> int | None:
    row = conn.execute(GET, (org_id, reader)).fetchone()
    return int(row[0]) if row else None


def confirm(conn: sqlite3.Connection, org_id: str, reader: str, position: int, now: int) -> int:
    """Move the cursor up to ``position`` (never back); returns where it is now."""
    conn.execute(CONFIRM, (org_id, reader, position, now))
    found = get_cursor(conn, org_id, reader)
    return position if found is None else found


def advance(
    conn: sqlite3.Connection, org_id: str, reader: str, expected: int, position: int, now: int
) -> bool:
    """Move the cursor from ``expected`` to ``position``; False when it is no longer at
    ``expected`` (another read of the same reader advanced it first). Runs in the writer's
    transaction, so the check and the write are one step."""
    if (get_cursor(conn, org_id, reader) or 0) != expected:
        return False
    conn.execute(ADVANCE, (org_id, reader, position, now, expected))
    return True
