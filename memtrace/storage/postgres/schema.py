"""The PostgreSQL row shape of a memory (derived from ``MEMORY_FIELDS``) and the memories schema.

Layout (docs/architecture.md, "PostgreSQL store"): one ``memories`` table for every org,
range-partitioned by month on ``time``; ``org_id`` leads every index, so each org's rows are
a contiguous range of each index, and time-bounded reads touch one or two partitions however
large the table grows. Columns follow ``MEMORY_FIELDS``, except that tags are a ``text[]``
(GIN-indexed for ``@>``) and ``importance`` a ``double precision`` (float4 would not round-trip).

PostgreSQL text cannot hold NUL, which a memory's content and a client's dedup key may contain:
such texts are stored with NUL written as U+FFFE + ``0`` and U+FFFE itself doubled
(:func:`encode_text`); texts without either character are stored as they are.
"""

from __future__ import annotations

from typing import Any

import orjson

from memtrace.domain.memory import MEMORY_FIELDS, MemoryRecord
from memtrace.domain.models import OUTCOME_EVENT
from memtrace.storage.postgres.changes import log_changes_of

_PG_TYPES = {"TEXT": "text", "INTEGER": "bigint", "REAL": "double precision"}
COLUMNS: tuple[str, ...] = tuple(field.name for field in MEMORY_FIELDS)
COLUMN_LIST = ", ".join(COLUMNS)
STRIPES = 1024  # dedup lock rows per org: part of the on-disk contract, never change it live

_ESCAPE = "\ufffe"


def encode_text(text: str) -> str:
    """Text PostgreSQL can store: NUL -> U+FFFE "0", U+FFFE -> U+FFFE U+FFFE."""
    if "\x00" not in text and _ESCAPE not in text:
        return text
    return text.replace(_ESCAPE, _ESCAPE * 2).replace("\x00", _ESCAPE + "0")


def decode_text(text: str) -> str:
    if _ESCAPE not in text:
        return text
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == _ESCAPE and i + 1 < len(text):
            out.append("\x00" if text[i + 1] == "0" else _ESCAPE)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _column_type(name: str, sql_type: str, encoding: str) -> str:
    if encoding == "csv":
        return "text[]"
    return _PG_TYPES[sql_type]


def column_ddl(indent: str = "    ") -> str:
    return ",\n".join(
        f"{indent}{f.name} {_column_type(f.name, f.sql_type, f.encoding)}"
        f"{' NOT NULL' if f.required else ''}"
        for f in MEMORY_FIELDS
    )


def record_to_row(record: MemoryRecord) -> tuple[Any, ...]:
    """A record as a row of ``COLUMNS`` for asyncpg (COPY or parameters)."""
    return (
        record.id,
        record.time,
        record.org_id,
        record.agent_id,
        record.session_id,
        record.memory_type,
        record.event_type,
        encode_text(record.content),
        orjson.dumps(record.metadata).decode() if record.metadata else None,
        list(record.tags) if record.tags else None,
        float(record.importance) if record.importance is not None else None,
        encode_text(record.dedup_key),
        record.parent_id,
    )


def row_to_record(row: Any) -> MemoryRecord:
    """The inverse of :func:`record_to_row` (an asyncpg Record or a tuple, ``COLUMNS`` order)."""
    return MemoryRecord(
        id=row[0],
        time=row[1],
        org_id=row[2],
        agent_id=row[3],
        session_id=row[4],
        memory_type=row[5],
        event_type=row[6],
        content=decode_text(row[7]),
        metadata=orjson.loads(row[8]) if row[8] else None,
        tags=tuple(row[9]) if row[9] else (),
        importance=row[10],
        dedup_key=decode_text(row[11]),
        parent_id=row[12],
    )


