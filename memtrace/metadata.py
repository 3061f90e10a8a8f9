"""Metadata store: orgs, API keys, agents, sessions and Arc bindings in ``memtrace.db``.

Each operation is a plain function on a connection, so the server (through the group-committing
writer of :class:`memtrace.storage.sqlite.SQLiteDatabase`) and the CLI (in its own short
transaction) share one implementation. Times are integer microseconds (UTC).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import sqlite_utils

from memtrace.errors import Conflict, InvalidInput, NotFound

DEFAULT_ORG_ID = "org_default"


# --- schema and migrations ------------------------------------------------------------------


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


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1_core, _v2_arc_bindings]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, *, upto: int = SCHEMA_VERSION) -> None:
    """Apply the migrations a database lacks, each in its own transaction (versions in
    ``PRAGMA user_version``). A fresh file and an older one both end at ``upto``.

    The version is read inside ``BEGIN IMMEDIATE``: two processes starting on the same file
    (``memtrace serve`` and an embedded ``memtrace-mcp``) then migrate one after the other,
    and the second sees the first's work instead of applying it again."""
    db = sqlite_utils.Database(conn)
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


def _json(value: dict[str, Any] | None) -> str | None:
    return orjson.dumps(value).decode() if value is not None else None


def _unjson(value: str | None) -> dict[str, Any] | None:
    return orjson.loads(value) if value else None


# --- orgs -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Org:
    id: str
    name: str
    created_at: int


def insert_org(conn: sqlite3.Connection, org_id: str, name: str, now: int) -> Org:
    if conn.execute("SELECT 1 FROM orgs WHERE name = ? OR id = ?", (name, org_id)).fetchone():
        raise Conflict(f"org {name!r} already exists")
    conn.execute("INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)", (org_id, name, now))
    return Org(org_id, name, now)


def list_orgs(conn: sqlite3.Connection) -> list[Org]:
    rows = conn.execute("SELECT id, name, created_at FROM orgs ORDER BY created_at, id")
    return [Org(*row) for row in rows]


def find_org(conn: sqlite3.Connection, id_or_name: str) -> Org | None:
    row = conn.execute(
        "SELECT id, name, created_at FROM orgs WHERE id = ? OR name = ? ORDER BY id = ? DESC",
        (id_or_name, id_or_name, id_or_name),
    ).fetchone()
    return Org(*row) if row else None


def delete_org(conn: sqlite3.Connection, org_id: str) -> None:
    """Remove the org and everything that hangs off it (keys, agents, sessions, binding)."""
    if not conn.execute("SELECT 1 FROM orgs WHERE id = ?", (org_id,)).fetchone():
        raise NotFound(f"org {org_id!r} not found")
    for table in ("api_keys", "agents", "sessions", "arc_bindings"):
        conn.execute(f"DELETE FROM {table} WHERE org_id = ?", (org_id,))  # noqa: S608
    conn.execute("DELETE FROM orgs WHERE id = ?", (org_id,))


# --- API keys -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key as stored: the secret itself is never kept, only its bcrypt hash."""

    id: str
    org_id: str
    name: str
    lookup: str
    key_hash: str
    permissions: frozenset[str]
    created_at: int
    revoked_at: int | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


_KEY_COLUMNS = "id, org_id, name, lookup, key_hash, permissions, created_at, revoked_at"


def _key(row: tuple[Any, ...]) -> ApiKeyRecord:
    return ApiKeyRecord(
        row[0], row[1], row[2], row[3], row[4], frozenset(row[5].split(",")), row[6], row[7]
    )


def insert_key(conn: sqlite3.Connection, record: ApiKeyRecord) -> None:
    if not conn.execute("SELECT 1 FROM orgs WHERE id = ?", (record.org_id,)).fetchone():
        raise NotFound(f"org {record.org_id!r} not found")
    conn.execute(
        f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
        (
            record.id,
            record.org_id,
            record.name,
            record.lookup,
            record.key_hash,
            ",".join(sorted(record.permissions)),
            record.created_at,
            record.revoked_at,
        ),
    )


def list_keys(conn: sqlite3.Connection, org_id: str | None = None) -> list[ApiKeyRecord]:
    sql = f"SELECT {_KEY_COLUMNS} FROM api_keys"  # noqa: S608
    args: tuple[Any, ...] = ()
    if org_id is not None:
        sql += " WHERE org_id = ?"
        args = (org_id,)
    return [_key(row) for row in conn.execute(sql + " ORDER BY created_at, id", args)]


def revoke_key(conn: sqlite3.Connection, key_id: str, now: int) -> ApiKeyRecord:
    sql = f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?"  # noqa: S608
    row = conn.execute(sql, (key_id,)).fetchone()
    if row is None:
        raise NotFound(f"key {key_id!r} not found")
    conn.execute(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?", (now, key_id)
    )
    return _key(row)


# --- agents ---------------------------------------------------------------------------------


@dataclass(slots=True)
class AgentRow:
    org_id: str
    id: str
    description: str | None
    config: dict[str, Any] | None
    created_at: int
    last_active_at: int | None


_AGENT_COLUMNS = "org_id, id, description, config, created_at, last_active_at"


def _agent(row: tuple[Any, ...]) -> AgentRow:
    return AgentRow(row[0], row[1], row[2], _unjson(row[3]), row[4], row[5])


