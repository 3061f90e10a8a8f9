"""DuckDB SQL for Arc, built from the shared :class:`MemoryQuery` with every value escaped.

Arc's query endpoint takes no parameters, so values are written into the SQL text: strings as
single-quoted literals (quotes doubled; a NUL, which cannot appear inside a literal, is spliced in
with ``chr(0)``), numbers formatted from Python ints/floats only. Identifiers (the measurement)
are double-quoted after a strict pattern check. Times are compared as ``make_timestamp(<µs>)`` so
no cached ``time > '<literal>'`` form is produced, and read back as ``epoch_us(time)`` integers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

from memtrace.domain.errors import InvalidInput
from memtrace.domain.ids import memory_id_ms
from memtrace.storage.arc.layouts import ArcLayout
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
# A measurement holding only memtrace's rows (the Go memtrace's layout: layouts.py).
OURS = ArcLayout()


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


def literal_chunks(
    values: Sequence[str], budget: int = MAX_SQL_CHARS - 2000
) -> Iterator[list[str]]:
    """``values`` in runs whose ``IN (…)`` list stays within ``budget`` characters, so the
    statement around it fits Arc's limit (one query per run, as few runs as possible)."""
    run: list[str] = []
    used = 0
    for value in values:
        size = len(quote_literal(value)) + 2
        if run and used + size > budget:
            yield run
            run, used = [], 0
        run.append(value)
        used += size
    if run:
        yield run


def _in_list(values: Iterable[str]) -> str:
    return "(" + ", ".join(quote_literal(v) for v in values) + ")"


def where_clause(q: MemoryQuery, layout: ArcLayout = OURS) -> str:
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
        clauses.append(f"{layout.importance} >= {number(float(q.min_importance))}")
    for tag in q.tags:
        # tags are stored comma-joined; the tag pattern excludes commas, so this is exact
        tag_list = f"string_split({layout.tags}, ',')"
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


def _select_list(layout: ArcLayout) -> str:
    return SELECT_LIST if layout == OURS else layout.select_list()


def columns_sql(measurement: str) -> str:
    """No rows, only the measurement's column names (which layouts it holds)."""
    return f"SELECT * FROM {quote_ident(measurement)} LIMIT 0"  # noqa: S608


def select_sql(
    measurement: str, q: MemoryQuery, *, limit: int, offset: int, layout: ArcLayout = OURS
) -> str:
    """Rows matching ``q`` ordered by (time, id) in ``q.order``.

    ``DISTINCT``: shipping is at-least-once, so after a crash Arc can hold a batch twice
    (identical rows). Limit, offset and ``has_more`` must count each memory once.
    """
    direction = "DESC" if q.order == "desc" else "ASC"
    columns = _select_list(layout)
    if q.content_chars is not None and not layout.go:  # a preview: the leading characters
        # (Go rows derive their id from the whole content: those are cut after reading.)
        cut = f"substr(content, 1, {number(q.content_chars)}) AS content"
        columns = ", ".join(cut if name == "content" else _READ_AS.get(name, name)
                            for name in RECORD_COLUMNS)  # fmt: skip
    return _checked(
        f"SELECT DISTINCT {columns} FROM {quote_ident(measurement)} "  # noqa: S608
        f"WHERE {where_clause(q, layout)} "
        f"ORDER BY time_us {direction}, {layout.order_key} {direction} "
        f"LIMIT {number(limit)} OFFSET {number(offset)}"
    )


def count_sql(measurement: str, q: MemoryQuery, layout: ArcLayout = OURS) -> str:
    return _checked(
        f"SELECT count(DISTINCT {layout.row_key}) AS n "  # noqa: S608
        f"FROM {quote_ident(measurement)} WHERE {where_clause(q, layout)}"
    )


