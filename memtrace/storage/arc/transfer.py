"""Moving an org's memories between its embedded store and its Arc database.

``copy_to_arc`` (``memtrace org copy-data --to arc``): resumable; the last copied embedded
rowid is committed to the org's outbox state after Arc accepted each batch, so a rerun continues
where the previous run stopped (at worst one batch is sent twice; reads deduplicate by ``id``).
Ids, times and dedup keys are preserved, and recent dedup keys join the outbox's window index.
Batches go out like the shipper's (:mod:`memtrace.storage.arc.batch`): an unambiguous time
unit, and rows Arc refuses are isolated and parked in the outbox (kept, readable, reported)
instead of stopping the copy. Arc's 204 is not proof of durability, so the copy ends by checking
that Arc shows every copied memory (one query per 200 ids), sending again what it lost.

``move_outbox_to_embedded`` (``org remove-arc --force``, and a server opening the embedded store
of an org whose binding was removed): every row still in the outbox (not yet verified in Arc)
is written to the embedded store, then dropped from the outbox, so no acknowledged memory is
left behind where no read looks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

from memtrace.config import Settings
from memtrace.domain.errors import StorageUnavailable
from memtrace.domain.memory import MemoryRecord
from memtrace.domain.timestamps import now_us
from memtrace.storage.arc.batch import write_isolating
from memtrace.storage.arc.client import ArcClient
from memtrace.storage.arc.outbox import Outbox
from memtrace.storage.arc.shipper import IDS_PER_QUERY, key_coverage_us, shown_by_arc
from memtrace.storage.arc.target import ArcTarget
from memtrace.storage.base import MemoryStore, NewMemory
from memtrace.storage.embedded import EmbeddedStore
from memtrace.storage.layout import org_dir
from memtrace.storage.sqlite import Synchronous

log = logging.getLogger(__name__)

# Outbox state keys of the copy's progress (the first keeps its 0.3.0 name for files written
# then): "<last copied rowid>:<copied so far>", and the last rowid Arc was seen to hold.
CURSOR = "migrate_cursor"
VERIFIED = "copy_verified_cursor"
_POLL_S = 0.25


@dataclass(frozen=True, slots=True)
class CopyResult:
    copied: int  # this run
    total: int  # all runs
    parked: int  # this run: rows Arc refused, kept in the outbox


async def copy_to_arc(
    settings: Settings,
    org_id: str,
    target: ArcTarget,
    *,
    batch_size: int = 1000,
    progress: Callable[[str], None] | None = None,
) -> CopyResult:
    """Copy what is left to copy, then verify it in Arc (see the module doc).

    Raises:
        StorageUnavailable: Arc failed, or the check made no progress for three times
            ``arc.visibility_grace_s``; a rerun resumes (and re-checks) where it stopped.
    """
    source_path: Path = org_dir(settings.data_dir, org_id) / "memories.db"
    outbox = Outbox(
        org_dir(settings.data_dir, org_id) / "arc_outbox.db",
        org_id,
        synchronous=settings.storage.synchronous,
    )
    client = ArcClient(
        target.url,
        target.database,
        target.api_key,
        connect_timeout_s=settings.arc.connect_timeout_s,
        query_timeout_s=settings.arc.query_timeout_s,
        write_timeout_s=settings.arc.write_timeout_s,
    )
    await outbox.open()
    try:
        state = await outbox.get_state(CURSOR)
        cursor, done = (int(x) for x in state.split(":")) if state else (0, 0)
        if not await asyncio.to_thread(source_path.exists):
            return CopyResult(0, done, 0)
        store = EmbeddedStore(source_path, org_id, synchronous=settings.storage.synchronous)
        await store.open()
        copied = parked = 0
        window = settings.dedup_window_us
        try:
            while True:
                rows = await store.scan(cursor, batch_size)
                if not rows:
                    break
                records = [record for _, record in rows]
                parked += await _send(client, outbox, target, records)
                if window is not None:
                    recent = now_us() - key_coverage_us(window)
                    await outbox.remember_keys(
                        [(r.dedup_key, r.time, r.id) for r in records if r.time >= recent],
                        now_us(),
                    )
                cursor = rows[-1][0]
                copied += len(rows)
                await outbox.set_state(CURSOR, f"{cursor}:{done + copied}")
                if progress is not None:
                    progress(f"… {done + copied} memories copied")
            if progress is not None:
                progress("… checking that Arc shows every copied memory")
            await _verify_copy(settings, client, outbox, target, store, cursor)
        finally:
            await store.close()
        return CopyResult(copied, done + copied, parked)
    finally:
        await client.close()
        await outbox.close()


async def _send(
    client: ArcClient, outbox: Outbox, target: ArcTarget, records: list[MemoryRecord]
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
    outbox: Outbox,
    target: ArcTarget,
    store: EmbeddedStore,
    copied_to: int,
) -> None:
    """Walk the copied rows from the last verified one: wait for Arc to show them, resend the
    ones it still lacks ``visibility_grace_s`` later, and commit progress as it goes."""
    loop = asyncio.get_running_loop()
    grace = settings.arc.visibility_grace_s
    patience = 3 * max(grace, settings.arc.verify_after_s, 1.0)
    state = await outbox.get_state(VERIFIED)
    verified = int(state) if state else 0
    stuck_since = loop.time()
    resend_at: float | None = None
    while verified < copied_to:
        scanned = await store.scan(verified, IDS_PER_QUERY)
        rows = [(rowid, r) for rowid, r in scanned if rowid <= copied_to]
        if not rows:
            break
        records = [r for _, r in rows]
        present = await shown_by_arc(
            client, target.measurement, store.org_id, [(r.id, r.time) for r in records]
        )
        missing = [r for r in records if r.id not in present and await outbox.get(r.id) is None]
        if not missing:
            verified = rows[-1][0]
            await outbox.set_state(VERIFIED, str(verified))
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


def _as_new(record: MemoryRecord) -> NewMemory:
    """The record as a memory to store again under its own id (every field carried over)."""
    return NewMemory(**{f.name: getattr(record, f.name) for f in fields(NewMemory)})


async def move_outbox_to_embedded(
    outbox_path: Path, org_id: str, store: MemoryStore, *, synchronous: Synchronous
) -> int:
    """Write every outbox row into ``store`` (ids, times and keys kept), then drop it from the
    outbox; returns how many rows were moved.

    Safe to rerun, and to run from two processes at once: a row whose dedup key and exact time
    are already in ``store`` counts as moved (dedup with a 1 µs window), and rows leave the
    outbox only after the store committed them.
    """
    if not await asyncio.to_thread(outbox_path.exists):
        return 0
    outbox = Outbox(outbox_path, org_id, synchronous=synchronous)
    await outbox.open()
    moved = 0
    try:
        while rows := await outbox.rows(0, 1000):
            await store.write([_as_new(record) for _, record in rows], 1)
            await outbox.delete([seq for seq, _ in rows])
            moved += len(rows)
    finally:
        await outbox.close()
    if moved:
        log.warning(
            "moved %d memories of %s from its Arc outbox into the embedded store", moved, org_id
        )
    return moved
