"""Moving an org's memories between its stores: the embedded SQLite file, the cluster's
PostgreSQL and its Arc database (``memtrace org copy-data ORG --to embedded|postgres|arc``).

Every copy is resumable: it walks the source in a fixed order and commits its cursor after each
batch the target accepted, so a rerun continues where the previous run stopped (a batch sent
twice is harmless, see below). Ids, times and dedup keys are preserved.

``copy_to_arc``: the cursor is committed to the org's outbox state. Batches go out like the
shipper's (:mod:`memtrace.storage.arc.batch`): an unambiguous time unit, and rows Arc refuses
are isolated and parked in the outbox (kept, readable, reported) instead of stopping the copy.
Recent dedup keys join the outbox's window index. Arc's 204 is not proof of durability, so the
copy ends by checking that Arc shows every copied memory (one query per 200 ids), sending
again what it lost. Reads deduplicate by ``id``, so a resent batch shows once.

``copy_between_stores`` (embedded <-> PostgreSQL): each batch is written with a 1 µs dedup
window, so a memory whose dedup key and exact time are already in the target counts as copied;
the cursor is kept in the cluster's PostgreSQL (``org_state``).

``move_outbox`` (``org remove-arc --force``, and a server opening the default store of an org
whose binding was removed): every row still in the outbox (not yet verified in Arc) is written
to the org's store, then dropped from the outbox, so no acknowledged memory is left behind
where no read looks.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from memtrace.config import Settings
from memtrace.domain.errors import StorageUnavailable
from memtrace.domain.memory import MemoryRecord
from memtrace.domain.timestamps import now_us
from memtrace.storage.arc import sql as arc_sql
from memtrace.storage.arc.batch import write_isolating
from memtrace.storage.arc.client import ArcClient
from memtrace.storage.arc.outbox_base import OutboxStore
from memtrace.storage.arc.shipper import IDS_PER_QUERY, key_coverage_us
from memtrace.storage.arc.target import ArcTarget
from memtrace.storage.base import MemoryStore, NewMemory
from memtrace.storage.embedded import EmbeddedStore
from memtrace.storage.postgres.store import PostgresStore

log = logging.getLogger(__name__)

# Outbox state keys of a copy to Arc (the first keeps its 0.3.0 name for files written then):
# the last copied position and how many were copied, and the last position Arc was seen to hold.
CURSOR = "migrate_cursor"
VERIFIED = "copy_verified_cursor"
_POLL_S = 0.25

Cursor = tuple[Any, ...]  # a source's order key: (rowid,) embedded, (time, id) PostgreSQL


class Source(Protocol):
    org_id: str

    async def scan(self, after: Cursor | None, limit: int) -> list[tuple[Cursor, MemoryRecord]]:
        """Up to ``limit`` memories after ``after``, in the source's fixed order."""
        ...


class EmbeddedSource:
    """An embedded store walked in insertion (rowid) order."""

    def __init__(self, store: EmbeddedStore) -> None:
        self.store = store
        self.org_id = store.org_id

    async def scan(self, after: Cursor | None, limit: int) -> list[tuple[Cursor, MemoryRecord]]:
        rows = await self.store.scan(int(after[0]) if after else 0, limit)
        return [((rowid,), record) for rowid, record in rows]


