"""Finishing an erasure in an SQLite file: after the rows are deleted, nothing of them stays.

Deleting a row is not enough to make its content unrecoverable from the files:

- freed cells and pages keep their bytes. Every writer connection runs with
  ``PRAGMA secure_delete = ON`` (:func:`memtrace.storage.sqlite.connect`), which zeroes them.
- an FTS5 index keeps the deleted row's terms (trigrams of its content) in its older segments
  until those are merged with the segment holding the delete markers. :class:`Purger` merges
  the whole index in short write slices (``'merge'`` with a page budget, so each slice holds
  the write lock briefly), which ends exactly like FTS5's
  ``'optimize'`` without one long lock.
- the WAL holds earlier versions of the pages (the row as inserted) until it is checkpointed
  and reset: :func:`checkpoint` copies it into the database and truncates it to zero bytes.

The purge runs in the background once deletes pause (``memtrace.storage.pause``: a forget or
a retention sweep deletes batch after batch and gets one purge at the end); ``Purger.idle()``
waits for it (tests), and closing a store finishes it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from functools import partial
from pathlib import Path
from typing import Protocol

from memtrace.storage.pause import Pause
from memtrace.storage.sqlite import SQLiteDatabase

log = logging.getLogger(__name__)

MERGE_PAGES = 50  # pages written per merge slice: a bounded write lock per slice
_CHECKPOINT_TRIES = 50


def merge_step(conn: sqlite3.Connection, fts_table: str, pages: int) -> int:
    """One slice of an incremental FTS5 optimize; returns the rows it changed (below 2: done).

    The first slice of a run passes ``-pages`` (put every segment on one level and start a
    merge of all of them), the following ones ``+pages`` (continue that merge even if new
    segments arrive meanwhile), as the FTS5 documentation describes for an incremental
    'optimize'. ``fts_table`` is a trusted constant.
    """
    before = conn.total_changes
    conn.execute(
        f"INSERT INTO {fts_table} ({fts_table}, rank) VALUES ('merge', ?)",  # noqa: S608
        (pages,),
    )
    return conn.total_changes - before


def checkpoint(path: Path) -> bool:
    """Copy the WAL into the database file and truncate it to zero bytes; True when done.

    Runs on a connection of its own; SQLite's busy handler waits for the writer between two
    group commits and for readers to move to the newest snapshot. Retries a few times when
    the database stays busy."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    try:
        for _ in range(_CHECKPOINT_TRIES):
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy == 0:
                return True
            time.sleep(0.02)
        return False
    finally:
        conn.close()


class ErasureFinisher(Protocol):
    """What completes erasures in a backend's files once rows are deleted: :class:`Purger`
    (SQLite), :class:`memtrace.storage.postgres.vacuum.Vacuum` (PostgreSQL)."""

    def schedule(self) -> None:
        """Something was deleted: finish the erasure soon."""
        ...

    async def idle(self) -> None: ...

    async def close(self) -> None: ...


class Purger:
    """Background completion of erasures in one SQLite file (see the module doc)."""

    def __init__(self, db: SQLiteDatabase, fts_table: str | None = None) -> None:
        self._db = db
        self._fts_table = fts_table
        self._dirty = False
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._pause = Pause()
        self.runs = 0  # completed purges (tests)

    def schedule(self) -> None:
        """Something was deleted: purge soon (a running purge is followed by another)."""
        self._dirty = True
        self._pause.touch()
        self._idle.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"purge:{self._db.path.name}")

    async def idle(self) -> None:
        """Return once no purge is pending or running."""
        await self._idle.wait()

    async def close(self) -> None:
        """Finish the pending purge now (a store closes only after its erasures are
        complete)."""
        self._pause.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            while self._dirty:
                await self._pause.wait()
                self._dirty = False
                if self._fts_table is not None:
                    await self._merge(self._fts_table)
                done = await asyncio.to_thread(checkpoint, self._db.path)
                if not done:
                    log.warning("WAL of %s stayed busy; checkpoint retried", self._db.path.name)
                    self._dirty = True
                    await asyncio.sleep(0.5)
                self.runs += 1
        except Exception:
            log.exception("purge of %s failed; it runs again after the next delete", self._db.path)
        finally:
            if not self._dirty:
                self._idle.set()

    async def _merge(self, table: str) -> None:
        pages = -MERGE_PAGES
        while True:
            changed = await self._db.write(partial(merge_step, fts_table=table, pages=pages))
            if changed < 2:
                return
            pages = MERGE_PAGES
