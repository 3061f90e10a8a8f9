"""The metadata DB's SQLite schema and its versioned migrations (``PRAGMA user_version``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlite_utils

from memtrace.domain.errors import ConfigError


def _v1_core(db: sqlite_utils.Database) -> None:
    db.create_table("orgs", {"id": str, "name": str, "created_at": int}, pk="id", not_null={"name"})
    db.table("orgs").create_index(["name"], index_name="orgs_name", unique=True)
    db.create_table(
        "api_keys",
        {
            "id": str,
            "org_id": str,
            "name": str,
            "lookup": str,
            "key_hash": str,
            "permissions": str,
            "created_at": int,
            "revoked_at": int,
        },
        pk="id",
        not_null={"org_id", "name", "lookup", "key_hash", "permissions", "created_at"},
    )
    db.table("api_keys").create_index(["lookup"], index_name="api_keys_lookup")
    db.table("api_keys").create_index(["org_id"], index_name="api_keys_org")
    db.create_table(
        "agents",
        {
            "org_id": str,
            "id": str,
            "description": str,
            "config": str,
            "created_at": int,
            "last_active_at": int,
        },
        pk=("org_id", "id"),
        not_null={"created_at"},
    )
    db.create_table(
        "sessions",
        {
            "id": str,
            "org_id": str,
            "agent_id": str,
            "status": str,
            "metadata": str,
            "created_at": int,
            "updated_at": int,
            "closed_at": int,
        },
        pk="id",
        not_null={"org_id", "agent_id", "status", "created_at", "updated_at"},
    )
    db.table("sessions").create_index(
        ["org_id", "agent_id", "created_at"], index_name="sessions_org_agent"
    )
    db.table("sessions").create_index(["org_id", "created_at"], index_name="sessions_org")


def _v2_arc_bindings(db: sqlite_utils.Database) -> None:
    db.create_table(
        "arc_bindings",
        {
            "org_id": str,
            "url": str,
            "database": str,
            "measurement": str,
            "api_key_enc": str,
            "created_at": int,
            "updated_at": int,
        },
        pk="org_id",
        not_null={"url", "database", "measurement", "created_at", "updated_at"},
    )


def _v3_agent_names(db: sqlite_utils.Database) -> None:
    """A display name beside the id: NULL means the id is the name. Agents imported from the
    Go memtrace (ids ``agent_<hex>``, free-text names) and agents registered with a name that is
    not a valid id set it; ``GET /agents/{ref}`` matches the id or the name."""
    db.table("agents").add_column("name", str)
    db.table("agents").create_index(["org_id", "name"], index_name="agents_org_name")


def _v4_counters(db: sqlite_utils.Database) -> None:
    """Counters of events other processes must learn about: ``agents_deleted`` tells every
    server process (``memtrace serve --workers N``) to forget which agents it knows exist."""
    db.create_table("counters", {"name": str, "value": int}, pk="name", not_null={"value"})


def _v5_lifecycle(db: sqlite_utils.Database) -> None:
    """Retention policies per org and the audit log of deletes, forgets, retention runs and
    imports (docs/api.md, "Data lifecycle").

    Idempotent, and it adds ``counters`` when missing: a development build numbered this
    step 4 (before the counters), so a file it left at version 4 lacks ``counters`` and
    already has these tables."""
    if "counters" not in db.table_names():
        _v4_counters(db)
    if "audit_log" in db.table_names():
        return
    db.create_table(
        "retention_policies",
        {"org_id": str, "days": int, "types": str, "updated_at": int},
        pk="org_id",
        not_null={"updated_at"},
    )
    db.create_table(
        "audit_log",
        {
            "seq": int,
            "org_id": str,
            "at": int,
            "actor": str,
            "action": str,
            "filter": str,
            "count": int,
            "detail": str,
        },
        pk="seq",
        not_null={"org_id", "at", "actor", "action", "count"},
    )
    db.table("audit_log").create_index(["org_id", "at"], index_name="audit_log_org_at")


def _v6_feed_cursors(db: sqlite_utils.Database) -> None:
    """Feed cursors: the change position each reader of an org confirmed (docs/feed.md)."""
    db.create_table(
        "feed_cursors",
        {"org_id": str, "reader": str, "position": int, "updated_at": int},
        pk=("org_id", "reader"),
        not_null={"position", "updated_at"},
    )


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _v1_core,
    _v2_arc_bindings,
    _v3_agent_names,
    _v4_counters,
    _v5_lifecycle,
    _v6_feed_cursors,
]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, *, upto: int = SCHEMA_VERSION) -> None:
    """Apply the migrations a database lacks, each in its own transaction (versions in
    ``PRAGMA user_version``). A fresh file and an older one both end at ``upto``.

    The version is read inside ``BEGIN IMMEDIATE``: two processes starting on the same file
    (``memtrace serve`` and an embedded ``memtrace-mcp``) then migrate one after the other,
    and the second sees the first's work instead of applying it again."""
    db = sqlite_utils.Database(conn)
    refuse_go_database(conn)
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"metadata schema version {version} is newer than this memtrace "
                    f"({SCHEMA_VERSION})"
                )
            if version >= upto:
                conn.execute("COMMIT")
                return
            MIGRATIONS[version](db)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def is_go_database(conn: sqlite3.Connection) -> bool:
    """True for the metadata DB of the Go memtrace (its tables, not ours)."""
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    return {"organizations", "api_keys"} <= names and "orgs" not in names


def refuse_go_database(conn: sqlite3.Connection) -> None:
    """Never run our migrations on a Go memtrace DB (they would fail half-way and leave it
    altered): say how to import it instead."""
    if is_go_database(conn):
        path = conn.execute("PRAGMA database_list").fetchone()[2]
        raise ConfigError(
            f"{path} is the metadata DB of the Go memtrace; import it with "
            f"`memtrace migrate-from-go --go-db {path}` (docs/migrating-from-go.md)"
        )


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction for callers outside the writer thread (the CLI)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
