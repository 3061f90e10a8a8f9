"""Embedded backend: one SQLite file (WAL) per org, written by a single group-committing writer.

Index-backed reads: (agent_id, time), (session_id, time), (time), (dedup_key, time), a
(tag, time) table for tag filters, and a contentless FTS5 trigram index that narrows
``content_contains`` candidates before the exact case-insensitive check. Reads order by
``(time, id)``: the time indexes deliver the time order, SQLite sorts only rows of equal time.
Deletes erase (:mod:`memtrace.storage.erase`): rows, tag rows, counts and FTS entries go in
the delete's transaction; the FTS index is compacted and the WAL truncated right after.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from memtrace.domain.ids import memory_ids
from memtrace.domain.memory import MemoryRecord, WriteOutcome
from memtrace.domain.models import OUTCOME_EVENT
from memtrace.storage.base import (
    CHANGE_SCAN,
    AgentMemoryStats,
    ChangePage,
    MemoryQuery,
    NewMemory,
    QueryPage,
    StoreHealth,
    TimelineBucket,
    TimelineGroup,
)
from memtrace.storage.contains import contains_clause
from memtrace.storage.contains import prepare as prepare_contains
from memtrace.storage.embedded_delete import IDS_PER_STATEMENT, delete_rows
from memtrace.storage.embedded_timeline import add_counts, count_rows, create_rollup
from memtrace.storage.embedded_timeline import timeline as rows_timeline
from memtrace.storage.erase import Purger
from memtrace.storage.readpool import SYSTEM_LANE
from memtrace.storage.rows import (
    COLUMN_LIST,
    PLACEHOLDERS,
    RECORD_COLUMNS,
    column_ddl,
    record_from_new,
    record_to_row,
    row_to_record,
)
from memtrace.storage.schema import create_schema
from memtrace.storage.sqlite import SQLiteDatabase, Synchronous, load_dedup_window
from memtrace.storage.sqlite_limits import ScanBudget

# 2: memories with a NUL in their content are indexed in full; 3: the change sequence;
# 4: hourly counts
SCHEMA_VERSION = 4

_SCHEMA_V1 = f"""
CREATE TABLE memories (
    rowid INTEGER PRIMARY KEY,
{column_ddl()}
);
CREATE UNIQUE INDEX memories_id ON memories(id);
CREATE INDEX memories_time ON memories(time);
CREATE INDEX memories_agent_time ON memories(agent_id, time);
CREATE INDEX memories_session_time ON memories(session_id, time) WHERE session_id IS NOT NULL;
CREATE INDEX memories_dedup_time ON memories(dedup_key, time);
CREATE TABLE memory_tags (
    tag TEXT NOT NULL,
    time INTEGER NOT NULL,
    mem INTEGER NOT NULL,
    PRIMARY KEY (tag, time, mem)
) WITHOUT ROWID;
CREATE VIRTUAL TABLE memories_fts USING fts5(
    content, content='', tokenize='trigram', detail=none, columnsize=0
);
CREATE TABLE agent_type_counts (
    agent_id TEXT NOT NULL,
    memory_type TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (agent_id, memory_type)
) WITHOUT ROWID;
"""

_COLUMNS = f"rowid, {COLUMN_LIST}"
# Positions in a stored row (rowid first) of what the hourly timeline counts keep.
_TIMELINE_FIELDS = (
    1 + RECORD_COLUMNS.index("time"),
    1 + RECORD_COLUMNS.index("event_type"),
    1 + RECORD_COLUMNS.index("memory_type"),
    1 + RECORD_COLUMNS.index("agent_id"),
)
_M_COLUMNS = ", ".join(f"m.{name}" for name in ("rowid", *RECORD_COLUMNS))
_INSERT = f"INSERT INTO memories ({_COLUMNS}) VALUES (?, {PLACEHOLDERS})"  # noqa: S608
# Page cache of the writer connection, in KiB (SQLite's default is 2 MiB). Every insert updates
# five B-trees keyed by time, agent, session, dedup hash and id; past a few hundred thousand
# memories those no longer fit in 2 MiB and each insert re-reads pages through the OS. 64 MiB
# cut store CPU per memory by about a third at 150k memories (bench/README.md). It is a bound,
# not an allocation: small stores use only what they touch. Readers keep the default.
WRITER_CACHE_KIB = 64 * 1024


# The change order of the feed and the stream (docs/feed.md) is the rowid: the writer assigns
# rowids under the write lock, so they grow in commit order. ``change_seq`` remembers the highest
# rowid ever assigned, so deleting the newest memory never hands its rowid (a position a reader
# may already hold) to the next one.
_SCHEMA_V3 = """
CREATE TABLE IF NOT EXISTS change_seq (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last INTEGER NOT NULL
);
INSERT OR IGNORE INTO change_seq (id, last) SELECT 1, coalesce(max(rowid), 0) FROM memories;
"""


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a new or older store file to ``SCHEMA_VERSION`` (versions in ``user_version``)."""
    create_schema(
        conn,
        _SCHEMA_V1,
        version=SCHEMA_VERSION,
        what="store",
        upgrades=[_v2_reindex_nul_rows, _SCHEMA_V3, _v4_timelines_and_outcomes],
    )


