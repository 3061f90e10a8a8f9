"""The PostgreSQL metadata's rows and the operations several :class:`PgCatalog` methods share,
as functions on a connection (like :mod:`memtrace.metadata.sqlite` for SQLite)."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from memtrace.auth.keys import ApiKeyRecord
from memtrace.domain.errors import Conflict, NotFound
from memtrace.metadata.records import AgentRow, Org, SessionRow
from memtrace.storage.postgres.db import Connection

KEY_COLUMNS = "id, org_id, name, lookup, key_hash, permissions, created_at, revoked_at"
AGENT_COLUMNS = "org_id, id, description, config, created_at, last_active_at, name"
SESSION_COLUMNS = "id, org_id, agent_id, status, metadata, created_at, updated_at, closed_at"
BINDING_COLUMNS = "org_id, url, database, measurement, api_key_enc, created_at, updated_at"


def json(value: dict[str, Any] | None) -> str | None:
    return orjson.dumps(value).decode() if value is not None else None


def unjson(value: str | None) -> dict[str, Any] | None:
    return orjson.loads(value) if value else None


def key(row: Any) -> ApiKeyRecord:
    return ApiKeyRecord(
        row[0], row[1], row[2], row[3], row[4], frozenset(row[5].split(",")), row[6], row[7]
    )


def agent(row: Any) -> AgentRow:
    return AgentRow(row[0], row[1], row[2], unjson(row[3]), row[4], row[5], row[6])


def session(row: Any) -> SessionRow:
    return SessionRow(row[0], row[1], row[2], row[3], unjson(row[4]), row[5], row[6], row[7])


async def find_org(conn: Connection, id_or_name: str) -> Org | None:
    row = await conn.fetchrow(
        "SELECT id, name, created_at FROM orgs WHERE id = $1 OR name = $1 "
        "ORDER BY id = $1 DESC LIMIT 1",
        id_or_name,
    )
    return Org(*row) if row else None


async def insert_org(conn: Connection, org_id: str, name: str, now: int) -> Org:
    try:
        async with conn.transaction():  # a savepoint when inside a transaction
            await conn.execute(
                "INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3)", org_id, name, now
            )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"org {name!r} already exists") from None
    return Org(org_id, name, now)


async def insert_key(conn: Connection, record: ApiKeyRecord) -> None:
    if not await conn.fetchval("SELECT 1 FROM orgs WHERE id = $1", record.org_id):
        raise NotFound(f"org {record.org_id!r} not found")
    await conn.execute(
        f"INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",  # noqa: S608
        record.id,
        record.org_id,
        record.name,
        record.lookup,
        record.key_hash,
        ",".join(sorted(record.permissions)),
        record.created_at,
        record.revoked_at,
    )


async def touch_agents(conn: Connection, org_id: str, activity: dict[str, int]) -> None:
    """Register unknown agents and move ``last_active_at`` forward (never backward). A memory
    written under an agent's *name* counts as that agent's activity (Go-era clients)."""
    agents, times = list(activity), list(activity.values())
    await conn.execute(
        "INSERT INTO agents (org_id, id, created_at, last_active_at) "
        "SELECT $1, a, t, t FROM unnest($2::text[], $3::bigint[]) AS u(a, t) "
        "WHERE NOT EXISTS (SELECT 1 FROM agents g WHERE g.org_id = $1 AND g.name = u.a "
        "AND g.id <> u.a) "
        "ON CONFLICT (org_id, id) DO UPDATE SET last_active_at = "
        "greatest(coalesce(agents.last_active_at, 0), excluded.last_active_at)",
        org_id,
        agents,
        times,
    )
    await conn.execute(
        "UPDATE agents g SET last_active_at = greatest(coalesce(g.last_active_at, 0), u.t) "
        "FROM unnest($2::text[], $3::bigint[]) AS u(a, t) "
        "WHERE g.org_id = $1 AND g.name = u.a AND g.id <> u.a",
        org_id,
        agents,
        times,
    )