_V1 = f"""
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE memories (
{column_ddl()},
    PRIMARY KEY (org_id, time, id)
) PARTITION BY RANGE (time);
CREATE INDEX memories_agent ON memories (org_id, agent_id, time, id);
CREATE INDEX memories_session ON memories (org_id, session_id, time, id)
    WHERE session_id IS NOT NULL;
CREATE INDEX memories_dedup ON memories (org_id, dedup_key, time);
CREATE INDEX memories_id ON memories (id);
CREATE INDEX memories_tags ON memories USING gin (tags);
CREATE INDEX memories_content ON memories USING gin (content gin_trgm_ops);

CREATE TABLE agent_type_counts (
    org_id text NOT NULL,
    agent_id text NOT NULL,
    memory_type text NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (org_id, agent_id, memory_type)
);

-- Exact dedup across replicas: a writer locks the rows of its keys' stripes
-- (crc32(dedup_key) % {STRIPES}) in ascending order, then reads the window in a new statement.
CREATE TABLE dedup_stripes (
    org_id text NOT NULL,
    stripe int NOT NULL,
    PRIMARY KEY (org_id, stripe)
);

-- Small per-org state: copy cursors, the Arc outbox's flags.
CREATE TABLE org_state (
    org_id text NOT NULL,
    name text NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (org_id, name)
);

-- The month of ts_us (UTC) as a partition of memories; idempotent and safe for replicas
-- racing on it (advisory lock). ATTACH takes only SHARE UPDATE EXCLUSIVE on the parent.
CREATE FUNCTION memtrace_ensure_month(ts_us bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    month_start timestamp := date_trunc('month', to_timestamp(ts_us / 1e6) AT TIME ZONE 'UTC');
    lo bigint := (extract(epoch FROM month_start) * 1000000)::bigint;
    hi bigint := (extract(epoch FROM month_start + interval '1 month') * 1000000)::bigint;
    tbl text := 'memories_p' || to_char(month_start, 'YYYYMM');
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('memtrace_partitions'));
    IF to_regclass(tbl) IS NULL THEN
        EXECUTE format('CREATE TABLE %I (LIKE memories INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       tbl);
        EXECUTE format('ALTER TABLE memories ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
                       tbl, lo, hi);
    END IF;
END $$;

-- One remember in one round trip: lock the key's stripe, look for a duplicate in the window
-- (each statement of a VOLATILE function takes a fresh snapshot under READ COMMITTED, so it
-- sees what the previous holder of the stripe committed), insert, count.
CREATE FUNCTION memtrace_remember(
    p_org text, p_stripe int, p_window bigint, p_id text, p_time bigint, p_agent text,
    p_session text, p_mtype text, p_etype text, p_content text, p_meta text, p_tags text[],
    p_importance double precision, p_key text, p_parent text,
    OUT stored boolean, OUT memory_id text)
LANGUAGE plpgsql AS $$
BEGIN
    IF p_window IS NOT NULL THEN
        PERFORM 1 FROM dedup_stripes WHERE org_id = p_org AND stripe = p_stripe FOR UPDATE;
        SELECT m.id INTO memory_id FROM memories m
         WHERE m.org_id = p_org AND m.dedup_key = p_key
           AND m.time > p_time - p_window AND m.time < p_time + p_window
         ORDER BY m.time, m.id LIMIT 1;
        IF memory_id IS NOT NULL THEN
            stored := false;
            RETURN;
        END IF;
    END IF;
    INSERT INTO memories ({COLUMN_LIST})
    VALUES (p_id, p_time, p_org, p_agent, p_session, p_mtype, p_etype, p_content, p_meta,
            p_tags, p_importance, p_key, p_parent);
    INSERT INTO agent_type_counts (org_id, agent_id, memory_type, n)
    VALUES (p_org, p_agent, p_mtype, 1)
    ON CONFLICT (org_id, agent_id, memory_type) DO UPDATE SET n = agent_type_counts.n + 1;
    stored := true;
    memory_id := p_id;
END $$;
"""  # noqa: S608 (constants only)

# Decision outcomes of an agent (its stats' success rate, its context) without walking every
# memory of the agent; the planner uses a partial index for the literal that sql.py writes.
_V3_OUTCOMES = f"""
CREATE INDEX IF NOT EXISTS memories_outcomes ON memories (org_id, agent_id, time)
    WHERE event_type = '{OUTCOME_EVENT}';
"""

# v2: the change log of the feed and the stream (memtrace.storage.postgres.changes);
# v3: the outcomes' partial index
MIGRATIONS: tuple[str, ...] = (_V1, log_changes_of("memories"), _V3_OUTCOMES)
