"""Org → store routing: each org's memories live in a store of their own.

A client never chooses its store: the org comes from its API key. Stores open on first use and
stay open while they are used; at most ``storage.max_open_stores`` are kept open, and opening
one more closes the least recently used idle embedded store first (each open store holds a
writer thread and a few file descriptors; a process serving thousands of orgs must not hold
them all). Arc-bound stores stay open: their shipper must keep sending the outbox. Every store
operation holds a lease on the open store, so a store is never closed under a running
operation; a store closed to make room reopens on its org's next request. Stores are also
closed when their org disappears from the metadata DB or its Arc binding changes (see
:mod:`memtrace.runtime`). Where a store lives (embedded files, or the cluster's PostgreSQL) is
:mod:`memtrace.storage.placement`'s decision.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from memtrace.config import Settings
from memtrace.domain.errors import (
    ConfigError,
    MemtraceError,
    NoArcInstanceError,
    OutOfDescriptors,
    StorageUnavailable,
)
from memtrace.domain.memory import MemoryRecord, WriteOutcome
from memtrace.metadata.bindings import ArcBinding
from memtrace.storage.arc import pg_outbox
from memtrace.storage.arc.store import ArcStore
from memtrace.storage.arc.transfer import move_outbox
from memtrace.storage.base import (
    AgentMemoryStats,
    ChangePage,
    MemoryQuery,
    MemoryStore,
    NewMemory,
    QueryPage,
    StoreHealth,
    TimelineBucket,
    TimelineGroup,
)
from memtrace.storage.changes import ChangeTails, Entry
from memtrace.storage.placement import default_store, existing_outbox, outbox_of
from memtrace.storage.postgres import store as pg_store
from memtrace.storage.postgres.db import PgDatabase
from memtrace.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")
_FD_RETRIES = 3  # stores closed to free descriptors before an open gives up with a 503
# Out of descriptors while every open store is busy (a request, or its health check, holds
# it): wait this long for one to become idle before answering 503.
_IDLE_WAIT_S = 2.0


@dataclass(slots=True)
class _Open:
    store: MemoryStore
    fingerprint: tuple[object, ...] | None
    in_use: int = 0


class StoreRegistry:
    """The open stores of this process, one per org, least recently used first."""

    def __init__(
        self, settings: Settings, metrics: Metrics | None = None, *, pg: PgDatabase | None = None
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._pg = pg  # cluster mode: the process's PostgreSQL pool
        self._max_open = settings.storage.max_open_stores
        self._open: OrderedDict[str, _Open] = OrderedDict()
        # the orgs' open streams in this process, woken by this process's writes
        self.tails = ChangeTails(settings.limits.stream_poll_s)
        self._lock = asyncio.Lock()
        self._bindings: dict[str, ArcBinding] = {}
        # bound orgs whose store cannot open: (binding fingerprint, why)
        self._unusable: dict[str, tuple[tuple[object, ...] | None, str]] = {}
        self.evictions = 0  # idle stores closed to make room
        self._released = asyncio.Event()  # set whenever a store's last lease ends
        self.on_open: Callable[[str], None] | None = None  # told of every store opened

    async def prepare(self) -> None:
        """Bring the PostgreSQL schema of memories and Arc outboxes to the current version
        (cluster mode)."""
        if self._pg is not None:
            await pg_store.migrate(self._pg)
            await pg_outbox.migrate(self._pg)

    # -- leases -------------------------------------------------------------------------------

    async def get(self, org_id: str) -> MemoryStore:
        """The org's store (opened now if needed, so a store that cannot open fails here).

        Raises:
            NoArcInstanceError: the org has no store (``storage.default_backend = "none"``).
            StorageUnavailable: the store cannot be opened.
        """
        async with self.use(org_id):
            pass
        return OrgStore(self, org_id)

    @asynccontextmanager
    async def use(self, org_id: str) -> AsyncIterator[MemoryStore]:
        """Lease the org's open store for one operation (opening it if needed)."""
        entry = self._open.get(org_id)
        if entry is None:
            entry = await self._open_entry(org_id)
        else:
            self._open.move_to_end(org_id)
        entry.in_use += 1
        try:
            yield entry.store
        finally:
            self._release(entry)

    def _release(self, entry: _Open) -> None:
        entry.in_use -= 1
        if entry.in_use == 0:
            self._released.set()

    def backend_of(self, org_id: str) -> str:
        entry = self._open.get(org_id)
        if entry is not None:
            return entry.store.backend
        if org_id in self._bindings:
            return "arc"
        uses_pg = self._pg is not None and self._settings.storage.default_backend == "postgres"
        return "postgres" if uses_pg else "embedded"

    def open_count(self) -> int:
        return len(self._open)

    # -- opening and closing ------------------------------------------------------------------

    async def _open_entry(self, org_id: str) -> _Open:
        async with self._lock:
            entry = self._open.get(org_id)
            if entry is not None:
                return entry
            await self._make_room(self._max_open - 1)
            binding = self._bindings.get(org_id)
            for attempt in range(_FD_RETRIES + 1):
                try:
                    store = await self._open_store(org_id, binding)
                    break
                except OutOfDescriptors:
                    # Close an idle store, whatever the configured maximum, and try again
                    # (the maximum was set too high for the process's open-file limit).
                    if attempt == _FD_RETRIES or not await self._close_one_idle():
                        raise
            entry = _Open(store, _fingerprint(binding))
            self._open[org_id] = entry
            self._count()
        if self.on_open is not None:
            self.on_open(org_id)
        return entry

    async def relieve(self) -> bool:
        """After an operation ran out of file descriptors, close the least recently used idle
        store; returns whether one was closed (the caller may then retry)."""
        async with self._lock:
            return await self._close_one_idle()

    async def _close_one_idle(self) -> bool:
        """Close the least recently used idle embedded store, waiting up to ``_IDLE_WAIT_S``
        for one while every store is leased (the lock is held)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _IDLE_WAIT_S
        while True:
            self._released.clear()
            if await self._make_room(len(self._open) - 1):
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._released.wait(), remaining)
            except TimeoutError:
                return False

    async def _make_room(self, keep: int) -> bool:
        """Close least recently used idle embedded stores until at most ``keep`` are open.
        Returns whether any was closed (stores in use, and Arc stores, are never closed)."""
        closed = False
        while len(self._open) > max(keep, 0):
            victim = next(
                (
                    org
                    for org, entry in self._open.items()
                    if entry.in_use == 0 and entry.store.backend == "embedded"
                ),
                None,
            )
            if victim is None:
                break
            entry = self._open.pop(victim)
            self.evictions += 1
            closed = True
            await entry.store.close()
        self._count()
        return closed

    async def _open_store(self, org_id: str, binding: ArcBinding | None) -> MemoryStore:
        try:
            store = await open_store(self._settings, org_id, binding, self._metrics, pg=self._pg)
        except BindingUnusable as exc:
            self._unusable[org_id] = (_fingerprint(binding), exc.message)
            raise
        self._unusable.pop(org_id, None)
        return store

    async def _close(self, orgs: Sequence[str]) -> None:
        for org in orgs:
            entry = self._open.pop(org, None)
            if entry is not None:
                await entry.store.close()
        self._count()

    def _count(self) -> None:
        if self._metrics is not None:
            self._metrics.open_stores.set(len(self._open))

    # -- metadata changes ---------------------------------------------------------------------

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
                for org, entry in self._open.items()
                if entry.fingerprint != _fingerprint(bindings.get(org))
            ]
            await self._close(stale)
        # Arc stores open eagerly: their shippers must resume unshipped rows after a restart.
        for org in bindings:
            if org not in self._open and org not in self._unusable:
                try:
                    await self.get(org)
                except MemtraceError as exc:
                    log.warning("Arc store of %s cannot open: %s", org, exc.message)
        return stale

    async def retain(self, live_org_ids: set[str]) -> list[str]:
        """Close the stores of orgs that no longer exist; returns their ids."""
        async with self._lock:
            gone = [org for org in self._open if org not in live_org_ids]
            await self._close(gone)
        return gone

    # -- health -------------------------------------------------------------------------------

    def unusable(self) -> dict[str, str]:
        """Bound orgs whose store cannot open, and why."""
        return {org: message for org, (_, message) in self._unusable.items()}

    def open_orgs(self) -> list[str]:
        return list(self._open)

    async def check(self, org_id: str) -> StoreHealth | None:
        """The health of the org's store if it is open (never opens one)."""
        entry = self._open.get(org_id)
        if entry is None:
            return None
        entry.in_use += 1
        try:
            return await entry.store.health()
        finally:
            self._release(entry)

    async def close(self) -> None:
        async with self._lock:
            await self._close(list(self._open))