def _next_rowid(conn: sqlite3.Connection) -> tuple[int, str | None]:
    """Inside the writer's transaction: the rowid of the next memory (above every rowid ever
    assigned) and the id of the newest stored memory."""
    last = conn.execute("SELECT rowid, id FROM memories ORDER BY rowid DESC LIMIT 1").fetchone()
    high = conn.execute("SELECT last FROM change_seq").fetchone()[0]
    if last is None:
        return high + 1, None
    return max(last[0], high) + 1, last[1]


# Decision outcomes (event type "outcome") of an agent, newest first, for its stats and
# context: a partial index holds only those rows, so reading them does not walk every memory
# of the agent (agent stats at 1M memories: 25 ms -> under 2 ms, bench/README.md). SQLite uses
# a partial index only for a literal in the query, so build_where writes this one constant.
_OUTCOME_INDEX = (
    "CREATE INDEX memories_outcomes ON memories(agent_id, time) "
    f"WHERE event_type = '{OUTCOME_EVENT}'"
)


def _v4_timelines_and_outcomes(conn: sqlite3.Connection) -> None:
    create_rollup(conn)
    conn.execute("DROP INDEX IF EXISTS memories_outcomes")
    conn.execute(_OUTCOME_INDEX)


def _v2_reindex_nul_rows(conn: sqlite3.Connection) -> None:
    """Version 1 indexed a content only up to its first NUL (FTS5 stops there)."""
    for rowid, content in conn.execute(_ROWS_WITH_NUL, (0,)).fetchall():
        conn.execute(
            "INSERT INTO memories_fts (memories_fts, rowid, content) VALUES ('delete', ?, ?)",
            (rowid, content),
        )
        conn.execute(
            "INSERT INTO memories_fts (rowid, content) VALUES (?, ?)", (rowid, fts_text(content))
        )


# FTS5 reads a text only up to its first NUL: such contents are indexed with the NUL replaced
# (a superset of trigrams; the exact check on the stored content decides). Rare, so these run
# only for groups that wrote one. instr on a BLOB compares bytes, NUL included.
_ROWS_WITH_NUL = (
    "SELECT rowid, content FROM memories "
    "WHERE rowid >= ? AND instr(CAST(content AS BLOB), x'00') > 0"
)
_INDEX_ROWS_WITHOUT_NUL = (
    "INSERT INTO memories_fts (rowid, content) SELECT rowid, content FROM memories "
    "WHERE rowid >= ? AND instr(CAST(content AS BLOB), x'00') = 0"
)


def fts_text(content: str) -> str:
    """What the trigram index is given for ``content`` (the whole text, NUL included)."""
    return content.replace("\x00", " ")


# FTS5 merges its segments once 16 of a level exist instead of 4: about 12% less CPU per
# indexed memory (~4 us), with the same search times at 200k memories (bench/README.md).
FTS_AUTOMERGE = 16


def _setup_writer(conn: sqlite3.Connection) -> None:
    _migrate(conn)
    conn.execute(f"PRAGMA cache_size = -{int(WRITER_CACHE_KIB)}")
    conn.execute(
        "INSERT INTO memories_fts (memories_fts, rank) VALUES ('automerge', ?)", (FTS_AUTOMERGE,)
    )


def _fts_expression(needle: str) -> str | None:
    """An FTS5 query whose matches are a superset of rows containing ``needle``.

    Only for ASCII needles of 3+ characters without NUL: the trigram tokenizer's case folding
    agrees with ``str.lower`` there. Other needles are checked by a scan bounded by the other
    filters.
    """
    if len(needle) < 3 or not needle.isascii() or "\x00" in needle:
        return None  # (FTS5 query strings end at a NUL: "unterminated string")
    grams = dict.fromkeys(needle[i : i + 3] for i in range(len(needle) - 2))
    return " AND ".join('"' + g.replace('"', '""') + '"' for g in grams)


