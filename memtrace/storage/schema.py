"""Creating and upgrading an SQLite file's schema (versions in ``PRAGMA user_version``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence


def schema_statements(script: str) -> list[str]:
    """Split a DDL script into statements (``executescript`` would commit our transaction)."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError("schema script ends inside a statement")
    return statements


def create_schema(
    conn: sqlite3.Connection,
    script: str,
    *,
    version: int,
    what: str,
    upgrades: Sequence[str | Callable[[sqlite3.Connection], None]] = (),
) -> None:
    """Create a file's schema (version 1) unless it is there, then apply the ``upgrades`` it
    lacks (``upgrades[0]`` takes version 1 to 2, and so on), in one transaction. An upgrade is
    a DDL script, or a function run on the connection for what SQL alone cannot do.

    The version (``PRAGMA user_version``) is read only once the write lock is held, so two
    processes opening the same file at once (``memtrace serve`` beside an embedded
    ``memtrace-mcp``) cannot both create it; a crash mid-way leaves the old version intact.
    """
    if version != 1 + len(upgrades):
        raise ValueError(f"{what}: version {version} needs {version - 1} upgrade scripts")
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found > version:
            raise RuntimeError(f"{what} schema {found}, newer than this memtrace supports")
        scripts = [script, *upgrades]
        for step in range(found, version):
            upgrade = scripts[step]
            if callable(upgrade):
                upgrade(conn)
                continue
            for statement in schema_statements(upgrade):
                conn.execute(statement)
        if found < version:
            conn.execute(f"PRAGMA user_version = {int(version)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
