"""Two processes opening the same SQLite files at once (``memtrace serve`` beside an embedded
``memtrace-mcp``) must not both migrate: the schema version is read under the write lock.

The race is made deterministic: connection A holds the write lock while B starts migrating;
once B is waiting for the lock (seen through its statement trace), A applies the migration and
commits. B must then find the work done instead of creating the tables again.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlite_utils

from memtrace.metadata import sqlite as md
from memtrace.metadata.schema import MIGRATIONS, SCHEMA_VERSION, migrate
from memtrace.storage import embedded
from memtrace.storage.arc import outbox
from memtrace.storage.schema import schema_statements
from memtrace.storage.sqlite import connect


def _race(
    path: Path,
    migrate: Callable[[sqlite3.Connection], None],
    apply_under_lock: Callable[[sqlite3.Connection], None],
) -> None:
    first = connect(path)
    second = connect(path)
    waiting = threading.Event()
    second.set_trace_callback(
        lambda sql: waiting.set() if sql.strip().upper().startswith("BEGIN") else None
    )
    errors: list[BaseException] = []

    def run_second() -> None:
        try:
            migrate(second)
        except BaseException as exc:
            errors.append(exc)

    first.execute("BEGIN IMMEDIATE")
    thread = threading.Thread(target=run_second)
    thread.start()
    try:
        assert waiting.wait(10), "the second migration never asked for the write lock"
        apply_under_lock(first)
        first.execute("COMMIT")
    finally:
        thread.join(30)
    try:
        assert not errors, f"second migration failed: {errors[0]!r}"
        assert not thread.is_alive()
    finally:
        first.close()
        second.close()


def test_metadata_migrates_once_when_two_processes_start_together(tmp_path: Path) -> None:
    path = tmp_path / "memtrace.db"

    def apply_all(conn: sqlite3.Connection) -> None:
        db = sqlite_utils.Database(conn)
        for number, step in enumerate(MIGRATIONS, start=1):
            step(db)
            conn.execute(f"PRAGMA user_version = {number}")

    _race(path, migrate, apply_all)
    conn = connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert md.list_orgs(conn) == []
    conn.close()


def test_embedded_store_migrates_once_when_two_processes_start_together(tmp_path: Path) -> None:
    path = tmp_path / "memories.db"

    def apply_v1(conn: sqlite3.Connection) -> None:
        for statement in schema_statements(embedded._SCHEMA_V1):
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")

    _race(path, embedded._migrate, apply_v1)
    conn = connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == embedded.SCHEMA_VERSION
    assert conn.execute("SELECT count(*) FROM memories").fetchone()[0] == 0
    conn.close()


def test_arc_outbox_migrates_once_when_two_processes_start_together(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"

    def apply_v1(conn: sqlite3.Connection) -> None:
        for statement in schema_statements(outbox._SCHEMA_V1):
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")

    _race(path, outbox._migrate, apply_v1)
    conn = connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == outbox.SCHEMA_VERSION
    conn.close()


def test_a_failed_migration_leaves_the_old_version(tmp_path: Path) -> None:
    conn = connect(tmp_path / "memtrace.db")
    conn.execute("CREATE TABLE orgs (id TEXT)")  # v1 will collide with it
    with pytest.raises(Exception, match="orgs"):
        migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    assert not conn.in_transaction
    conn.close()
