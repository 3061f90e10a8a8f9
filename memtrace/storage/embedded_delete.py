"""Deleting memories from the embedded store's tables (a job of its writer transaction).

A memory lives in five places: its ``memories`` row, its ``memory_tags`` rows, its share of
``agent_type_counts`` and of ``timeline_counts``, and its FTS entry. They go together, in one
savepoint; completing the erasure in the files (FTS compaction, WAL truncation) is
:mod:`memtrace.storage.erase`'s.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from memtrace.storage.embedded_timeline import count_rows, subtract_counts

IDS_PER_STATEMENT = 500  # "id IN (…)" chunks, far below SQLite's 32766 variables


def delete_rows(
    conn: sqlite3.Connection,
    org_id: str,
    ids: Sequence[str],
    *,
    indexed_below: int | None,
    indexed_as: Callable[[str], str],
) -> list[str]:
    """Delete the org's memories with these ids; returns the ids that existed.

    ``indexed_below``: rows with a rowid from there up belong to the current write group and
    are not in the FTS index yet (it is filled just before the commit), so they get no FTS
    delete; ``None`` means every row is indexed. ``indexed_as``: the text the index was given
    for a content (the delete must name exactly those terms).
    """
    found: list[tuple[Any, ...]] = []
    for start in range(0, len(ids), IDS_PER_STATEMENT):
        chunk = list(ids[start : start + IDS_PER_STATEMENT])
        found += conn.execute(
            "SELECT rowid, id, time, agent_id, memory_type, tags, content, event_type "  # noqa: S608
            "FROM memories "
            f"WHERE org_id = ? AND id IN ({', '.join('?' * len(chunk))})",
            [org_id, *chunk],
        ).fetchall()
    if not found:
        return []
    # A contentless FTS5 table deletes an entry given the content it indexed.
    conn.executemany(
        "INSERT INTO memories_fts (memories_fts, rowid, content) VALUES ('delete', ?, ?)",
        [
            (row[0], indexed_as(row[6]))
            for row in found
            if indexed_below is None or row[0] < indexed_below
        ],
    )
    conn.executemany(
        "DELETE FROM memory_tags WHERE tag = ? AND time = ? AND mem = ?",
        [(tag, row[2], row[0]) for row in found if row[5] for tag in row[5].split(",")],
    )
    counts = Counter((row[3], row[4]) for row in found)
    conn.executemany(
        "UPDATE agent_type_counts SET n = n - ? WHERE agent_id = ? AND memory_type = ?",
        [(n, agent, mtype) for (agent, mtype), n in counts.items()],
    )
    conn.execute("DELETE FROM agent_type_counts WHERE n <= 0")
    tag_rows = [(tag, row[2]) for row in found if row[5] for tag in row[5].split(",")]
    subtract_counts(conn, count_rows(found, (2, 7, 4, 3), tag_rows))
    conn.executemany("DELETE FROM memories WHERE rowid = ?", [(row[0],) for row in found])
    return [str(row[1]) for row in found]
