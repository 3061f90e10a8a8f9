"""The SQLite metadata backend: orgs, API keys, agents and sessions in ``memtrace.db``.

Each operation is a plain function on a connection, so the server (through the group-committing
writer of :class:`memtrace.storage.sqlite.SQLiteDatabase`, see :mod:`memtrace.metadata.catalog`)
and the CLI (in its own short transaction) share one implementation. Times are integer
microseconds (UTC).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from memtrace.auth.keys import ApiKeyRecord
from memtrace.domain.errors import AgentExists, Conflict, InvalidInput, NotFound
from memtrace.domain.ids import DEFAULT_ORG_ID, ORG_ID_PREFIX
from memtrace.metadata.records import AgentRow, Org, SessionRow


def _json(value: dict[str, Any] | None) -> str | None:
    return orjson.dumps(value).decode() if value is not None else None


def _unjson(value: str | None) -> dict[str, Any] | None:
    return orjson.loads(value) if value else None


# --- orgs -----------------------------------------------------------------------------------


def insert_org(conn: sqlite3.Connection, org_id: str, name: str, now: int) -> Org:
    """Add an org. Names are looked up like ids (``memtrace key create --org NAME|ID``), so a
    name may not look like an id (``org_…``): it could name another org than the one meant.

    Raises:
        InvalidInput: the name starts with ``org_``.
        Conflict: the name or the id is taken.
    """
    if name.lower().startswith(ORG_ID_PREFIX):
        raise InvalidInput(
            f"name: {name!r} looks like an org id (org_…); choose a name without that prefix"
        )
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
    for table in (
        "api_keys",
        "agents",
        "sessions",
        "arc_bindings",
        "retention_policies",
        "feed_cursors",
    ):
        conn.execute(f"DELETE FROM {table} WHERE org_id = ?", (org_id,))  # noqa: S608
    conn.execute("DELETE FROM orgs WHERE id = ?", (org_id,))


def bootstrap(
    conn: sqlite3.Connection, *, default_org: bool, admin_key: ApiKeyRecord | None, now: int
) -> bool:
    """First start of a deployment: create ``org_default`` when there is no org (or always, with
    ``default_org``), and ``admin_key`` when there is no key at all. True if the key was added."""
    no_orgs = conn.execute("SELECT count(*) FROM orgs").fetchone()[0] == 0
    if (no_orgs or default_org) and find_org(conn, DEFAULT_ORG_ID) is None:
        insert_org(conn, DEFAULT_ORG_ID, "default", now)
    no_keys = conn.execute("SELECT count(*) FROM api_keys").fetchone()[0] == 0
    if admin_key is not None and no_keys and find_org(conn, DEFAULT_ORG_ID):
        insert_key(conn, admin_key)
        return True
    return False


# --- API keys -------------------------------------------------------------------------------


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


_AGENT_COLUMNS = "org_id, id, description, config, created_at, last_active_at, name"


def _agent(row: tuple[Any, ...]) -> AgentRow:
    return AgentRow(row[0], row[1], row[2], _unjson(row[3]), row[4], row[5], row[6])


def insert_agent(
    conn: sqlite3.Connection,
    org_id: str,
    agent_id: str,
    description: str | None,
    config: dict[str, Any] | None,
    now: int,
    name: str | None = None,
) -> AgentRow:
    """Register an agent; ``name`` is a display name when it differs from the id. The id and
    the name must both be free among the org's agents' ids and names."""
    label = name or agent_id
    taken = conn.execute(
        "SELECT 1 FROM agents WHERE org_id = ? AND (id IN (?, ?) OR name IN (?, ?))",
        (org_id, agent_id, label, agent_id, label),
    ).fetchone()
    if taken:
        raise AgentExists(
            f"agent {label!r} already exists in this organization", existing_id=agent_id
        )
    conn.execute(
        f"INSERT INTO agents ({_AGENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL, ?)",  # noqa: S608
        (org_id, agent_id, description, _json(config), now, name),
    )
    return AgentRow(org_id, agent_id, description, config, now, None, name)


def touch_agents(conn: sqlite3.Connection, org_id: str, activity: dict[str, int]) -> None:
    """Register unknown agents and move ``last_active_at`` forward (never backward).

    A memory written under an agent's *name* (Go-era clients wrote the name of an agent whose
    id is ``agent_<hex>``) counts as that agent's activity instead of registering a second
    agent."""
    conn.executemany(
        "INSERT INTO agents (org_id, id, created_at, last_active_at) SELECT ?, ?, ?, ? "
        "WHERE NOT EXISTS (SELECT 1 FROM agents WHERE org_id = ? AND name = ? AND id != ?) "
        "ON CONFLICT (org_id, id) DO UPDATE SET last_active_at = "
        "max(coalesce(last_active_at, 0), excluded.last_active_at)",
        [(org_id, agent, at, at, org_id, agent, agent) for agent, at in activity.items()],
    )
    conn.executemany(
        "UPDATE agents SET last_active_at = max(coalesce(last_active_at, 0), ?) "
        "WHERE org_id = ? AND name = ? AND id != ?",
        [(at, org_id, agent, agent) for agent, at in activity.items()],
    )


def get_agent(conn: sqlite3.Connection, org_id: str, agent_ref: str) -> AgentRow | None:
    """The agent whose id, else whose name, is ``agent_ref``."""
    row = conn.execute(
        f"SELECT {_AGENT_COLUMNS} FROM agents "  # noqa: S608
        "WHERE org_id = ? AND (id = ? OR name = ?) ORDER BY id = ? DESC LIMIT 1",
        (org_id, agent_ref, agent_ref, agent_ref),
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
    bump_counter(conn, AGENTS_DELETED)


AGENTS_DELETED = "agents_deleted"


def bump_counter(conn: sqlite3.Connection, name: str) -> None:
    conn.execute(
        "INSERT INTO counters (name, value) VALUES (?, 1) "
        "ON CONFLICT (name) DO UPDATE SET value = value + 1",
        (name,),
    )


def read_counter(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


# --- sessions -------------------------------------------------------------------------------


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
