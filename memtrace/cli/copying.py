"""``memtrace org copy-data``: which store is copied where (the copies themselves are
:mod:`memtrace.storage.arc.transfer`); ``memtrace copy-metadata``: a deployment's SQLite metadata
into the cluster's PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from memtrace.cli.common import common_options, load_settings_for, note, run_admin
from memtrace.domain.errors import InvalidInput

if TYPE_CHECKING:
    from memtrace.cli.common import Admin
    from memtrace.storage.arc.transfer import CopyResult
    from memtrace.storage.embedded import EmbeddedStore
    from memtrace.storage.postgres.store import PostgresStore


async def copy_data(
    admin: Admin,
    org_ref: str,
    to: str,
    source: str | None,
    *,
    batch_size: int,
    progress: Callable[[str], None],
) -> tuple[str, CopyResult]:
    from memtrace.storage.arc import transfer
    from memtrace.storage.placement import embedded_store, outbox_of
    from memtrace.storage.postgres.store import PostgresStore, org_state

    settings, pg = admin.settings, admin.pg
    org_id = (await admin.org(org_ref)).id
    if source is None:
        uses_pg = settings.storage.default_backend == "postgres"
        source = "postgres" if to == "embedded" or (to == "arc" and uses_pg) else "embedded"
    if source == to:
        raise InvalidInput("to: the source and the target are the same store")
    if pg is None and "postgres" in (source, to):
        raise InvalidInput("to: copying to or from PostgreSQL needs [postgres] url")

    def store(name: str) -> EmbeddedStore | PostgresStore:
        if name == "postgres" and pg is not None:
            return PostgresStore(pg, org_id)
        return embedded_store(settings, org_id)

    origin = store(source)
    await origin.open()
    try:
        if to == "arc":
            binding = await admin.catalog.get_binding(org_id)
            if binding is None:
                raise InvalidInput(
                    f"org {org_id} has no Arc binding; run: memtrace org add-arc first"
                )
            outbox = outbox_of(settings, pg, org_id)
            await outbox.open()
            try:
                result = await transfer.copy_to_arc(
                    settings,
                    transfer.source_of(origin),
                    outbox,
                    binding.target(),
                    batch_size=batch_size,
                    progress=progress,
                )
            finally:
                await outbox.close()
            return org_id, result
        assert pg is not None  # one side is PostgreSQL
        target = store(to)
        await target.open()
        try:
            state = org_state(pg, org_id, f"copy:{source}->{to}")
            result = await transfer.copy_between_stores(
                transfer.source_of(origin),
                target,
                state,
                batch_size=batch_size,
                progress=progress,
            )
        finally:
            await target.close()
        return org_id, result
    finally:
        await origin.close()


@click.command("copy-metadata")
@common_options
@click.option(
    "--from-db",
    "from_db",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The SQLite metadata DB to copy (default: <data_dir>/memtrace.db).",
)
@click.pass_context
def copy_metadata(
    ctx: click.Context, from_db: Path | None, config_path: Path | None, data_dir: Path | None
) -> None:
    """Copy a deployment's SQLite metadata (orgs, API keys, agents, sessions, Arc bindings,
    retention policies, the audit log) into
    the cluster's PostgreSQL ([postgres] url): the first step of moving into cluster mode; then
    `memtrace org copy-data ORG --to postgres` for each org. Rerun safely: rows already there
    are kept."""
    import sqlite3

    from memtrace.metadata.pg_import import copy_metadata as run_copy
    from memtrace.metadata.schema import migrate

    settings = load_settings_for(ctx, config_path, data_dir)
    source = from_db or settings.metadata_path
    if not settings.postgres.url:
        raise InvalidInput("postgres.url: copy-metadata copies into the cluster's PostgreSQL")
    if not source.is_file():
        raise InvalidInput(f"from_db: {source} does not exist")
    conn = sqlite3.connect(source, check_same_thread=False)
    try:
        migrate(conn)  # an older file gets the current columns first
        run_admin(settings, lambda admin: run_copy(conn, admin.pg, note))  # type: ignore[arg-type]
    finally:
        conn.close()
