"""Copy an org's embedded memories into its Arc database (``memtrace org copy-data --to arc``).

Resumable: the last copied embedded rowid is committed to the org's outbox state after Arc
accepted each batch, so a rerun continues where the previous run stopped (at worst one batch is
sent twice; reads deduplicate by ``id``). Ids, times and dedup keys are preserved, and recent
dedup keys join the outbox's window index so duplicates of migrated memories are still caught.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from memtrace.config import Settings
from memtrace.domain.timestamps import now_us
from memtrace.storage.arc.client import ArcClient
from memtrace.storage.arc.outbox import Outbox
from memtrace.storage.arc.store import arc_columns
from memtrace.storage.arc.target import ArcTarget
from memtrace.storage.embedded import EmbeddedStore
from memtrace.storage.layout import org_dir

# The outbox state key of the copy's progress (its 0.3.0 name is kept for files written then).
CURSOR = "migrate_cursor"


async def copy_to_arc(
    settings: Settings,
    org_id: str,
    target: ArcTarget,
    *,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Copy what is left to copy; returns (copied now, total copied so far incl. earlier runs)."""
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
            return 0, done
        store = EmbeddedStore(source_path, org_id, synchronous=settings.storage.synchronous)
        await store.open()
        copied = 0
        window = settings.dedup_window_us
        try:
            while True:
                rows = await store.scan(cursor, batch_size)
                if not rows:
                    break
                records = [record for _, record in rows]
                await client.write(target.measurement, arc_columns(records))
                if window is not None:
                    recent = now_us() - window
                    await outbox.remember_keys(
                        [(r.dedup_key, r.time, r.id) for r in records if r.time >= recent]
                    )
                cursor = rows[-1][0]
                copied += len(rows)
                await outbox.set_state(CURSOR, f"{cursor}:{done + copied}")
                if progress is not None:
                    progress(done + copied)
        finally:
            await store.close()
        return copied, done + copied
    finally:
        await client.close()
        await outbox.close()
