"""DuckDB SQL for Arc, built from the shared :class:`MemoryQuery` with every value escaped.

Arc's query endpoint takes no parameters, so values are written into the SQL text: strings as
single-quoted literals (quotes doubled; a NUL, which cannot appear inside a literal, is spliced in
with ``chr(0)``), numbers formatted from Python ints/floats only. Identifiers (the measurement)
are double-quoted after a strict pattern check. Times are compared as ``make_timestamp(<µs>)`` so
no cached ``time > '<literal>'`` form is produced, and read back as ``epoch_us(time)`` integers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from memtrace.domain.errors import InvalidInput
from memtrace.storage.arc.target import MEASUREMENT_RE
from memtrace.storage.base import MemoryQuery
from memtrace.storage.rows import RECORD_COLUMNS

MAX_SQL_CHARS = 10_000  # Arc rejects longer statements

# The fixed column set written for every memory: the row shape with ``time`` first (order
# matters only for the msgpack body).
COLUMNS = ("time", *(name for name in RECORD_COLUMNS if name != "time"))

# What a read selects, in ``RECORD_COLUMNS`` order: Arc stores ``time`` as a timestamp and may
# hand ``importance`` back as text, so those two are converted.
_READ_AS = {
    "time": "epoch_us(time) AS time_us",
    "importance": "TRY_CAST(importance AS DOUBLE) AS importance",
}
SELECT_LIST = ", ".join(_READ_AS.get(name, name) for name in RECORD_COLUMNS)


def quote_literal(value: str) -> str:
    """``value`` as a DuckDB string literal; safe for any input, NUL included."""
    parts = value.split("\x00")
    quoted = ["'" + part.replace("'", "''") + "'" for part in parts]
    if len(quoted) == 1:
        return quoted[0]
    return "(" + " || chr(0) || ".join(quoted) + ")"


def quote_ident(name: str) -> str:
    """A measurement name as a quoted identifier (pattern-checked first)."""
    if not MEASUREMENT_RE.match(name):
        raise InvalidInput(f"measurement: must match {MEASUREMENT_RE.pattern}")
    return f'"{name}"'


def number(value: int | float) -> str:
    """A finite int or float as SQL text (never a string passed through)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("number expected")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput("min_importance: must be a finite number")
        return repr(value)
    return str(int(value))


def _in_list(values: Iterable[str]) -> str:
    return "(" + ", ".join(quote_literal(v) for v in values) + ")"


def where_clause(q: MemoryQuery) -> str:
    """The ``WHERE`` body for ``q`` (always filtered on the org)."""
    clauses = [f"org_id = {quote_literal(q.org_id)}"]
    if q.agent_id is not None:
        clauses.append(f"agent_id = {quote_literal(q.agent_id)}")
    if q.session_id is not None:
        clauses.append(f"session_id = {quote_literal(q.session_id)}")
    if q.memory_types:
        clauses.append(f"memory_type IN {_in_list(q.memory_types)}")
    if q.event_types:
        clauses.append(f"event_type IN {_in_list(q.event_types)}")
    if q.since is not None:
        clauses.append(f"time >= make_timestamp({number(q.since)})")
    if q.until is not None:
        clauses.append(f"time < make_timestamp({number(q.until)})")
    if q.min_importance is not None:
        clauses.append(f"TRY_CAST(importance AS DOUBLE) >= {number(float(q.min_importance))}")
    for tag in q.tags:
        # tags are stored comma-joined; the tag pattern excludes commas, so this is exact
        tag_list = "string_split(tags, ',')"
        clauses.append(f"list_contains({tag_list}, {quote_literal(tag)})")
    if q.content_contains:
        # Same rule as the embedded store: Python's str.lower on the needle, lower() on content.
        clauses.append(f"contains(lower(content), {quote_literal(q.content_contains.lower())})")
    return " AND ".join(clauses)


def _checked(sql: str) -> str:
    """Arc refuses statements over 10,000 characters: say so as a 400, not a 503."""
    if len(sql) > MAX_SQL_CHARS:
        raise InvalidInput(
            "query: too many or too long filters for this org's Arc backend "
            f"(the SQL would exceed {MAX_SQL_CHARS} characters)"
        )
    return sql


def select_sql(measurement: str, q: MemoryQuery, *, limit: int, offset: int) -> str:
    """Rows matching ``q`` ordered by (time, id) in ``q.order``.

    ``DISTINCT``: shipping is at-least-once, so after a crash Arc can hold a batch twice
    (identical rows). Limit, offset and ``has_more`` must count each memory once.
    """
    direction = "DESC" if q.order == "desc" else "ASC"
    columns = SELECT_LIST
    if q.content_chars is not None:  # a preview: only the leading characters travel
        cut = f"substr(content, 1, {number(q.content_chars)}) AS content"
        columns = ", ".join(cut if name == "content" else _READ_AS.get(name, name)
                            for name in RECORD_COLUMNS)  # fmt: skip
    return _checked(
        f"SELECT DISTINCT {columns} FROM {quote_ident(measurement)} "  # noqa: S608
        f"WHERE {where_clause(q)} ORDER BY time_us {direction}, id {direction} "
        f"LIMIT {number(limit)} OFFSET {number(offset)}"
    )


def count_sql(measurement: str, q: MemoryQuery) -> str:
    return _checked(
        f"SELECT count(DISTINCT id) AS n FROM {quote_ident(measurement)} "  # noqa: S608
        f"WHERE {where_clause(q)}"
    )


def ids_present_sql(measurement: str, org_id: str, ids: Iterable[str]) -> str:
    """Which of ``ids`` Arc already holds (used to deduplicate the outbox overlay)."""
    return (
        f"SELECT DISTINCT id FROM {quote_ident(measurement)} "  # noqa: S608
        f"WHERE org_id = {quote_literal(org_id)} AND id IN {_in_list(ids)}"
    )


def get_sql(measurement: str, org_id: str, memory_id: str) -> str:
    return (
        f"SELECT {SELECT_LIST} FROM {quote_ident(measurement)} "  # noqa: S608
        f"WHERE org_id = {quote_literal(org_id)} AND id = {quote_literal(memory_id)} LIMIT 1"
    )


def agent_stats_sql(measurement: str, org_id: str, agent_id: str, since: int) -> str:
    """Per memory type: total, since ``since``, errors since ``since`` (each id once: Arc
    may hold a batch twice after a crash)."""
    bound = f"make_timestamp({number(since)})"
    return (
        "SELECT memory_type, count(DISTINCT id) AS n, "  # noqa: S608
        f"count(DISTINCT id) FILTER (WHERE time >= {bound}) AS recent, "
        f"count(DISTINCT id) FILTER (WHERE time >= {bound} AND event_type = 'error') AS errors "
        f"FROM {quote_ident(measurement)} WHERE org_id = {quote_literal(org_id)} "
        f"AND agent_id = {quote_literal(agent_id)} GROUP BY memory_type ORDER BY memory_type"
    )


def dedup_seed_sql(measurement: str, org_id: str, since: int) -> str:
    """Dedup keys of recent memories, to seed a fresh local window index."""
    return (
        f"SELECT dedup_key, epoch_us(time) AS time_us, id FROM {quote_ident(measurement)} "  # noqa: S608
        f"WHERE org_id = {quote_literal(org_id)} AND time >= make_timestamp({number(since)})"
    )
