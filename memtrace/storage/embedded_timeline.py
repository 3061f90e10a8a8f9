"""Timelines on the embedded store: SQL ``GROUP BY`` over hourly counts and the time index.

Counting a month of a busy org row by row cannot be fast: at 1M memories a ``GROUP BY`` over
the rows reads every row of the window. So the store keeps ``timeline_counts``: per hour (the
hour's index since the epoch), how many memories it holds per event type, memory type, agent
and tag (the totals are the event types' sum: every memory has exactly one). The counts are
updated in the transaction that writes or deletes the memories (:func:`count_rows`), so they
always agree with the rows. Four upserts per memory at most (plus one per tag): a write of
memories of this hour touches a handful of rows; a backfill spread over a month touches
about four per memory (bench/README.md, "Timeline").

A timeline whose filters the counts can answer (none, or one of agent, memory type(s), event
type(s) or a single tag, grouped by nothing or by that same field) and whose buckets are whole
hours reads the counts for the window's whole hours and the rows only for the partial hours at
its two ends; any other timeline groups the rows themselves (time index, bucket arithmetic in
integers). bench/README.md, "Timeline", has the figures.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from operator import itemgetter
from typing import Any

import orjson

from memtrace.storage.base import MemoryQuery, TimelineBucket, TimelineGroup
from memtrace.storage.timeline import BucketCounts, origin_of

HOUR_US = 3_600_000_000
# The hourly counts: created (and filled from the rows already stored) by the store's schema
# upgrade to version 4 (3 is the change sequence of the feed and the stream).
ROLLUP_DDL = """
CREATE TABLE timeline_counts (
    dim TEXT NOT NULL,
    hour INTEGER NOT NULL,
    value TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (dim, hour, value)
) WITHOUT ROWID;
"""
_BACKFILL = (
    *(
        "INSERT INTO timeline_counts (dim, hour, value, n) "  # noqa: S608 (fixed column names)
        f"SELECT '{column}', time / 3600000000, {column}, count(*) FROM memories GROUP BY 2, 3"
        for column in ("event_type", "memory_type", "agent_id")
    ),
    "INSERT INTO timeline_counts (dim, hour, value, n) "
    "SELECT 'tag', time / 3600000000, tag, count(*) FROM memory_tags GROUP BY 2, 3",
)
_ADD = (
    "INSERT INTO timeline_counts (dim, hour, value, n) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (dim, hour, value) DO UPDATE SET n = n + excluded.n"
)
_SUBTRACT = "UPDATE timeline_counts SET n = n - ? WHERE dim = ? AND hour = ? AND value = ?"
_DROP_EMPTY = "DELETE FROM timeline_counts WHERE dim = ? AND hour = ? AND value = ? AND n <= 0"

Key = tuple[str, int, str]
Where = Callable[[MemoryQuery], tuple[str, list[Any]]]  # a query's WHERE clause (alias m)
_COLUMN_DIMS = ("event_type", "memory_type", "agent_id")


def create_rollup(conn: sqlite3.Connection) -> None:
    """Schema upgrade: the hourly counts table, filled from the stored memories (rebuilt
    whole if a file marked older already has one)."""
    conn.execute("DROP TABLE IF EXISTS timeline_counts")
    conn.execute(ROLLUP_DDL)
    for statement in _BACKFILL:
        conn.execute(statement)


def count_rows(
    rows: Sequence[Sequence[Any]],
    positions: tuple[int, int, int, int],
    tag_rows: Iterable[tuple[str, int]],
) -> Counter[Key]:
    """The hourly counts of ``rows`` (their time, event type, memory type and agent at
    ``positions``) and of their (tag, time) rows. Counted per column with ``Counter`` over
    ``zip`` (C loops): this runs in the writer for every memory stored."""
    at, event_type, memory_type, agent_id = (list(map(itemgetter(i), rows)) for i in positions)
    hours = [t // HOUR_US for t in at]
    counts: Counter[Key] = Counter()
    for dim, values in zip(_COLUMN_DIMS, (event_type, memory_type, agent_id), strict=True):
        for (hour, value), n in Counter(zip(hours, values, strict=True)).items():
            counts[dim, hour, value] = n
    for (tag, hour), n in Counter((tag, t // HOUR_US) for tag, t in tag_rows).items():
        counts["tag", hour, tag] = n
    return counts


def add_counts(conn: sqlite3.Connection, counts: Counter[Key]) -> None:
    # in key order: neighbouring upserts land on the same B-tree pages
    if counts:
        conn.executemany(_ADD, [(*key, n) for key, n in sorted(counts.items())])


def subtract_counts(conn: sqlite3.Connection, counts: Counter[Key]) -> None:
    keys = list(counts)
    conn.executemany(_SUBTRACT, [(counts[key], *key) for key in keys])
    conn.executemany(_DROP_EMPTY, keys)


def rollup_plan(
    q: MemoryQuery, group_by: TimelineGroup | None
) -> tuple[str, tuple[str, ...]] | None:
    """The dimension and values of the hourly counts that answer ``q``, or ``None`` when
    they cannot (a filter they do not keep, or a grouping across two dimensions)."""
    if q.session_id is not None or q.min_importance is not None or q.content_contains:
        return None
    if q.after is not None:
        return None
    filters: dict[str, tuple[str, ...]] = {}
    if q.agent_id is not None:
        filters["agent_id"] = (q.agent_id,)
    if q.memory_types:
        filters["memory_type"] = q.memory_types
    if q.event_types:
        filters["event_type"] = q.event_types
    if q.tags:
        if len(q.tags) > 1:
            return None
        filters["tag"] = q.tags
    if not filters:
        return group_by or "all", ()
    if len(filters) > 1:
        return None
    ((dim, values),) = filters.items()
    if group_by is None or (group_by == dim and dim != "tag"):
        return dim, tuple(dict.fromkeys(values))
    return None


def timeline(
    conn: sqlite3.Connection,
    q: MemoryQuery,
    width: int,
    group_by: TimelineGroup | None,
    where: Where,
) -> list[TimelineBucket]:
    """The timeline of ``q`` (``where(q)`` gives the rows' ``WHERE`` clause and parameters)."""
    assert q.since is not None and q.until is not None
    counts = BucketCounts(origin_of(q.since, width), width)
    plan = rollup_plan(q, group_by) if width % HOUR_US == 0 else None
    first_hour = -(-q.since // HOUR_US)  # the window's first whole hour
    end_hour = q.until // HOUR_US
    if plan is None or first_hour >= end_hour:
        _from_rows(conn, q, counts, group_by, where)
        return counts.buckets()
    dim, values = plan
    hours = (first_hour, end_hour)
    if dim == "all":  # every memory has exactly one event type: their counts add up to all
        _from_rollup(conn, counts, "event_type", (), hours, total=True, grouped=False)
    elif dim == "tag" and group_by == "tag":  # a memory counts once in all, once per tag
        _from_rollup(conn, counts, "event_type", (), hours, total=True, grouped=False)
        _from_rollup(conn, counts, "tag", (), hours, total=False, grouped=True)
    else:
        _from_rollup(conn, counts, dim, values, hours, total=True, grouped=group_by is not None)
    if q.since < first_hour * HOUR_US:
        _from_rows(conn, replace(q, until=first_hour * HOUR_US), counts, group_by, where)
    if end_hour * HOUR_US < q.until:
        _from_rows(conn, replace(q, since=end_hour * HOUR_US), counts, group_by, where)
    return counts.buckets()


def _from_rollup(
    conn: sqlite3.Connection,
    counts: BucketCounts,
    dim: str,
    values: tuple[str, ...],
    hours: tuple[int, int],
    *,
    total: bool,
    grouped: bool,
) -> None:
    """Add the hourly counts of ``dim`` (only ``values``, when given) for whole hours
    ``hours[0] <= hour < hours[1]``."""
    params: list[Any] = [counts.origin // HOUR_US, counts.width // HOUR_US, dim, *hours]
    inner = (
        "SELECT (hour - ?) / ? AS b, value, sum(n) AS n FROM timeline_counts "
        "WHERE dim = ? AND hour >= ? AND hour < ?"
    )
    if values:
        inner += f" AND value IN ({', '.join('?' * len(values))})"
        params.extend(values)
    # One row per bucket, its groups as one JSON object: the rows of 720 hours x 100 agents
    # are summed and shaped in SQLite, not one by one in Python (bench/README.md, "Timeline").
    groups = "json_group_object(value, n)" if grouped else "NULL"
    sql = f"SELECT b, sum(n), {groups} FROM ({inner} GROUP BY 1, 2) GROUP BY b"  # noqa: S608
    for index, n, by_value in conn.execute(sql, params):
        if total:
            counts.total(index, n)
        if grouped:
            counts.groups_of(index, orjson.loads(by_value))


def _from_rows(
    conn: sqlite3.Connection,
    q: MemoryQuery,
    counts: BucketCounts,
    group_by: TimelineGroup | None,
    where: Where,
) -> None:
    """``GROUP BY`` over the rows of the window (by tag, driven by the tag rows)."""
    clause, params = where(q)
    bucket = "(m.time - ?) / ?"
    head = [counts.origin, counts.width]
    if group_by is None or group_by == "tag":
        sql = f"SELECT {bucket}, count(*) FROM memories m WHERE {clause} GROUP BY 1"  # noqa: S608
        for index, n in conn.execute(sql, [*head, *params]):
            counts.total(index, n)
    if group_by in _COLUMN_DIMS:
        sql = (
            f"SELECT {bucket}, m.{group_by}, count(*) FROM memories m "  # noqa: S608
            f"WHERE {clause} GROUP BY 1, 2"
        )
        for index, value, n in conn.execute(sql, [*head, *params]):
            counts.total(index, n)
            counts.group(index, value, n)
    elif group_by == "tag":
        assert q.since is not None and q.until is not None
        # Each tag present in the window (the hourly counts name them) is a range of the
        # (tag, time) index: no scan of every tag row.
        sql = (
            "SELECT (t.time - ?) / ?, t.tag, count(*) FROM memory_tags t "  # noqa: S608
            "CROSS JOIN memories m ON m.rowid = t.mem "
            "WHERE t.tag IN (SELECT DISTINCT value FROM timeline_counts "
            "WHERE dim = 'tag' AND hour >= ? AND hour <= ?) "
            f"AND t.time >= ? AND t.time < ? AND {clause} GROUP BY 1, 2"
        )
        bounds = [q.since // HOUR_US, (q.until - 1) // HOUR_US, q.since, q.until]
        for index, value, n in conn.execute(sql, [*head, *bounds, *params]):
            counts.group(index, value, n)