def insert_agent(
    conn: sqlite3.Connection,
    org_id: str,
    agent_id: str,
    description: str | None,
    config: dict[str, Any] | None,
    now: int,
) -> AgentRow:
    if conn.execute(
        "SELECT 1 FROM agents WHERE org_id = ? AND id = ?", (org_id, agent_id)
    ).fetchone():
        raise Conflict(f"agent {agent_id!r} already exists", existing_id=agent_id)
    conn.execute(
        f"INSERT INTO agents ({_AGENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL)",  # noqa: S608
        (org_id, agent_id, description, _json(config), now),
    )
    return AgentRow(org_id, agent_id, description, config, now, None)


def touch_agents(conn: sqlite3.Connection, org_id: str, activity: dict[str, int]) -> None:
    """Register unknown agents and move ``last_active_at`` forward (never backward)."""
    conn.executemany(
        "INSERT INTO agents (org_id, id, created_at, last_active_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (org_id, id) DO UPDATE SET last_active_at = "
        "max(coalesce(last_active_at, 0), excluded.last_active_at)",
        [(org_id, agent, at, at) for agent, at in activity.items()],
    )


def get_agent(conn: sqlite3.Connection, org_id: str, agent_id: str) -> AgentRow | None:
    row = conn.execute(
        f"SELECT {_AGENT_COLUMNS} FROM agents WHERE org_id = ? AND id = ?",  # noqa: S608
        (org_id, agent_id),
    ).fetchone()
    return _agent(row) if row else None


def list_agents(conn: sqlite3.Connection, org_id: str, limit: int, offset: int) -> list[AgentRow]:
    rows = conn.execute(
        f"SELECT {_AGENT_COLUMNS} FROM agents WHERE org_id = ? "  # noqa: S608
        "ORDER BY id LIMIT ? OFFSET ?",
        (org_id, limit, offset),
    )
    return [_agent(row) for row in rows]


def delete_agent(conn: sqlite3.Connection, org_id: str, agent_id: str) -> None:
    """Remove the agent and its sessions; its memories stay in the store."""
    cur = conn.execute("DELETE FROM agents WHERE org_id = ? AND id = ?", (org_id, agent_id))
    if cur.rowcount == 0:
        raise NotFound(f"agent {agent_id!r} not found")
    conn.execute("DELETE FROM sessions WHERE org_id = ? AND agent_id = ?", (org_id, agent_id))


# --- sessions -------------------------------------------------------------------------------


@dataclass(slots=True)
class SessionRow:
    id: str
    org_id: str
    agent_id: str
    status: str
    metadata: dict[str, Any] | None
    created_at: int
    updated_at: int
    closed_at: int | None


_SESSION_COLUMNS = "id, org_id, agent_id, status, metadata, created_at, updated_at, closed_at"


def _session(row: tuple[Any, ...]) -> SessionRow:
    return SessionRow(row[0], row[1], row[2], row[3], _unjson(row[4]), row[5], row[6], row[7])


def insert_session(conn: sqlite3.Connection, row: SessionRow) -> None:
    conn.execute(
        f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
        (
            row.id,
            row.org_id,
            row.agent_id,
            row.status,
            _json(row.metadata),
            row.created_at,
            row.updated_at,
            row.closed_at,
        ),
    )


def get_session(conn: sqlite3.Connection, org_id: str, session_id: str) -> SessionRow | None:
    row = conn.execute(
        f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ? AND org_id = ?",  # noqa: S608
        (session_id, org_id),
    ).fetchone()
    return _session(row) if row else None


def list_sessions(
    conn: sqlite3.Connection,
    org_id: str,
    agent_id: str | None,
    status: str | None,
    limit: int,
    offset: int,
) -> list[SessionRow]:
    sql = f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE org_id = ?"  # noqa: S608
    args: list[Any] = [org_id]
    if agent_id is not None:
        sql += " AND agent_id = ?"
        args.append(agent_id)
    if status is not None:
        sql += " AND status = ?"
        args.append(status)
    sql += " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
    return [_session(row) for row in conn.execute(sql, [*args, limit, offset])]


def update_session(
    conn: sqlite3.Connection,
    org_id: str,
    session_id: str,
    status: str | None,
    metadata: dict[str, Any] | None,
    now: int,
) -> SessionRow:
    """Change status and/or replace metadata; closing sets ``closed_at``, reopening clears it."""
    row = get_session(conn, org_id, session_id)
    if row is None:
        raise NotFound(f"session {session_id!r} not found")
    if status is not None and status != row.status:
        row.status = status
        row.closed_at = now if status == "closed" else None
    if metadata is not None:
        row.metadata = metadata
    row.updated_at = now
    conn.execute(
        "UPDATE sessions SET status = ?, metadata = ?, updated_at = ?, closed_at = ? "
        "WHERE id = ? AND org_id = ?",
        (row.status, _json(row.metadata), now, row.closed_at, session_id, org_id),
    )
    return row


def session_counts(conn: sqlite3.Connection, org_id: str, agent_id: str) -> tuple[int, int]:
    """(all sessions, active sessions) of an agent."""
    total, active = conn.execute(
        "SELECT count(*), coalesce(sum(status = 'active'), 0) FROM sessions "
        "WHERE org_id = ? AND agent_id = ?",
        (org_id, agent_id),
    ).fetchone()
    return int(total), int(active)


def require_text(value: str, field: str, limit: int = 200) -> str:
    """Validate a short operator-provided name (org and key names from the CLI)."""
    value = value.strip()
    if not value or len(value) > limit or any(ord(ch) < 32 for ch in value):
        raise InvalidInput(f"{field}: must be 1-{limit} printable characters")
    return value
