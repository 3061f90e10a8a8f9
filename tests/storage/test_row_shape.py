"""One memory row shape: every schema, column list and converter follows ``MEMORY_FIELDS``."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import orjson

from memtrace.domain.memory import MEMORY_COLUMNS, MEMORY_FIELDS, MemoryRecord
from memtrace.storage.arc import sql as arc_sql
from memtrace.storage.arc.outbox import Outbox
from memtrace.storage.embedded import EmbeddedStore
from memtrace.storage.rows import RECORD_COLUMNS, record_to_row, row_to_record

FULL = MemoryRecord(
    id="mem_01HZX0000000000000000000AB",
    time=1_764_000_000_123_456,
    org_id="org_x",
    agent_id="agent",
    session_id="sess_1",
    memory_type="decision",
    event_type="chose",
    content="picked B",
    metadata={"reasoning": "cheaper", "n": 2},
    tags=("a", "b.c"),
    importance=0.25,
    dedup_key="k" * 32,
    parent_id="mem_parent",
)


def test_the_record_has_the_declared_fields_in_order() -> None:
    assert tuple(f.name for f in dataclasses.fields(MemoryRecord)) == MEMORY_COLUMNS
    assert RECORD_COLUMNS == MEMORY_COLUMNS


def test_each_row_position_holds_the_field_of_that_name() -> None:
    row = dict(zip(RECORD_COLUMNS, record_to_row(FULL), strict=True))
    for field in MEMORY_FIELDS:
        value = getattr(FULL, field.name)
        if field.encoding == "json":
            assert orjson.loads(row[field.name]) == value
        elif field.encoding == "csv":
            assert tuple(row[field.name].split(",")) == value
        else:
            assert row[field.name] == value, field.name
    assert row_to_record(record_to_row(FULL)) == FULL


def _columns(path: Path, table: str) -> list[tuple[str, str, bool]]:
    with sqlite3.connect(path) as conn:
        return [
            (name, kind, bool(notnull))
            for _, name, kind, notnull, _, _ in conn.execute(f"PRAGMA table_info({table})")
        ]


async def test_the_sqlite_schemas_derive_from_the_declaration(tmp_path: Path) -> None:
    declared = [(f.name, f.sql_type, f.required) for f in MEMORY_FIELDS]
    store = EmbeddedStore(tmp_path / "memories.db", "org_x")
    await store.open()
    await store.close()
    assert _columns(tmp_path / "memories.db", "memories")[1:] == declared
    outbox = Outbox(tmp_path / "outbox.db", "org_x")
    await outbox.open()
    await outbox.close()
    assert _columns(tmp_path / "outbox.db", "outbox")[1 : 1 + len(declared)] == declared


def test_arc_writes_and_reads_every_field() -> None:
    assert sorted(arc_sql.COLUMNS) == sorted(MEMORY_COLUMNS)
    assert arc_sql.SELECT_LIST.count(",") == len(MEMORY_COLUMNS) - 1
