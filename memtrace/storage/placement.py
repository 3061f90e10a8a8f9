"""Where an org's memories and Arc outbox live, decided in one place for the server, the CLI
and copies: the embedded SQLite files of ``<data_dir>/orgs/<org>/``, or, in cluster mode
(``postgres.url`` set, docs/deploy-cluster.md), the cluster's PostgreSQL: there the Arc outbox
always, and the memories with ``storage.default_backend = "postgres"``.
"""

from __future__ import annotations

import asyncio

from memtrace.config import Settings
from memtrace.storage.arc.outbox import Outbox
from memtrace.storage.arc.outbox_base import OutboxStore
from memtrace.storage.arc.pg_outbox import PgOutbox, has_rows
from memtrace.storage.embedded import EmbeddedStore
from memtrace.storage.layout import org_dir
from memtrace.storage.postgres.db import PgDatabase
from memtrace.storage.postgres.store import PostgresStore


def embedded_store(settings: Settings, org_id: str) -> EmbeddedStore:
    return EmbeddedStore(
        org_dir(settings.data_dir, org_id) / "memories.db",
        org_id,
        synchronous=settings.storage.synchronous,
        lane=org_id,
    )


def default_store(
    settings: Settings, pg: PgDatabase | None, org_id: str
) -> EmbeddedStore | PostgresStore:
    """The store (not yet opened) of an org without an Arc binding."""
    if settings.storage.default_backend == "postgres" and pg is not None:
        return PostgresStore(pg, org_id)
    return embedded_store(settings, org_id)


def outbox_of(settings: Settings, pg: PgDatabase | None, org_id: str) -> OutboxStore:
    """The org's Arc outbox (not yet opened): in PostgreSQL in cluster mode, else its file."""
    if pg is not None:
        return PgOutbox(pg, org_id)
    return Outbox(
        org_dir(settings.data_dir, org_id) / "arc_outbox.db",
        org_id,
        synchronous=settings.storage.synchronous,
        lane=org_id,
    )


async def existing_outbox(
    settings: Settings, pg: PgDatabase | None, org_id: str
) -> OutboxStore | None:
    """The org's outbox if it holds or held rows (never creates a file), not yet opened."""
    if pg is not None:
        return PgOutbox(pg, org_id) if await has_rows(pg, org_id) else None
    path = org_dir(settings.data_dir, org_id) / "arc_outbox.db"
    return outbox_of(settings, pg, org_id) if await asyncio.to_thread(path.exists) else None
