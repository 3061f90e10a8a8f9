"""Which metadata backend a process uses: the one place that decides (docs/deploy-cluster.md).

SQLite (``<data_dir>/memtrace.db``) unless ``[postgres] url`` is set; then the cluster's
PostgreSQL, shared by every replica and by the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memtrace.config import Settings
from memtrace.metadata.base import MetadataBackend

if TYPE_CHECKING:
    from memtrace.storage.postgres.db import PgDatabase


def create_catalog(settings: Settings, pg: PgDatabase | None) -> MetadataBackend:
    """The metadata backend of ``settings``; ``pg`` is the process's PostgreSQL pool, given
    exactly when ``postgres.url`` is set (opened by the catalog's ``open``)."""
    if pg is not None:
        from memtrace.metadata.postgres import PgCatalog

        return PgCatalog(pg)
    from memtrace.metadata.catalog import Catalog

    return Catalog(settings.metadata_path, synchronous=settings.storage.synchronous)


def create_pg(settings: Settings, *, server: bool = True) -> PgDatabase | None:
    """The process's PostgreSQL pool (not yet opened), or ``None`` without ``postgres.url``.
    A server (not the CLI) also announces itself as a live replica."""
    if not settings.postgres.url:
        return None
    from memtrace.storage.postgres.db import PgDatabase

    return PgDatabase(settings.postgres, presence=server)
