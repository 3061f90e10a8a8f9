"""DuckDB SQL for Arc, built from the shared :class:`MemoryQuery` with every value escaped.

Arc's query endpoint takes no parameters, so values are written into the SQL text: strings as
single-quoted literals (quotes doubled; a NUL, which cannot appear inside a literal, is spliced in
with ``chr(0)``), numbers formatted from Python ints/floats only. Identifiers (the measurement)
are double-quoted after a strict pattern check. Times are compared as ``make_timestamp(<µs>)`` so
no cached ``time > '<literal>'`` form is produced, and read back as ``epoch_us(time)`` integers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Sequence

from memtrace.domain.errors import InvalidInput
from memtrace.domain.ids import memory_id_ms
from memtrace.storage.arc.layouts import ArcLayout
from memtrace.storage.arc.target import MEASUREMENT_RE
from memtrace.storage.base import MemoryQuery, TimelineGroup
from memtrace.storage.rows import RECORD_COLUMNS

MAX_SQL_CHARS = 10_000  # Arc rejects longer statements
# Org and memory ids as they are generated (org_…, mem_ + ULID): no quote, keyword boundary,
# comment or xp_/sp_ can appear in them, so Arc's delete accepts them in a ``where``.
SAFE_DELETE_VALUE = re.compile(r"^(org|mem)_[A-Za-z0-9]{1,60}$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")

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


def _and(term: str) -> str:
    return f" AND {term}" if term else ""


def _in_list(values: Iterable[str]) -> str:
    return "(" + ", ".join(quote_literal(v) for v in values) + ")"


def where_clause(q: MemoryQuery, layout: ArcLayout = OURS) -> str:
    """The ``WHERE`` body for ``q`` (always filtered on the org)."""
    clauses = [f"org_id = {quote_literal(q.org_id)}"]
    if layout.go_only_rows:
        clauses.append(layout.go_only_rows)
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
    if q.after is not None and not layout.go:
        # (with Go rows, whose ids are derived in Python, the store filters the position)
        at = f"make_timestamp({number(q.after[0])})"
        op = ">" if q.order == "asc" else "<"
        clauses.append(f"(time {op} {at} OR (time = {at} AND id {op} {quote_literal(q.after[1])}))")
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


def timeline_sql(
    measurement: str,
    q: MemoryQuery,
    origin: int,
    width: int,
    group_by: TimelineGroup | None,
    layout: ArcLayout = OURS,
    exclude: Sequence[str] = (),
) -> str:
    """``(bucket index, group, count)`` rows of ``q`` (:mod:`memtrace.storage.timeline`),
    bucketed by DuckDB in integer microseconds, each row counted once (``DISTINCT``: Arc
    may hold a batch twice after a crash), leaving out the memtrace rows with an id in
    ``exclude`` (the outbox rows the store counts itself). By tag, one row per tag of a
    bucket; the totals then come from the query without ``group_by``."""
    bucket = f"(epoch_us(time) - {number(origin)}) // {number(width)}"
    key = layout.row_key
    table = quote_ident(measurement)
    where = where_clause(q, layout)
    if exclude:
        where += f" AND ({'id IS NULL OR ' if layout.go else ''}id NOT IN {_in_list(exclude)})"
    if group_by == "tag":
        tags = f"unnest(string_split({layout.tags}, ','))"
        inner = f"SELECT {bucket} AS b, {tags} AS g, {key} AS k FROM {table} WHERE {where}"  # noqa: S608
        return _checked(
            f"SELECT b, g, count(DISTINCT k) AS n FROM ({inner}) "  # noqa: S608
            "WHERE g IS NOT NULL AND g <> '' GROUP BY b, g"
        )
    if group_by is None:
        return _checked(
            f"SELECT {bucket} AS b, NULL AS g, count(DISTINCT {key}) AS n "  # noqa: S608
            f"FROM {table} WHERE {where} GROUP BY b"
        )
    column = {"event_type": "event_type", "memory_type": "memory_type", "agent_id": "agent_id"}
    return _checked(
        f"SELECT {bucket} AS b, {column[group_by]} AS g, count(DISTINCT {key}) AS n "  # noqa: S608
        f"FROM {table} WHERE {where} GROUP BY b, g"
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
        f"WHERE org_id = {quote_literal(org_id)}{_and(layout.go_only_rows)} "
        f"AND ({' OR '.join(found) or 'false'})"
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
        f"FROM {quote_ident(measurement)} WHERE org_id = {quote_literal(org_id)}"
        f"{_and(layout.go_only_rows)} "
        f"AND agent_id = {quote_literal(agent_id)} GROUP BY memory_type ORDER BY memory_type"
    )


def dedup_seed_sql(measurement: str, org_id: str, since: int, layout: ArcLayout = OURS) -> str:
    """Dedup keys of recent memories, to seed a fresh local window index (with Go rows, the
    whole rows: their dedup keys follow Go's formula, ours is derived from them too)."""
    if layout.go:
        return (
            f"SELECT {layout.select_list()} FROM {quote_ident(measurement)} "  # noqa: S608
            f"WHERE org_id = {quote_literal(org_id)}{_and(layout.go_only_rows)} "
            f"AND time >= make_timestamp({number(since)})"
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
        f"WHERE org_id = {quote_literal(org_id)}{_and(layout.go_only_rows)} "
        f"AND dedup_key IN {_in_list(keys)} "
        f"AND time > make_timestamp({number(since)}) AND time < make_timestamp({number(until)})"
    )


def rows_present_sql(measurement: str, org_id: str, ids: Iterable[str]) -> str:
    """(id, time, dedup_key) of those of ``ids`` Arc holds as memtrace rows."""
    return (
        "SELECT DISTINCT id, epoch_us(time) AS time_us, dedup_key "  # noqa: S608
        f"FROM {quote_ident(measurement)} "
        f"WHERE org_id = {quote_literal(org_id)} AND id IN {_in_list(ids)}"
    )


def records_sql(
    measurement: str, org_id: str, rows: Sequence[tuple[str, int]], layout: ArcLayout = OURS
) -> str:
    """The memtrace rows of these (id, time) pairs, bounded by their times so Arc reads only
    the partitions that hold them (the change log's records that left the outbox)."""
    ids = [memory_id for memory_id, _ in rows]
    return _checked(
        f"SELECT {_select_list(layout)} FROM {quote_ident(measurement)} "  # noqa: S608
        f"WHERE org_id = {quote_literal(org_id)} AND id IN {_in_list(ids)} AND {_span(rows)}"
    )


def go_rows_sql(measurement: str, org_id: str, since: int, until: int, layout: ArcLayout) -> str:
    """The Go memtrace's rows (no id) with ``since <= time < until``, in the layout's select
    list (their ids are derived in Python)."""
    ours = "id IS NULL AND " if layout.ours else f"{layout.go_only_rows} AND "
    return (
        f"SELECT {layout.select_list()} FROM {quote_ident(measurement)} "  # noqa: S608
        f"WHERE org_id = {quote_literal(org_id)} AND {ours}"
        f"time >= make_timestamp({number(since)}) AND time < make_timestamp({number(until)})"
    )


def delete_where(org_id: str, rows: Iterable[tuple[str, int]]) -> str:
    """The ``where`` of an Arc delete of these (id, time) memtrace rows, bounded by their times
    so Arc rewrites only the files of those partitions.

    Arc's delete refuses a ``where`` with ``;``, ``--``, ``/*``, SQL keywords such as SELECT,
    SET or UNION, or ``xp_``/``sp_`` anywhere, quoted or not, so only values that cannot
    contain them go in: the org id and memory ids (checked here) and numbers.
    """
    pairs = list(rows)
    ids = [memory_id for memory_id, _ in pairs]
    for value in (org_id, *ids):
        if not SAFE_DELETE_VALUE.match(value):
            raise InvalidInput(f"id: {value!r} cannot be deleted through Arc's delete API")
    return f"org_id = {quote_literal(org_id)} AND id IN {_in_list(ids)} AND " + _span(pairs)


def go_delete_where(org_id: str, rows: Iterable[tuple[str, int]], layout: ArcLayout) -> str:
    """The ``where`` of an Arc delete of Go rows, named by (md5 of the row, time): the same
    md5 their derived ids come from (:mod:`memtrace.storage.arc.layouts`)."""
    pairs = list(rows)
    digests = [digest for digest, _ in pairs]
    if not SAFE_DELETE_VALUE.match(org_id) or not all(_MD5.match(d) for d in digests):
        raise InvalidInput("id: cannot be deleted through Arc's delete API")
    ours = "id IS NULL AND " if layout.ours else ""
    return (
        f"org_id = {quote_literal(org_id)} AND {ours}{layout.go_digest} IN {_in_list(digests)} "
        f"AND {_span(pairs)}"
    )


def _span(pairs: Sequence[tuple[str, int]]) -> str:
    low = min(at for _, at in pairs)
    high = max(at for _, at in pairs)
    return f"time >= make_timestamp({number(low)}) AND time <= make_timestamp({number(high)})"


def other_orgs_sql(measurement: str, org_id: str) -> str:
    """Whether the measurement holds rows of another org (then whole-file retention would
    remove them too, so it is not used)."""
    return (
        f"SELECT count(*) AS n FROM {quote_ident(measurement)} "  # noqa: S608
        f"WHERE org_id <> {quote_literal(org_id)}"
    )
