"""Retention policies, the audit log and session deletion on PostgreSQL (cluster mode): the
same operations and semantics as :mod:`memtrace.metadata.lifecycle` on SQLite, as a part of
:class:`~memtrace.metadata.postgres.PgCatalog`."""

from __future__ import annotations

from typing import Any

import orjson

from memtrace.domain.lifecycle import AuditEntry, RetentionPolicy
from memtrace.storage.postgres.db import PgDatabase


def _policy(days: int | None, types: str | None) -> RetentionPolicy:
    return RetentionPolicy(days, orjson.loads(types) if types else {})


class PgLifecycleCatalog:
    """The lifecycle methods of :class:`~memtrace.metadata.postgres.PgCatalog`."""

    pg: PgDatabase

    async def delete_session(self, org_id: str, session_id: str) -> bool:
        async with self.pg.connection() as conn:
            status = await conn.execute(
                "DELETE FROM sessions WHERE org_id = $1 AND id = $2", org_id, session_id
            )
        return not status.endswith(" 0")

    async def get_retention(self, org_id: str) -> RetentionPolicy | None:
        async with self.pg.connection() as conn:
            row = await conn.fetchrow(
                "SELECT days, types FROM retention_policies WHERE org_id = $1", org_id
            )
        return _policy(row[0], row[1]) if row else None

    async def list_retention(self) -> dict[str, RetentionPolicy]:
        async with self.pg.connection() as conn:
            rows = await conn.fetch(
                "SELECT org_id, days, types FROM retention_policies ORDER BY org_id"
            )
        return {str(row[0]): _policy(row[1], row[2]) for row in rows}

    async def put_retention(self, org_id: str, policy: RetentionPolicy, now: int) -> None:
        async with self.pg.connection() as conn:
            await conn.execute(
                "INSERT INTO retention_policies (org_id, days, types, updated_at) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (org_id) DO UPDATE SET days = excluded.days, "
                "types = excluded.types, updated_at = excluded.updated_at",
                org_id,
                policy.days,
                orjson.dumps(dict(policy.types)).decode(),
                now,
            )

    async def delete_retention(self, org_id: str) -> bool:
        async with self.pg.connection() as conn:
            status = await conn.execute("DELETE FROM retention_policies WHERE org_id = $1", org_id)
        return not status.endswith(" 0")

    async def record_audit(self, entry: AuditEntry) -> None:
        async with self.pg.connection() as conn:
            await conn.execute(
                "INSERT INTO audit_log (org_id, at, actor, action, filter, count, detail) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                *entry.row(),
            )

    async def list_audit(
        self, org_id: str, *, limit: int = 100, since: int | None = None
    ) -> list[AuditEntry]:
        """The org's entries, newest first."""
        async with self.pg.connection() as conn:
            rows = await conn.fetch(
                "SELECT seq, org_id, at, actor, action, filter, count, detail FROM audit_log "
                "WHERE org_id = $1 AND at >= $2 ORDER BY at DESC, seq DESC LIMIT $3",
                org_id,
                since if since is not None else 0,
                limit,
            )
        return [_entry(row) for row in rows]


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        org_id=row[1],
        at=int(row[2]),
        actor=row[3],
        action=row[4],
        filter=orjson.loads(row[5]) if row[5] else None,
        count=int(row[6]),
        detail=row[7],
        seq=int(row[0]),
    )
