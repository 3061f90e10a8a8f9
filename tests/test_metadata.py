"""Metadata DB migrations: a fresh file and an older one both end at the current schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from memtrace.metadata import sqlite as md
from memtrace.metadata.records import Org
from memtrace.metadata.schema import SCHEMA_VERSION, migrate, transaction
from memtrace.storage import embedded


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
