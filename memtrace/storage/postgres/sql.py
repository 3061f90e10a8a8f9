"""SQL for :class:`~memtrace.storage.base.MemoryQuery` on PostgreSQL; values are always bound
parameters (``$n``), never inlined.

Content search is exact by Python's ``str.lower`` (``strpos(lower(content), needle)``, with the
ICU root collation where the server has it). For an ASCII needle of 3+ characters an
``ILIKE`` on the same needle comes first: it is what the trigram GIN index answers, and it
matches a superset of the rows (ASCII letters fold the same in every collation).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from memtrace.domain.models import OUTCOME_EVENT
from memtrace.storage.base import MemoryQuery, TimelineGroup
from memtrace.storage.postgres.schema import COLUMN_LIST, encode_text


def like_escape(text: str) -> str:
    """``text`` as a literal part of a LIKE pattern (default escape character ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Params:
    """Collects bound values and hands out their ``$n`` placeholders."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def where_clause(q: MemoryQuery, p: Params, *, collation: str | None) -> str:
    clauses = [f"org_id = {p(q.org_id)}"]
    if q.agent_id is not None:
        clauses.append(f"agent_id = {p(q.agent_id)}")
    if q.session_id is not None:
        clauses.append(f"session_id = {p(q.session_id)}")
    if q.memory_types:
        clauses.append(f"memory_type = ANY({p(list(q.memory_types))}::text[])")
    if q.event_types == (OUTCOME_EVENT,):  # a literal: the partial memories_outcomes serves it
        clauses.append(f"event_type = '{OUTCOME_EVENT}'")
    elif q.event_types:
        clauses.append(f"event_type = ANY({p(list(q.event_types))}::text[])")
    if q.since is not None:
        clauses.append(f"time >= {p(q.since)}")
    if q.until is not None:
        clauses.append(f"time < {p(q.until)}")
    if q.after is not None:  # a position (cursor): keyset on the primary key's (time, id)
        op, bound = (">", ">=") if q.order == "asc" else ("<", "<=")
        at, memory_id = q.after
        # the plain time bound lets the planner prune the partitions before the position
        clauses.append(f"time {bound} {p(at)} AND (time, id) {op} ({p(at)}, {p(memory_id)})")
    if q.min_importance is not None:
        clauses.append(f"importance >= {p(float(q.min_importance))}")
    if q.tags:
        clauses.append(f"tags @> {p(list(q.tags))}::text[]")
    if q.content_contains:
        needle = encode_text(q.content_contains.lower())
        if len(needle) >= 3 and needle.isascii():
            clauses.append(f"content ILIKE {p('%' + like_escape(needle) + '%')}")
        lowered = f'lower(content COLLATE "{collation}")' if collation else "lower(content)"
        clauses.append(f"strpos({lowered}, {p(needle)}) > 0")
    return " AND ".join(clauses)


def select_sql(q: MemoryQuery, *, collation: str | None) -> tuple[str, list[Any]]:
    p = Params()
    where = where_clause(q, p, collation=collation)
    direction = "DESC" if q.order == "desc" else "ASC"
    sql = (
        f"SELECT {COLUMN_LIST} FROM memories WHERE {where} "  # noqa: S608 (placeholders only)
        f"ORDER BY time {direction}, id {direction} LIMIT {p(q.limit)} OFFSET {p(q.offset)}"
    )
    return sql, p.values


def count_sql(q: MemoryQuery, *, collation: str | None) -> tuple[str, list[Any]]:
    p = Params()
    where = where_clause(q, p, collation=collation)
    return f"SELECT count(*) FROM memories WHERE {where}", p.values  # noqa: S608


def changes_sql(
    q: MemoryQuery, after: int, high: int, limit: int, *, collation: str | None
) -> tuple[str, list[Any]]:
    """Memories of the change log's ``(after, high]`` matching ``q``, in commit order, each
    with its position first: the log's range drives, each entry finds its row by the primary
    key ``(org_id, time, id)`` (erased memories are gone from both)."""
    p = Params()
    where = where_clause(replace(q, after=None), p, collation=collation)
    sql = (
        f"SELECT c.seq, f.* FROM memory_changes c "  # noqa: S608 (placeholders only)
        f"JOIN (SELECT {COLUMN_LIST} FROM memories WHERE {where}) f "
        "ON f.time = c.time AND f.id = c.id "
        f"WHERE c.org_id = {p(q.org_id)} AND c.seq > {p(after)} AND c.seq <= {p(high)} "
        f"ORDER BY c.seq LIMIT {p(limit)}"
    )
    return sql, p.values


def timeline_sql(
    q: MemoryQuery,
    origin: int,
    width: int,
    group_by: TimelineGroup | None,
    *,
    collation: str | None,
) -> tuple[str, list[Any]]:
    """``(bucket index, group, count)`` rows of ``q`` (:mod:`memtrace.storage.timeline`); the
    group is NULL without ``group_by``; by tag, one row per tag of the bucket (a memory counts
    in each of its tags' groups), so the totals come from a query without ``group_by``."""
    p = Params()
    where = where_clause(q, p, collation=collation)
    bucket = f"(time - {p(origin)}::bigint) / {p(width)}::bigint"
    # (placeholders and fixed column names only: no value is ever written into the text)
    if group_by is None:
        sql = f"SELECT {bucket}, NULL, count(*) FROM memories WHERE {where} GROUP BY 1"  # noqa: S608
    elif group_by == "tag":
        sql = (
            f"SELECT {bucket}, tag, count(*) FROM memories, unnest(tags) AS tag "  # noqa: S608
            f"WHERE {where} GROUP BY 1, 2"
        )
    else:
        column = {"event_type": "event_type", "memory_type": "memory_type", "agent_id": "agent_id"}
        sql = (
            f"SELECT {bucket}, {column[group_by]}, count(*) FROM memories "  # noqa: S608
            f"WHERE {where} GROUP BY 1, 2"
        )
    return sql, p.values
