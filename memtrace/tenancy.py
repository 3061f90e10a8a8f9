"""Org → store routing: each org's memories live in a store of their own.

Stores are opened on first use and closed when their org disappears from the metadata DB
(checked on every metadata change, see :mod:`memtrace.runtime`). A client never chooses its
store: the org comes from its API key.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

from memtrace.config import Settings
from memtrace.errors import NoArcInstanceError, NotFound
from memtrace.storage.base import MemoryStore, StoreHealth
from memtrace.storage.embedded import EmbeddedStore

_ORG_ID = re.compile(r"^org_[A-Za-z0-9_]{1,64}$")


def org_dir(data_dir: Path, org_id: str) -> Path:
    """Directory holding an org's files; the id pattern keeps it inside ``data_dir``."""
    if not _ORG_ID.match(org_id):
        raise NotFound(f"org {org_id!r} not found")
    return data_dir / "orgs" / org_id


def purge_org_files(data_dir: Path, org_id: str) -> bool:
    """Delete an org's stored memories from disk; True when there was something to delete."""
    path = org_dir(data_dir, org_id)
    if not path.exists():
        return False
    shutil.rmtree(path)
    return True


class StoreRegistry:
    """The open stores of this process, one per org."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stores: dict[str, MemoryStore] = {}
        self._lock = asyncio.Lock()

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
                store = await self._open(org_id)
                self._stores[org_id] = store
        return store

    async def _open(self, org_id: str) -> MemoryStore:
        if self._settings.storage.default_backend == "none":
            raise NoArcInstanceError(
                "no arc instance configured for this org (no storage backend)",
                hint=f"an administrator must run: memtrace org add-arc {org_id} …",
            )
        store = EmbeddedStore(
            org_dir(self._settings.data_dir, org_id) / "memories.db",
            org_id,
            synchronous=self._settings.storage.synchronous,
        )
        await store.open()
        return store

    async def retain(self, live_org_ids: set[str]) -> list[str]:
        """Close the stores of orgs that no longer exist; returns their ids."""
        gone = [org for org in self._stores if org not in live_org_ids]
        for org in gone:
            await self._stores.pop(org).close()
        return gone

    async def health(self) -> dict[str, StoreHealth]:
        stores = list(self._stores.items())
        results = await asyncio.gather(*(store.health() for _, store in stores))
        return {org: result for (org, _), result in zip(stores, results, strict=True)}

    async def close(self) -> None:
        stores, self._stores = self._stores, {}
        for store in stores.values():
            await store.close()
