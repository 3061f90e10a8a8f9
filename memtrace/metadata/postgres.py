"""The metadata on PostgreSQL (cluster mode): :class:`PgCatalog`, the same operations and
semantics as the SQLite :class:`~memtrace.metadata.catalog.Catalog`, shared by every replica.

Admin changes bump ``meta_version`` (a trigger, :mod:`memtrace.metadata.pg_schema`); each
replica's :meth:`PgCatalog.changed` reads it every tick, so a revoked key, a deleted org or a
changed Arc binding reaches every replica within a second. Agent activity is coalesced per
replica as on SQLite (``last_active_at`` only moves forward, so replicas flushing in any order
agree).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from memtrace.auth.keys import ApiKeyRecord
from memtrace.domain.errors import Conflict, NotFound
from memtrace.domain.ids import DEFAULT_ORG_ID, new_session_id
from memtrace.metadata import bindings
from memtrace.metadata import feed as feeds
from memtrace.metadata.activity import AgentActivity
from memtrace.metadata.base import AdminSnapshot
from memtrace.metadata.bindings import ArcBinding
from memtrace.metadata.goimport import LegacyArc
from memtrace.metadata.pg_lifecycle import PgLifecycleCatalog
from memtrace.metadata.pg_ops import (
    AGENT_COLUMNS,
    BINDING_COLUMNS,
    KEY_COLUMNS,
    SESSION_COLUMNS,
    agent,
    find_org,
    insert_key,
    insert_org,
    json,
    key,
    session,
    touch_agents,
)
from memtrace.metadata.pg_schema import MIGRATIONS
from memtrace.metadata.records import AgentRow, Org, SessionRow
from memtrace.storage.arc.target import DEFAULT_MEASUREMENT
from memtrace.storage.postgres.db import PgDatabase

_BOOTSTRAP_LOCK = 0x6D656D7472616366  # replicas starting at once create one admin key


def _pg(sql: str) -> str:
    """A statement of :mod:`memtrace.metadata.feed` with PostgreSQL's ``$n`` placeholders."""
    parts = sql.split("?")
    return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], start=1))


async def migrate(db: PgDatabase) -> None:
    await db.migrate("metadata", MIGRATIONS)


