"""``memtrace org copy-data``: which store is copied where (the copies themselves are
:mod:`memtrace.storage.arc.transfer`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

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