class OrgStore:
    """An org's store as its service sees it: every operation leases the open store, so the
    registry may close an idle store to make room and reopen it on the next call. An
    operation that failed for want of a file descriptor (nothing of it was stored: a failed
    write group is rolled back whole) is retried once after an idle store was closed."""

    def __init__(self, registry: StoreRegistry, org_id: str) -> None:
        self._registry = registry
        self.org_id = org_id
        self.backend = registry.backend_of(org_id)  # (a service lives for one request)

    async def _run(self, operation: Callable[[MemoryStore], Awaitable[T]]) -> T:
        try:
            async with self._registry.use(self.org_id) as store:
                return await operation(store)
        except OutOfDescriptors:
            if not await self._registry.relieve():
                raise
        async with self._registry.use(self.org_id) as store:
            return await operation(store)

    async def write(
        self, items: Sequence[NewMemory], dedup_window_us: int | None
    ) -> list[WriteOutcome]:
        outcomes = await self._run(lambda store: store.write(items, dedup_window_us))
        if any(outcome.record is not None for outcome in outcomes):
            self._registry.tails.notify(self.org_id)
        return outcomes

    async def changes(self, after: int, q: MemoryQuery, limit: int) -> ChangePage:
        return await self._run(lambda store: store.changes(after, q, limit))

    async def change_head(self) -> int:
        return await self._run(lambda store: store.change_head())

    def follow(self, after: int, q: MemoryQuery, wait_s: float) -> AsyncIterator[list[Entry]]:
        """New memories after ``after`` as they are committed (docs/feed.md)."""
        tail = self._registry.tails.get(self.org_id, self.changes, self.change_head)
        return tail.follow(after, q, wait_s)

    async def query(self, q: MemoryQuery) -> list[MemoryRecord]:
        return await self._run(lambda store: store.query(q))

    async def query_page(self, q: MemoryQuery, budget_s: float) -> QueryPage:
        return await self._run(lambda store: store.query_page(q, budget_s))

    async def count(self, q: MemoryQuery) -> int:
        return await self._run(lambda store: store.count(q))

    async def get(self, memory_id: str) -> MemoryRecord | None:
        return await self._run(lambda store: store.get(memory_id))

    async def agent_stats(self, agent_id: str, since: int) -> AgentMemoryStats:
        return await self._run(lambda store: store.agent_stats(agent_id, since))

    async def timeline(
        self, q: MemoryQuery, bucket_us: int, group_by: TimelineGroup | None
    ) -> list[TimelineBucket]:
        return await self._run(lambda store: store.timeline(q, bucket_us, group_by))

    async def delete(self, ids: Sequence[str]) -> list[str]:
        return await self._run(lambda store: store.delete(ids))

    async def insert_records(self, items: Sequence[NewMemory]) -> list[str]:
        inserted = await self._run(lambda store: store.insert_records(items))
        if inserted:
            self._registry.tails.notify(self.org_id)
        return inserted

    async def expire(self, cutoff: int) -> int:
        return await self._run(lambda store: store.expire(cutoff))

    async def health(self) -> StoreHealth:
        return await self._run(lambda store: store.health())

    async def close(self) -> None:
        """Nothing to do: the registry owns the store."""


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
