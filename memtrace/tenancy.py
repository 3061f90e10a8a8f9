"""Org → store routing: each org's memories live in a store of their own.

Stores are opened on first use and closed when their org disappears from the metadata DB
(checked on every metadata change, see :mod:`memtrace.runtime`). A client never chooses its
store: the org comes from its API key.
"""

from __future__ import annotations

import asyncio
import logging

from memtrace.config import Settings
from memtrace.domain.errors import (
    ConfigError,
    MemtraceError,
    NoArcInstanceError,
    StorageUnavailable,
)
from memtrace.metadata.bindings import ArcBinding
from memtrace.storage.arc import pg_outbox
from memtrace.storage.arc.store import ArcStore
from memtrace.storage.arc.transfer import move_outbox
from memtrace.storage.base import MemoryStore, StoreHealth
from memtrace.storage.placement import default_store, existing_outbox, outbox_of
from memtrace.storage.postgres import store as pg_store
from memtrace.storage.postgres.db import PgDatabase
from memtrace.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


class StoreRegistry:
    """The open stores of this process, one per org."""

    def __init__(
        self, settings: Settings, metrics: Metrics | None = None, *, pg: PgDatabase | None = None
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._pg = pg
        self._stores: dict[str, MemoryStore] = {}
        self._lock = asyncio.Lock()
        self._bindings: dict[str, ArcBinding] = {}
        self._opened_with: dict[str, tuple[object, ...] | None] = {}
        # bound orgs whose store cannot open: (binding fingerprint, why)
        self._unusable: dict[str, tuple[tuple[object, ...] | None, str]] = {}

    async def prepare(self) -> None:
        """Bring the PostgreSQL schema of memories and Arc outboxes to the current version
        (cluster mode)."""
        if self._pg is not None:
            await pg_store.migrate(self._pg)
            await pg_outbox.migrate(self._pg)

    async def apply_bindings(self, bindings: dict[str, ArcBinding]) -> list[str]:
        """Adopt the current Arc bindings: close stores whose binding was added, changed or
        removed (the next request reopens them on the right backend). Returns those orgs."""
        async with self._lock:
            self._bindings = dict(bindings)
            # a changed binding gets a fresh chance to open
            self._unusable = {
                org: entry
                for org, entry in self._unusable.items()
                if entry[0] == _fingerprint(bindings.get(org)) and org in bindings
            }
            stale = [
                org
                for org in self._stores
                if self._opened_with.get(org) != _fingerprint(bindings.get(org))
            ]
            for org in stale:
                self._opened_with.pop(org, None)
                await self._stores.pop(org).close()
        # Arc stores open eagerly: their shippers must resume unshipped rows after a restart.
        for org in bindings:
            if org not in self._stores and org not in self._unusable:
                try:
                    await self.get(org)
                except MemtraceError as exc:
                    log.warning("Arc store of %s cannot open: %s", org, exc.message)
        return stale

    async def get(self, org_id: str) -> MemoryStore:
        """The org's store, opened on first use.

        Raises:
            NoArcInstanceError: the org has no store (``storage.default_backend = "none"``).
        """
        store = self._stores.get(org_id)
        if store is not None:
            return store
        async with self._lock:
            store = self._stores.get(org_id)
            if store is None:
                binding = self._bindings.get(org_id)
                store = await self._open(org_id, binding)
                self._stores[org_id] = store
                self._opened_with[org_id] = _fingerprint(binding)
        return store

    async def _open(self, org_id: str, binding: ArcBinding | None) -> MemoryStore:
        try:
            store = await open_store(self._settings, org_id, binding, self._metrics, pg=self._pg)
        except BindingUnusable as exc:
            self._unusable[org_id] = (_fingerprint(binding), exc.message)
            raise
        self._unusable.pop(org_id, None)
        return store

    async def retain(self, live_org_ids: set[str]) -> list[str]:
        """Close the stores of orgs that no longer exist; returns their ids."""
        gone = [org for org in self._stores if org not in live_org_ids]
        for org in gone:
            self._opened_with.pop(org, None)
            await self._stores.pop(org).close()
        return gone

    async def health(self) -> dict[str, StoreHealth]:
        stores = list(self._stores.items())
        results = await asyncio.gather(*(store.health() for _, store in stores))
        report = {org: result for (org, _), result in zip(stores, results, strict=True)}
        for org, (_, message) in list(self._unusable.items()):
            report.setdefault(org, StoreHealth(backend="arc", healthy=False, detail=message))
        return report

    async def close(self) -> None:
        stores, self._stores = self._stores, {}
        for store in stores.values():
            await store.close()


class BindingUnusable(StorageUnavailable):
    """The org's Arc binding cannot be decrypted (master key missing or wrong)."""


async def open_store(
    settings: Settings,
    org_id: str,
    binding: ArcBinding | None,
    metrics: Metrics | None = None,
    *,
    pg: PgDatabase | None = None,
) -> MemoryStore:
    """Open the org's store: Arc when it has a binding, else its default store (embedded, or
    PostgreSQL in cluster mode: :mod:`memtrace.storage.placement`). ``pg`` is the process's
    pool in cluster mode.

    Raises:
        NoArcInstanceError: no binding and ``storage.default_backend = "none"``.
        BindingUnusable: the binding cannot be used (master key missing or wrong).
    """
    if binding is not None:
        try:
            target = binding.target()
        except ConfigError as exc:  # missing/wrong master key: a clear 503, no secret in it
            raise BindingUnusable(
                f"the Arc binding of this org cannot be used: {exc.message}"
            ) from None
        arc = ArcStore(
            org_id,
            target,
            outbox_of(settings, pg, org_id),
            settings.arc,
            metrics=metrics,
            synchronous=settings.storage.synchronous,
            dedup_window_us=settings.dedup_window_us,
        )
        await arc.open()
        return arc
    if settings.storage.default_backend == "none":
        raise NoArcInstanceError(
            "no arc instance configured for this org (no storage backend)",
            hint=f"an administrator must run: memtrace org add-arc {org_id} …",
        )
    store = default_store(settings, pg, org_id)
    await store.open()
    # An org whose Arc binding was removed: memories still in its outbox (written just
    # before the switch, or never confirmed by Arc) join its store, never stranded.
    try:
        outbox = await existing_outbox(settings, pg, org_id)
        if outbox is not None:
            await outbox.open()
            try:
                await move_outbox(outbox, store)
            finally:
                await outbox.close()
    except MemtraceError as exc:  # they stay durable in the outbox; the next open retries
        log.error("Arc outbox of %s could not be moved to its store: %s", org_id, exc)
    return store


def _fingerprint(binding: ArcBinding | None) -> tuple[object, ...] | None:
    return binding.fingerprint() if binding is not None else None