def build_where(q: MemoryQuery) -> tuple[str, list[Any]]:
    """SQL ``WHERE`` clause (alias ``m``) and parameters for a query; values are never inlined."""
    clauses = ["m.org_id = ?"]
    params: list[Any] = [q.org_id]
    if q.agent_id is not None:
        clauses.append("m.agent_id = ?")
        params.append(q.agent_id)
    if q.session_id is not None:
        clauses.append("m.session_id = ?")
        params.append(q.session_id)
    if q.event_types == (OUTCOME_EVENT,):  # a literal: memories_outcomes serves it
        clauses.append(f"m.event_type = '{OUTCOME_EVENT}'")
        q = replace(q, event_types=())
    for column, values in (("memory_type", q.memory_types), ("event_type", q.event_types)):
        if values:
            clauses.append(f"m.{column} IN ({', '.join('?' * len(values))})")
            params.extend(values)
    if q.since is not None:
        clauses.append("m.time >= ?")
        params.append(q.since)
    if q.until is not None:
        clauses.append("m.time < ?")
        params.append(q.until)
    if q.min_importance is not None:
        clauses.append("m.importance >= ?")
        params.append(q.min_importance)
    for tag in q.tags:
        sub = "SELECT mem FROM memory_tags WHERE tag = ?"
        params.append(tag)
        if q.since is not None:
            sub += " AND time >= ?"
            params.append(q.since)
        if q.until is not None:
            sub += " AND time < ?"
            params.append(q.until)
        clauses.append(f"m.rowid IN ({sub})")
    if q.after is not None:
        # Index range on time, then the exact (time, id) comparison for the boundary time.
        at, memory_id = q.after
        if q.order == "asc":
            clauses.append("m.time >= ? AND (m.time > ? OR m.id > ?)")
        else:
            clauses.append("m.time <= ? AND (m.time < ? OR m.id < ?)")
        params.extend((at, at, memory_id))
    if q.content_contains:
        needle = q.content_contains.lower()
        expression = _fts_expression(needle)
        if expression is not None:
            clauses.append("m.rowid IN (SELECT rowid FROM memories_fts WHERE memories_fts MATCH ?)")
            params.append(expression)
        check, check_params = contains_clause(needle)
        clauses.append(check)
        params.extend(check_params)
    return " AND ".join(clauses), params


def _columns(q: MemoryQuery) -> tuple[str, list[Any]]:
    """The select list (alias ``m``), with content cut to ``q.content_chars`` when set."""
    if q.content_chars is None:
        return _M_COLUMNS, []
    return _M_COLUMNS.replace("m.content", "substr(m.content, 1, ?)"), [q.content_chars]


def _select(q: MemoryQuery) -> tuple[str, list[Any]]:
    """The page query of ``q`` and its parameters."""
    direction = "DESC" if q.order == "desc" else "ASC"
    columns, params = _columns(q)
    if q.tags and q.agent_id is None and q.session_id is None:
        sql, where_params = _tag_driven_query(q, direction, columns)
    else:
        where, where_params = build_where(q)
        sql = (
            f"SELECT {columns} FROM memories m WHERE {where} "  # noqa: S608 (placeholders)
            f"ORDER BY m.time {direction}, m.id {direction} LIMIT ? OFFSET ?"
        )
    return sql, [*params, *where_params, q.limit, q.offset]


def _tag_driven_query(q: MemoryQuery, direction: str, columns: str) -> tuple[str, list[Any]]:
    """A tag-filtered query without an agent or session filter, driven by the first tag's
    ``memory_tags`` rows in ``(time, mem)`` order: that is the result order, so SQLite reads
    rows newest first and stops at the limit instead of collecting every tagged row in the
    window and sorting them (at 1M memories ``tags + type + since=7d`` went from ~55-95 ms to
    ~1-2 ms, bench/README.md). ``CROSS JOIN`` pins ``memory_tags`` as the outer loop."""
    where, params = build_where(replace(q, tags=q.tags[1:]))
    bounds = ["t.tag = ?"]
    tag_params: list[Any] = [q.tags[0]]
    if q.since is not None:
        bounds.append("t.time >= ?")
        tag_params.append(q.since)
    if q.until is not None:
        bounds.append("t.time < ?")
        tag_params.append(q.until)
    if q.after is not None:
        bounds.append("t.time >= ?" if q.order == "asc" else "t.time <= ?")
        tag_params.append(q.after[0])
    sql = (
        f"SELECT {columns} FROM memory_tags t CROSS JOIN memories m "  # noqa: S608
        f"ON m.rowid = t.mem WHERE {' AND '.join(bounds)} AND {where} "
        f"ORDER BY t.time {direction}, m.id {direction} LIMIT ? OFFSET ?"
    )
    return sql, tag_params + params