class PostgresSource:
    """An org's rows of the PostgreSQL store walked in (time, id) order."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.org_id = store.org_id

    async def scan(self, after: Cursor | None, limit: int) -> list[tuple[Cursor, MemoryRecord]]:
        records = await self.store.scan((int(after[0]), str(after[1])) if after else None, limit)
        return [((r.time, r.id), r) for r in records]


def source_of(store: EmbeddedStore | PostgresStore) -> Source:
    return EmbeddedSource(store) if isinstance(store, EmbeddedStore) else PostgresSource(store)


def encode_progress(cursor: Cursor | None, total: int) -> str:
    return json.dumps({"cursor": list(cursor) if cursor else None, "total": total})


def decode_progress(state: str | None) -> tuple[Cursor | None, int]:
    """(cursor, copied so far) of a saved state; the 0.3.0 format was ``"<rowid>:<total>"``."""
    if not state:
        return None, 0
    if not state.startswith("{"):
        rowid, total = (int(x) for x in state.split(":"))
        return ((rowid,) if rowid else None), total
    data = json.loads(state)
    cursor = tuple(data["cursor"]) if data["cursor"] else None
    return cursor, int(data["total"])


@dataclass(frozen=True, slots=True)
class CopyResult:
    copied: int  # this run
    total: int  # all runs
    parked: int = 0  # this run: rows Arc refused, kept in the outbox


async def copy_to_arc(
    settings: Settings,
    source: Source,
    outbox: OutboxStore,
    target: ArcTarget,
    *,
    batch_size: int = 1000,
    progress: Callable[[str], None] | None = None,
) -> CopyResult:
    """Copy what is left to copy from ``source`` to Arc, then verify it (see the module doc).
    ``outbox`` is the org's outbox, open.

    Raises:
        StorageUnavailable: Arc failed, or the check made no progress for three times
            ``arc.visibility_grace_s``; a rerun resumes (and re-checks) where it stopped.
    """
    client = ArcClient(
        target.url,
        target.database,
        target.api_key,
        connect_timeout_s=settings.arc.connect_timeout_s,
        query_timeout_s=settings.arc.query_timeout_s,
        write_timeout_s=settings.arc.write_timeout_s,
    )
    try:
        cursor, done = decode_progress(await outbox.get_state(CURSOR))
        copied = parked = 0
        window = settings.dedup_window_us
        while rows := await source.scan(cursor, batch_size):
            records = [record for _, record in rows]
            parked += await _send(client, outbox, target, records)
            if window is not None:
                recent = now_us() - key_coverage_us(window)
                await outbox.remember_keys(
                    [(r.dedup_key, r.time, r.id) for r in records if r.time >= recent], now_us()
                )
            cursor = rows[-1][0]
            copied += len(rows)
            await outbox.set_state(CURSOR, encode_progress(cursor, done + copied))
            if progress is not None:
                progress(f"… {done + copied} memories copied")
        if progress is not None:
            progress("… checking that Arc shows every copied memory")
        if cursor is not None:
            await _verify_copy(settings, client, outbox, target, source, cursor)
        return CopyResult(copied, done + copied, parked)
    finally:
        await client.close()


async def _send(
    client: ArcClient, outbox: OutboxStore, target: ArcTarget, records: list[MemoryRecord]
) -> int:
    """Write one batch; park what Arc refuses. Returns how many rows were parked."""

    async def accepted(_: list[str]) -> None:
        return None  # progress is the cursor, committed once the whole batch is settled

    by_id = {r.id: r for r in records}
    refused = await write_isolating(
        client, target.measurement, [(r.id, r) for r in records], accepted
    )
    for memory_id, reason in refused:
        await outbox.add_parked([by_id[memory_id]], reason, now_us())
    return len(refused)


async def _verify_copy(
    settings: Settings,
    client: ArcClient,
    outbox: OutboxStore,
    target: ArcTarget,
    source: Source,
    copied_to: Cursor,
) -> None:
    """Walk the copied rows from the last verified one: wait for Arc to show them, resend the
    ones it still lacks ``visibility_grace_s`` later, and commit progress as it goes."""
    loop = asyncio.get_running_loop()
    grace = settings.arc.visibility_grace_s
    patience = 3 * max(grace, settings.arc.verify_after_s, 1.0)
    verified, _ = decode_progress(await outbox.get_state(VERIFIED))
    stuck_since = loop.time()
    resend_at: float | None = None
    while verified is None or verified < copied_to:
        rows = [(c, r) for c, r in await source.scan(verified, IDS_PER_QUERY) if c <= copied_to]
        if not rows:
            break
        records = sorted((r for _, r in rows), key=lambda r: r.time)
        sql = arc_sql.ids_present_sql(
            target.measurement,
            source.org_id,
            [r.id for r in records],
            since=records[0].time,
            until=records[-1].time,
        )
        present = {str(row[0]) for row in await client.query(sql)}
        missing = [r for r in records if r.id not in present and await outbox.get(r.id) is None]
        if not missing:
            verified = rows[-1][0]
            await outbox.set_state(VERIFIED, encode_progress(verified, 0))
            stuck_since, resend_at = loop.time(), None
            continue
        if loop.time() - stuck_since > patience:
            raise StorageUnavailable(
                f"{len(missing)} copied memories are not visible in Arc yet (Arc accepted them "
                "but may have lost its write buffer); rerun copy-data to check and resend"
            )
        if resend_at is None:
            resend_at = loop.time() + grace
        elif loop.time() >= resend_at:
            log.warning("Arc does not show %d copied memories; sending them again", len(missing))
            await _send(client, outbox, target, missing)
            resend_at = None
        await asyncio.sleep(_POLL_S)


def as_new(record: MemoryRecord) -> NewMemory:
    """A stored memory as a write that keeps its id, time and dedup key."""
    return NewMemory(
        time=record.time,
        agent_id=record.agent_id,
        session_id=record.session_id,
        memory_type=record.memory_type,
        event_type=record.event_type,
        content=record.content,
        metadata=record.metadata,
        tags=record.tags,
        importance=record.importance,
        dedup_key=record.dedup_key,
        parent_id=record.parent_id,
        id=record.id,
    )


async def _write_kept(store: MemoryStore, records: Sequence[MemoryRecord]) -> None:
    """Write copies; one already there (same dedup key and exact time) counts as written."""
    await store.write([as_new(r) for r in records], 1)


async def copy_between_stores(
    source: Source,
    target: MemoryStore,
    state: tuple[Callable[[], Awaitable[str | None]], Callable[[str], Awaitable[None]]],
    *,
    batch_size: int = 1000,
    progress: Callable[[str], None] | None = None,
) -> CopyResult:
    """Copy what is left from ``source`` into ``target`` (both open); ``state`` reads and
    saves the progress."""
    load, save = state
    cursor, done = decode_progress(await load())
    copied = 0
    while rows := await source.scan(cursor, batch_size):
        await _write_kept(target, [record for _, record in rows])
        cursor = rows[-1][0]
        copied += len(rows)
        await save(encode_progress(cursor, done + copied))
        if progress is not None:
            progress(f"… {done + copied} memories copied")
    return CopyResult(copied, done + copied)


async def move_outbox(outbox: OutboxStore, store: MemoryStore) -> int:
    """Write every row of ``outbox`` (open) into ``store`` (ids, times and keys kept), then
    drop it from the outbox; returns how many rows were moved.

    Safe to rerun, and to run from two processes at once: a row whose dedup key and exact time
    are already in ``store`` counts as moved, and rows leave the outbox only after the store
    committed them.
    """
    moved = 0
    while rows := await outbox.rows(0, 1000):
        await _write_kept(store, [record for _, record in rows])
        await outbox.delete([seq for seq, _ in rows])
        moved += len(rows)
    if moved:
        log.warning(
            "moved %d memories of %s from its Arc outbox into its %s store",
            moved,
            outbox.org_id,
            getattr(store, "backend", "default"),
        )
    return moved