class PgCatalog(PgLifecycleCatalog):
    """:class:`~memtrace.metadata.base.MetadataStore` and
    :class:`~memtrace.metadata.base.MetadataAdmin` on the cluster's PostgreSQL."""

    def __init__(self, db: PgDatabase) -> None:
        self.pg = db
        self.activity = AgentActivity()
        self._version = -1

    async def open(self) -> None:
        await self.pg.open()
        await migrate(self.pg)
        await self.changed()

    async def close(self) -> None:
        await self.flush_activity()

    async def changed(self) -> bool:
        async with self.pg.connection() as conn:
            version = int(await conn.fetchval("SELECT version FROM meta_version"))
        if version == self._version:
            return False
        self._version = version
        self.activity.forget_known()  # an agent may have been deleted through another replica
        return True

    async def ping(self) -> None:
        await self.pg.ping()

    async def admin_snapshot(self) -> AdminSnapshot:
        """Keys, orgs and Arc bindings as of one snapshot (a repeatable-read transaction)."""
        async with (
            self.pg.connection() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            keys = await conn.fetch(
                f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"  # noqa: S608
            )
            orgs = await conn.fetch("SELECT id, name, created_at FROM orgs ORDER BY created_at, id")
            found = await conn.fetch(f"SELECT {BINDING_COLUMNS} FROM arc_bindings")  # noqa: S608
        return AdminSnapshot(
            [key(row) for row in keys],
            [Org(*row) for row in orgs],
            {row[0]: ArcBinding(*row) for row in found},
        )

    async def bootstrap(
        self, *, default_org: bool, admin_key: ApiKeyRecord | None, now: int
    ) -> bool:
        async with self.pg.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _BOOTSTRAP_LOCK)
            no_orgs = not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM orgs)")
            if (no_orgs or default_org) and await find_org(conn, DEFAULT_ORG_ID) is None:
                await insert_org(conn, DEFAULT_ORG_ID, "default", now)
            no_keys = not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM api_keys)")
            if admin_key is not None and no_keys and await find_org(conn, DEFAULT_ORG_ID):
                await insert_key(conn, admin_key)
                return True
        return False

    async def adopt_legacy_arc(self, legacy: LegacyArc, now: int) -> bool:
        """See :func:`memtrace.metadata.goimport.adopt_legacy_arc` (same rule, PostgreSQL)."""
        if not legacy.url:
            return False
        url, enc = bindings.prepare(
            DEFAULT_ORG_ID,
            legacy.url,
            legacy.database,
            legacy.measurement or DEFAULT_MEASUREMENT,
            legacy.api_key or None,
        )
        async with self.pg.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _BOOTSTRAP_LOCK)
            if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM arc_bindings)"):
                return False
            if await find_org(conn, DEFAULT_ORG_ID) is None:
                await insert_org(conn, DEFAULT_ORG_ID, "Default", now)
            await conn.execute(
                f"INSERT INTO arc_bindings ({BINDING_COLUMNS}) "  # noqa: S608
                "VALUES ($1, $2, $3, $4, $5, $6, $6)",
                DEFAULT_ORG_ID,
                url,
                legacy.database,
                legacy.measurement or DEFAULT_MEASUREMENT,
                enc,
                now,
            )
        return True

    # -- orgs, keys and bindings (the server's snapshot, and admin) ---------------------------

    async def list_orgs(self) -> list[Org]:
        async with self.pg.connection() as conn:
            rows = await conn.fetch("SELECT id, name, created_at FROM orgs ORDER BY created_at, id")
        return [Org(*row) for row in rows]

    async def find_org(self, id_or_name: str) -> Org | None:
        async with self.pg.connection() as conn:
            return await find_org(conn, id_or_name)

    async def create_org(self, org_id: str, name: str, now: int) -> Org:
        async with self.pg.connection() as conn:
            return await insert_org(conn, org_id, name, now)

    async def delete_org(self, org_id: str) -> None:
        async with self.pg.transaction() as conn:
            if not await conn.fetchval("SELECT 1 FROM orgs WHERE id = $1", org_id):
                raise NotFound(f"org {org_id!r} not found")
            for table in (
                "api_keys",
                "agents",
                "sessions",
                "arc_bindings",
                "retention_policies",
                "feed_cursors",
            ):
                await conn.execute(f"DELETE FROM {table} WHERE org_id = $1", org_id)  # noqa: S608
            await conn.execute("DELETE FROM orgs WHERE id = $1", org_id)

    async def list_keys(self, org_id: str | None = None) -> list[ApiKeyRecord]:
        sql = f"SELECT {KEY_COLUMNS} FROM api_keys"  # noqa: S608
        async with self.pg.connection() as conn:
            if org_id is None:
                rows = await conn.fetch(sql + " ORDER BY created_at, id")
            else:
                rows = await conn.fetch(sql + " WHERE org_id = $1 ORDER BY created_at, id", org_id)
        return [key(row) for row in rows]

    async def add_key(self, record: ApiKeyRecord) -> None:
        async with self.pg.connection() as conn:
            await insert_key(conn, record)

    async def revoke_key(self, key_id: str, now: int) -> ApiKeyRecord:
        async with self.pg.transaction() as conn:
            row = await conn.fetchrow(
                f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1 FOR UPDATE",  # noqa: S608
                key_id,
            )
            if row is None:
                raise NotFound(f"key {key_id!r} not found")
            await conn.execute(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2",
                now,
                key_id,
            )
        return key(row)

    async def get_binding(self, org_id: str) -> ArcBinding | None:
        async with self.pg.connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {BINDING_COLUMNS} FROM arc_bindings WHERE org_id = $1",  # noqa: S608
                org_id,
            )
        return ArcBinding(*row) if row else None

    async def put_binding(
        self,
        org_id: str,
        *,
        url: str,
        database: str,
        measurement: str,
        api_key: str | None,
        now: int,
        environ: Mapping[str, str] | None = None,
    ) -> ArcBinding:
        url, enc = bindings.prepare(org_id, url, database, measurement, api_key, environ)
        async with self.pg.connection() as conn:
            created = await conn.fetchval(
                f"INSERT INTO arc_bindings ({BINDING_COLUMNS}) "  # noqa: S608
                "VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (org_id) DO UPDATE SET "
                "url = excluded.url, database = excluded.database, "
                "measurement = excluded.measurement, api_key_enc = excluded.api_key_enc, "
                "updated_at = excluded.updated_at RETURNING created_at",
                org_id,
                url,
                database,
                measurement,
                enc,
                now,
            )
        return ArcBinding(org_id, url, database, measurement, enc, int(created), now)

    async def remove_binding(self, org_id: str) -> None:
        async with self.pg.connection() as conn:
            status = await conn.execute("DELETE FROM arc_bindings WHERE org_id = $1", org_id)
        if status.endswith(" 0"):
            raise NotFound(f"org {org_id} has no Arc binding")

    def forget_org(self, org_id: str) -> None:
        self.activity.forget_org(org_id)

    # -- agent activity (:mod:`memtrace.metadata.activity`) -----------------------------------

    async def note_activity(self, org_id: str, agent_ids: Iterable[str], at: int) -> None:
        unknown = self.activity.note(org_id, agent_ids, at)
        if unknown:
            async with self.pg.connection() as conn:
                await touch_agents(conn, org_id, unknown)
            self.activity.remember(org_id, unknown)

    async def flush_activity(self) -> None:
        by_org = self.activity.take()
        if not by_org:
            return
        async with self.pg.transaction() as conn:
            for org_id, activity in by_org.items():
                await touch_agents(conn, org_id, activity)

    # -- agents -------------------------------------------------------------------------------

    async def register_agent(
        self,
        org_id: str,
        agent_id: str,
        description: str | None,
        config: dict[str, Any] | None,
        now: int,
        name: str | None = None,
    ) -> AgentRow:
        label = name or agent_id
        async with self.pg.transaction() as conn:
            # registrations of one org queue here: the id and the name must both be free
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"agents:{org_id}")
            taken = await conn.fetchval(
                "SELECT 1 FROM agents WHERE org_id = $1 AND (id = ANY($2::text[]) "
                "OR name = ANY($2::text[])) LIMIT 1",
                org_id,
                [agent_id, label],
            )
            if taken:
                raise Conflict(
                    f"agent {label!r} already exists in this organization", existing_id=agent_id
                )
            await conn.execute(
                f"INSERT INTO agents ({AGENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, NULL, $6)",  # noqa: S608
                org_id,
                agent_id,
                description,
                json(config),
                now,
                name,
            )
        self.activity.remember(org_id, (agent_id,))
        return AgentRow(org_id, agent_id, description, config, now, None, name)

    async def get_agent(self, org_id: str, agent_id: str) -> AgentRow | None:
        async with self.pg.connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {AGENT_COLUMNS} FROM agents "  # noqa: S608
                "WHERE org_id = $1 AND (id = $2 OR name = $2) ORDER BY id = $2 DESC LIMIT 1",
                org_id,
                agent_id,
            )
        return self.activity.overlay(agent(row)) if row else None

    async def list_agents(self, org_id: str, limit: int, offset: int) -> list[AgentRow]:
        async with self.pg.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {AGENT_COLUMNS} FROM agents WHERE org_id = $1 "  # noqa: S608
                "ORDER BY id LIMIT $2 OFFSET $3",
                org_id,
                limit,
                offset,
            )
        return [self.activity.overlay(agent(row)) for row in rows]

    async def delete_agent(self, org_id: str, agent_id: str) -> None:
        self.activity.forget_agent(org_id, agent_id)
        async with self.pg.transaction() as conn:
            status = await conn.execute(
                "DELETE FROM agents WHERE org_id = $1 AND id = $2", org_id, agent_id
            )
            if status.endswith(" 0"):
                raise NotFound(f"agent {agent_id!r} not found")
            await conn.execute(
                "DELETE FROM sessions WHERE org_id = $1 AND agent_id = $2", org_id, agent_id
            )

    # -- sessions -----------------------------------------------------------------------------

    async def create_session(
        self, org_id: str, agent_id: str, metadata: dict[str, Any] | None, now: int
    ) -> SessionRow:
        await self.note_activity(org_id, (agent_id,), now)
        row = SessionRow(new_session_id(), org_id, agent_id, "active", metadata, now, now, None)
        async with self.pg.connection() as conn:
            await conn.execute(
                f"INSERT INTO sessions ({SESSION_COLUMNS}) "  # noqa: S608
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                row.id,
                row.org_id,
                row.agent_id,
                row.status,
                json(row.metadata),
                row.created_at,
                row.updated_at,
                row.closed_at,
            )
        return row

    # -- feed cursors (docs/feed.md; the statements of memtrace.metadata.feed) -----------------

    async def get_feed_cursor(self, org_id: str, reader: str) -> int | None:
        async with self.pg.connection() as conn:
            value = await conn.fetchval(_pg(feeds.GET), org_id, reader)
        return int(value) if value is not None else None

    async def confirm_feed_cursor(self, org_id: str, reader: str, position: int, now: int) -> int:
        async with self.pg.connection() as conn:
            await conn.execute(_pg(feeds.CONFIRM), org_id, reader, position, now)
            value = await conn.fetchval(_pg(feeds.GET), org_id, reader)
        return int(value) if value is not None else position

    async def advance_feed_cursor(
        self, org_id: str, reader: str, expected: int, position: int, now: int
    ) -> bool:
        async with self.pg.connection() as conn:
            if expected == 0:
                status = await conn.execute(
                    _pg(feeds.ADVANCE), org_id, reader, position, now, expected
                )
            else:
                status = await conn.execute(
                    _pg(feeds.UPDATE), position, now, org_id, reader, expected
                )
        return str(status).endswith(" 1")

    async def get_session(self, org_id: str, session_id: str) -> SessionRow | None:
        async with self.pg.connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1 AND org_id = $2",  # noqa: S608
                session_id,
                org_id,
            )
        return session(row) if row else None

    async def list_sessions(
        self, org_id: str, agent_id: str | None, status: str | None, limit: int, offset: int
    ) -> list[SessionRow]:
        sql = f"SELECT {SESSION_COLUMNS} FROM sessions WHERE org_id = $1"  # noqa: S608
        args: list[Any] = [org_id]
        if agent_id is not None:
            args.append(agent_id)
            sql += f" AND agent_id = ${len(args)}"
        if status is not None:
            args.append(status)
            sql += f" AND status = ${len(args)}"
        sql += f" ORDER BY created_at DESC, id DESC LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}"
        async with self.pg.connection() as conn:
            rows = await conn.fetch(sql, *args, limit, offset)
        return [session(row) for row in rows]

    async def update_session(
        self,
        org_id: str,
        session_id: str,
        status: str | None,
        metadata: dict[str, Any] | None,
        now: int,
    ) -> SessionRow:
        async with self.pg.transaction() as conn:
            found = await conn.fetchrow(
                f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1 AND org_id = $2 "  # noqa: S608
                "FOR UPDATE",
                session_id,
                org_id,
            )
            if found is None:
                raise NotFound(f"session {session_id!r} not found")
            row = session(found)
            if status is not None and status != row.status:
                row.status = status
                row.closed_at = now if status == "closed" else None
            if metadata is not None:
                row.metadata = metadata
            row.updated_at = now
            await conn.execute(
                "UPDATE sessions SET status = $1, metadata = $2, updated_at = $3, closed_at = $4 "
                "WHERE id = $5 AND org_id = $6",
                row.status,
                json(row.metadata),
                now,
                row.closed_at,
                session_id,
                org_id,
            )
        return row

    async def session_counts(self, org_id: str, agent_id: str) -> tuple[int, int]:
        async with self.pg.connection() as conn:
            totals = await conn.fetchrow(
                "SELECT count(*), count(*) FILTER (WHERE status = 'active') FROM sessions "
                "WHERE org_id = $1 AND agent_id = $2",
                org_id,
                agent_id,
            )
        return (int(totals[0]), int(totals[1])) if totals else (0, 0)