def _row_to_record(row: tuple[Any, ...]) -> MemoryRecord:
    return row_to_record(row[1:])  # row[0] is the rowid


def _existing_ids(conn: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), IDS_PER_STATEMENT):
        chunk = list(ids[start : start + IDS_PER_STATEMENT])
        sql = f"SELECT id FROM memories WHERE id IN ({', '.join('?' * len(chunk))})"  # noqa: S608
        found.update(row[0] for row in conn.execute(sql, chunk))
    return found


class EmbeddedStore:
    """The org's memories in ``<data_dir>/orgs/<org_id>/memories.db``."""

    backend = "embedded"

    def __init__(
        self,
        path: Path,
        org_id: str,
        *,
        synchronous: Synchronous = "FULL",
        lane: str | None = None,
    ) -> None:
        self.org_id = org_id
        self.path = path
        # First rowid written by the current group; FTS rows are added once per group.
        self._fts_from: int | None = None
        self._fts_nul = False  # the group wrote a content with a NUL
        self._db = SQLiteDatabase(
            path,
            setup=_setup_writer,
            synchronous=synchronous,
            prepare_reader=prepare_contains,
            on_begin=self._begin_group,
            before_commit=self._index_group,
            bulk=self._insert,
            lane=lane,
        )
        self.purger = Purger(self._db, "memories_fts")

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self.purger.close()
        await self._db.close()

    # -- writes -------------------------------------------------------------------------------

    async def write(
        self, items: Sequence[NewMemory], dedup_window_us: int | None
    ) -> list[WriteOutcome]:
        outcomes: list[WriteOutcome] = await self._db.write_bulk((items, dedup_window_us))
        return outcomes

    def _insert(
        self, conn: sqlite3.Connection, writes: list[tuple[Sequence[NewMemory], int | None]]
    ) -> list[list[WriteOutcome]]:
        """Runs in the writer's transaction, once for every write queued together (a group of
        single remembers costs one dedup query and one insert per table): dedup, then bulk
        inserts of rows, tags and counts. Writes are decided in order, as if each had its own
        transaction, so a later write of the group sees the earlier ones' memories."""
        windows = [window for _, window in writes if window is not None]
        every = [item for items, _ in writes for item in items]
        dedup = load_dedup_window(conn, "memories", every, max(windows)) if windows else None
        org = self.org_id
        # The writer holds the write lock, so rowids can be assigned up front for bulk inserts
        # (rows are appended above every existing rowid, so "rowid >= first" is this group's).
        # Ids continue after the newest stored one, whichever process wrote it.
        next_rowid, newest = _next_rowid(conn)
        if newest is not None:
            memory_ids.observe(newest)
        results: list[list[WriteOutcome]] = []
        rows: list[tuple[Any, ...]] = []
        tag_rows: list[tuple[str, int, int]] = []
        counts: Counter[tuple[str, str]] = Counter()
        for items, window in writes:
            outcomes: list[WriteOutcome] = []
            for item in items:
                if window is not None and dedup is not None:
                    duplicate = dedup.duplicate_of(item.dedup_key, item.time, window)
                    if duplicate is not None:
                        outcomes.append(WriteOutcome(existing_id=duplicate))
                        continue
                memory_id = item.id or memory_ids.new()
                if dedup is not None:
                    dedup.add(item.dedup_key, item.time, memory_id)
                rowid = next_rowid
                next_rowid += 1
                record = record_from_new(item, memory_id, org)
                rows.append((rowid, *record_to_row(record)))
                if item.tags:
                    tag_rows += [(tag, item.time, rowid) for tag in item.tags]
                counts[(item.agent_id, item.memory_type)] += 1
                outcomes.append(WriteOutcome(record=record))
                if "\x00" in item.content:
                    self._fts_nul = True
            results.append(outcomes)
        self._append(conn, rows, tag_rows, counts)
        return results

    def _append(
        self,
        conn: sqlite3.Connection,
        rows: list[tuple[Any, ...]],
        tag_rows: list[tuple[str, int, int]],
        counts: Counter[tuple[str, str]],
    ) -> None:
        if not rows:
            return
        conn.executemany(_INSERT, rows)
        conn.execute("UPDATE change_seq SET last = max(last, ?)", (rows[-1][0],))
        if self._fts_from is None:
            self._fts_from = rows[0][0]
        if tag_rows:
            conn.executemany("INSERT INTO memory_tags (tag, time, mem) VALUES (?, ?, ?)", tag_rows)
        conn.executemany(
            "INSERT INTO agent_type_counts (agent_id, memory_type, n) VALUES (?, ?, ?) "
            "ON CONFLICT (agent_id, memory_type) DO UPDATE SET n = n + excluded.n",
            [(agent, mtype, n) for (agent, mtype), n in counts.items()],
        )
        add_counts(conn, count_rows(rows, _TIMELINE_FIELDS, [(t, at) for t, at, _ in tag_rows]))

    async def insert_records(self, items: Sequence[NewMemory]) -> list[str]:
        return await self._db.write(lambda conn: self._insert_records(conn, items))

    def _insert_records(self, conn: sqlite3.Connection, items: Sequence[NewMemory]) -> list[str]:
        present = _existing_ids(conn, [item.id for item in items if item.id])
        next_rowid = _next_rowid(conn)[0]
        rows: list[tuple[Any, ...]] = []
        tag_rows: list[tuple[str, int, int]] = []
        counts: Counter[tuple[str, str]] = Counter()
        for item in items:
            if not item.id or item.id in present:
                continue
            present.add(item.id)
            if "\x00" in item.content:
                self._fts_nul = True
            rows.append((next_rowid, *record_to_row(record_from_new(item, item.id, self.org_id))))
            tag_rows.extend((tag, item.time, next_rowid) for tag in item.tags)
            counts[(item.agent_id, item.memory_type)] += 1
            next_rowid += 1
        self._append(conn, rows, tag_rows, counts)
        return [row[1] for row in rows]

    async def delete(self, ids: Sequence[str]) -> list[str]:
        if not ids:
            return []
        deleted = await self._db.write(
            lambda conn: delete_rows(
                conn, self.org_id, ids, indexed_below=self._fts_from, indexed_as=fts_text
            )
        )
        if deleted:
            self.purger.schedule()
        return deleted

    async def expire(self, cutoff: int) -> int:
        return 0  # no bulk path: the service deletes expired memories by id, in batches

    def _begin_group(self, conn: sqlite3.Connection) -> None:
        self._fts_from = None
        self._fts_nul = False

    def _index_group(self, conn: sqlite3.Connection) -> None:
        """Index the group's new rows in FTS, inside its transaction (read-your-writes holds).

        Once per group, not once per job: FTS5 flushes its pending terms into a new segment at
        every savepoint, so indexing inside each job's savepoint cost ~90 us per single
        remember instead of ~15 (bench/README.md). Rows of a job that was rolled back are gone
        from ``memories`` and so are not indexed; the write lock is held, so every row from
        ``_fts_from`` up is this group's.
        """
        if self._fts_from is None:
            return
        # Indexing from the table runs entirely inside SQLite (no per-row Python, no GIL).
        first, self._fts_from = self._fts_from, None
        if not self._fts_nul:
            conn.execute(
                "INSERT INTO memories_fts (rowid, content) "
                "SELECT rowid, content FROM memories WHERE rowid >= ?",
                (first,),
            )
            return
        conn.execute(_INDEX_ROWS_WITHOUT_NUL, (first,))
        rows = conn.execute(_ROWS_WITH_NUL, (first,))
        conn.executemany(
            "INSERT INTO memories_fts (rowid, content) VALUES (?, ?)",
            [(rowid, fts_text(content)) for rowid, content in rows.fetchall()],
        )

    # -- reads --------------------------------------------------------------------------------

    async def query(self, q: MemoryQuery) -> list[MemoryRecord]:
        sql, params = _select(q)

        def run(conn: sqlite3.Connection) -> list[MemoryRecord]:
            return [_row_to_record(row) for row in conn.execute(sql, params)]

        return await self._db.read(run)

    async def query_page(self, q: MemoryQuery, budget_s: float) -> QueryPage:
        sql, params = _select(q)
        budget = ScanBudget(budget_s)

        def run(conn: sqlite3.Connection) -> QueryPage:
            # Rows leave SQLite in result order, so what was read before the budget ran out
            # is the start of the full answer.
            records: list[MemoryRecord] = []
            try:
                for row in conn.execute(sql, params):
                    records.append(_row_to_record(row))
            except sqlite3.OperationalError:
                if not budget.spent:
                    raise
                return QueryPage(records, complete=False)
            return QueryPage(records)

        return await self._db.read(run, budget=budget)

    async def scan(self, after_rowid: int, limit: int) -> list[tuple[int, MemoryRecord]]:
        """Up to ``limit`` memories in insertion order after ``after_rowid`` (for migrations)."""
        sql = f"SELECT {_COLUMNS} FROM memories m WHERE m.rowid > ? ORDER BY m.rowid LIMIT ?"  # noqa: S608

        def run(conn: sqlite3.Connection) -> list[tuple[int, MemoryRecord]]:
            rows = conn.execute(sql, (after_rowid, limit))
            return [(row[0], _row_to_record(row)) for row in rows]

        return await self._db.read(run)

    async def changes(self, after: int, q: MemoryQuery, limit: int) -> ChangePage:
        where, params = build_where(replace(q, after=None))
        sql = (
            f"SELECT {_COLUMNS} FROM memories m WHERE m.rowid > ? AND m.rowid <= ? "  # noqa: S608
            f"AND {where} ORDER BY m.rowid LIMIT ?"
        )

        def run(conn: sqlite3.Connection) -> ChangePage:
            # Every rowid up to the committed ``last`` is committed (one writer, rowids in
            # commit order), so the scan may claim that range even where nothing matched.
            head = int(conn.execute("SELECT last FROM change_seq").fetchone()[0])
            high = min(after + CHANGE_SCAN, head)
            rows = conn.execute(sql, (after, high, *params, limit)).fetchall()
            entries = [(int(row[0]), _row_to_record(row)) for row in rows]
            position = entries[-1][0] if len(entries) == limit else max(high, after)
            return ChangePage(entries, position, complete=position >= head)

        return await self._db.read(run)

    async def change_head(self) -> int:
        return await self._db.read(
            lambda conn: int(conn.execute("SELECT last FROM change_seq").fetchone()[0])
        )

    async def count(self, q: MemoryQuery) -> int:
        where, params = build_where(q)
        sql = f"SELECT count(*) FROM memories m WHERE {where}"  # noqa: S608 (placeholders only)
        return await self._db.read(lambda conn: int(conn.execute(sql, params).fetchone()[0]))

    async def get(self, memory_id: str) -> MemoryRecord | None:
        sql = f"SELECT {_COLUMNS} FROM memories m WHERE m.id = ? AND m.org_id = ?"  # noqa: S608

        def run(conn: sqlite3.Connection) -> MemoryRecord | None:
            row = conn.execute(sql, (memory_id, self.org_id)).fetchone()
            return _row_to_record(row) if row else None

        return await self._db.read(run)

    async def timeline(
        self, q: MemoryQuery, bucket_us: int, group_by: TimelineGroup | None
    ) -> list[TimelineBucket]:
        return await self._db.read(
            lambda conn: rows_timeline(conn, q, bucket_us, group_by, build_where)
        )

    async def agent_stats(self, agent_id: str, since: int) -> AgentMemoryStats:
        def run(conn: sqlite3.Connection) -> AgentMemoryStats:
            types = dict(
                conn.execute(
                    "SELECT memory_type, n FROM agent_type_counts WHERE agent_id = ? "
                    "ORDER BY memory_type",
                    (agent_id,),
                ).fetchall()
            )
            recent, errors = conn.execute(
                "SELECT count(*), coalesce(sum(event_type = 'error'), 0) FROM memories "
                "WHERE org_id = ? AND agent_id = ? AND time >= ?",
                (self.org_id, agent_id, since),
            ).fetchone()
            return AgentMemoryStats(
                memory_count=sum(types.values()),
                memories_since=int(recent),
                errors_since=int(errors),
                memory_types=types,
            )

        return await self._db.read(run)

    async def health(self) -> StoreHealth:
        try:
            await self._db.read(lambda conn: conn.execute("SELECT 1").fetchone(), lane=SYSTEM_LANE)
        except Exception as exc:
            return StoreHealth(backend=self.backend, healthy=False, detail=str(exc))
        return StoreHealth(backend=self.backend, healthy=True)
