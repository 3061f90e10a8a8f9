"""Finishing an erasure on PostgreSQL: a deleted row is gone from every read at once, but its
bytes stay in the table's pages (a dead tuple) until ``VACUUM`` reclaims them. :class:`Vacuum`
runs ``VACUUM`` on exactly the tables (partitions) a delete touched, in the background once
deletes pause, like :class:`memtrace.storage.erase.Purger` for SQLite files: a forget or a
retention sweep deletes batch after batch and gets one ``VACUUM`` per table at the end.

``VACUUM`` (not ``FULL``) marks the dead tuples' space free for reuse and removes their index
entries; it takes no lock that blocks reads or writes. Bytes of a reclaimed tuple may remain
on disk until the page is rewritten, and the WAL and base backups keep them until they are
recycled (docs/api.md, "Erasure")."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from memtrace.storage.pause import Pause
from memtrace.storage.postgres.db import PgDatabase

log = logging.getLogger(__name__)


def quote_table(name: str) -> str:
    """A table name as returned by ``tableoid::regclass::text`` (already quoted where
    needed), checked to be one of ours: only memtrace's own table names reach SQL."""
    bare = name.replace('"', "")
    if not bare.replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"unexpected table name {name!r}")
    return name


class Vacuum:
    """Background ``VACUUM`` of the tables erasures touched (see the module doc)."""

    def __init__(self, db: PgDatabase, tables: Iterable[str] = ()) -> None:
        self._db = db
        self._default = [quote_table(t) for t in tables]  # what schedule() without tables means
        self._tables: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._pause = Pause()
        self.runs = 0  # completed vacuums (tests)

    def schedule(self, tables: Iterable[str] = ()) -> None:
        """Rows were deleted from ``tables`` (default: the tables given at creation): vacuum
        them soon."""
        self._tables.update([quote_table(t) for t in tables] or self._default)
        if not self._tables:
            return
        self._pause.touch()
        self._idle.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="pg-vacuum")

    async def idle(self) -> None:
        """Return once no vacuum is pending or running."""
        await self._idle.wait()

    async def close(self) -> None:
        """Finish the pending vacuum now."""
        self._pause.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            while self._tables:
                await self._pause.wait()
                tables, self._tables = sorted(self._tables), set()
                async with self._db.connection() as conn:  # VACUUM runs outside a transaction
                    await conn.execute(f"VACUUM {', '.join(tables)}")
                self.runs += 1
        except Exception:
            log.exception("VACUUM after an erasure failed; autovacuum will reclaim the rows")
        finally:
            self._tables.clear()
            self._idle.set()
