"""Metadata DB migrations: a fresh file and an older one both end at the current schema."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from memtrace.metadata import sqlite as md
from memtrace.metadata.records import Org
from memtrace.metadata.schema import SCHEMA_VERSION, migrate, transaction
from memtrace.storage import embedded
from memtrace.storage.base import MemoryQuery
from tests.storage.arc_support import memory as arc_memory


def tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_fresh_database_reaches_current_schema(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert {"orgs", "api_keys", "agents", "sessions", "arc_bindings"} <= tables(conn)
    migrate(conn)  # idempotent
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_older_database_is_upgraded_with_its_data(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    migrate(conn, upto=1)
    assert "arc_bindings" not in tables(conn)
    with transaction(conn):
        md.insert_org(conn, "org_old", "old", 1)
    migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert "arc_bindings" in tables(conn)
    assert md.find_org(conn, "old") == Org("org_old", "old", 1)


@pytest.mark.parametrize("version", range(SCHEMA_VERSION))
def test_every_older_version_upgrades_to_current(tmp_path: Path, version: int) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    migrate(conn, upto=version)
    migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert {"counters", "retention_policies", "audit_log", "arc_bindings"} <= tables(conn)
    with transaction(conn):
        md.insert_org(conn, "org_new", "new", 1)
        md.bump_counter(conn, md.AGENTS_DELETED)
    assert md.read_counter(conn, md.AGENTS_DELETED) == 1


def test_version_4_with_lifecycle_tables_gains_counters(tmp_path: Path) -> None:
    """A development build numbered the lifecycle tables version 4 (before ``counters``): such
    a file, with its audit log, still reaches the current schema."""
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    migrate(conn, upto=3)
    with transaction(conn):
        conn.execute("CREATE TABLE retention_policies (org_id TEXT PRIMARY KEY, days INTEGER)")
        conn.execute("CREATE TABLE audit_log (seq INTEGER PRIMARY KEY, org_id TEXT)")
        conn.execute("INSERT INTO audit_log (seq, org_id) VALUES (1, 'org_a')")
        conn.execute("PRAGMA user_version = 4")
    migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert "counters" in tables(conn)
    assert conn.execute("SELECT org_id FROM audit_log").fetchall() == [("org_a",)]


def test_newer_database_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="newer than this memtrace"):
        migrate(conn)


def test_store_schema_is_versioned(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    embedded._migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == embedded.SCHEMA_VERSION
    embedded._migrate(conn)
    assert {"memories", "memory_tags", "agent_type_counts"} <= tables(conn)


async def test_store_version_1_reindexes_contents_with_a_nul(tmp_path: Path) -> None:
    # Schema 1 indexed a content only up to its first NUL; opening the file re-indexes those.
    path = tmp_path / "memories.db"
    store = embedded.EmbeddedStore(path, "org_x", synchronous="NORMAL")
    await store.open()
    (written,) = await store.write([arc_memory("before\x00after the nul", time_us=1)], None)
    await store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    with transaction(conn):  # put the file back as version 1 wrote it
        rowid, content = conn.execute("SELECT rowid, content FROM memories").fetchone()
        conn.execute(
            "INSERT INTO memories_fts (memories_fts, rowid, content) VALUES ('delete', ?, ?)",
            (rowid, embedded.fts_text(content)),
        )
        conn.execute("INSERT INTO memories_fts (rowid, content) VALUES (?, ?)", (rowid, content))
        conn.execute("PRAGMA user_version = 1")
    conn.close()
    query = MemoryQuery(org_id="org_x", content_contains="after the")
    reopened = embedded.EmbeddedStore(path, "org_x", synchronous="NORMAL")
    await reopened.open()
    try:
        assert [r.id for r in await reopened.query(query)] == [written.record.id]  # type: ignore[union-attr]
        assert [r.id for r in await reopened.query(replace(query, content_contains="befo"))] == [
            written.record.id  # type: ignore[union-attr]
        ]
    finally:
        await reopened.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == embedded.SCHEMA_VERSION
    conn.close()


async def test_store_version_2_gets_change_positions(tmp_path: Path) -> None:
    """A store file from before change positions (docs/feed.md) keeps its rowids as positions,
    and new memories continue after them."""
    path = tmp_path / "memories.db"
    store = embedded.EmbeddedStore(path, "org_x", synchronous="NORMAL")
    await store.open()
    await store.write([arc_memory("a", time_us=2), arc_memory("b", time_us=1)], None)
    await store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    with transaction(conn):  # put the file back as version 2 wrote it
        conn.execute("DROP TABLE change_seq")
        conn.execute("PRAGMA user_version = 2")
    conn.close()
    reopened = embedded.EmbeddedStore(path, "org_x", synchronous="NORMAL")
    await reopened.open()
    try:
        assert await reopened.change_head() == 2
        await reopened.write([arc_memory("c", time_us=0)], None)
        page = await reopened.changes(0, MemoryQuery(org_id="org_x"), 10)
        assert [(p, r.content) for p, r in page.entries] == [(1, "a"), (2, "b"), (3, "c")]
    finally:
        await reopened.close()