def ids_present_sql(
    measurement: str,
    org_id: str,
    ids: Iterable[str],
    *,
    since: int | None = None,
    until: int | None = None,
) -> str:
    """Which of ``ids`` Arc holds (the overlay's dedup, and verifying shipped rows). The
    optional time bounds (inclusive) let Arc skip the partitions the rows cannot be in."""
    bounds = ""
    if since is not None:
        bounds += f" AND time >= make_timestamp({number(since)})"
    if until is not None:
        bounds += f" AND time <= make_timestamp({number(until)})"
    return (
        f"SELECT DISTINCT id FROM {quote_ident(measurement)} "  # noqa: S608
        f"WHERE org_id = {quote_literal(org_id)} AND id IN {_in_list(ids)}{bounds}"
    )


def get_sql(measurement: str, org_id: str, memory_id: str, layout: ArcLayout = OURS) -> str:
    """The row of ``memory_id``; with Go rows, also every Go row of the id's millisecond (the
    caller keeps the one whose derived id matches)."""
    if not layout.go:
        return (
            f"SELECT {SELECT_LIST} FROM {quote_ident(measurement)} "  # noqa: S608
            f"WHERE org_id = {quote_literal(org_id)} AND id = {quote_literal(memory_id)} LIMIT 1"
        )
    found = [f"id = {quote_literal(memory_id)}"] if layout.ours else []
    ms = memory_id_ms(memory_id)
    if ms is not None:
        window = (
            f"time >= make_timestamp({number(ms * 1000)}) "
            f"AND time < make_timestamp({number(ms * 1000 + 1000)})"
        )
        found.append(f"({'id IS NULL AND ' if layout.ours else ''}{window})")
    return (
        f"SELECT {layout.select_list()} FROM {quote_ident(measurement)} "  # noqa: S608
        f"WHERE org_id = {quote_literal(org_id)} AND ({' OR '.join(found) or 'false'})"
    )


def agent_stats_sql(
    measurement: str, org_id: str, agent_id: str, since: int, layout: ArcLayout = OURS
) -> str:
    """Per memory type: total, since ``since``, errors since ``since`` (each id once: Arc
    may hold a batch twice after a crash)."""
    bound = f"make_timestamp({number(since)})"
    key = layout.row_key
    return (
        f"SELECT memory_type, count(DISTINCT {key}) AS n, "  # noqa: S608
        f"count(DISTINCT {key}) FILTER (WHERE time >= {bound}) AS recent, "
        f"count(DISTINCT {key}) FILTER (WHERE time >= {bound} AND event_type = 'error') AS errors "
        f"FROM {quote_ident(measurement)} WHERE org_id = {quote_literal(org_id)} "
        f"AND agent_id = {quote_literal(agent_id)} GROUP BY memory_type ORDER BY memory_type"
    )


def dedup_seed_sql(measurement: str, org_id: str, since: int, layout: ArcLayout = OURS) -> str:
    """Dedup keys of recent memories, to seed a fresh local window index (with Go rows, the
    whole rows: their dedup keys follow Go's formula, ours is derived from them too)."""
    if layout.go:
        return (
            f"SELECT {layout.select_list()} FROM {quote_ident(measurement)} "  # noqa: S608
            f"WHERE org_id = {quote_literal(org_id)} AND time >= make_timestamp({number(since)})"
        )
    return (
        f"SELECT dedup_key, epoch_us(time) AS time_us, id FROM {quote_ident(measurement)} "  # noqa: S608
        f"WHERE org_id = {quote_literal(org_id)} AND time >= make_timestamp({number(since)})"
    )


def dedup_lookup_sql(
    measurement: str,
    org_id: str,
    keys: Iterable[str],
    since: int,
    until: int,
    layout: ArcLayout = OURS,
) -> str:
    """Stored memories with one of ``keys`` and a time in the open interval (since, until)
    (with Go rows, the whole rows: their ids are derived in Python)."""
    columns = layout.select_list() if layout.go else "dedup_key, epoch_us(time) AS time_us, id"
    return _checked(
        f"SELECT {columns} FROM {quote_ident(measurement)} "  # noqa: S608
        f"WHERE org_id = {quote_literal(org_id)} AND dedup_key IN {_in_list(keys)} "
        f"AND time > make_timestamp({number(since)}) AND time < make_timestamp({number(until)})"
    )
